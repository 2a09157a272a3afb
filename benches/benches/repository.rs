//! Repository store throughput: put/get MB/s and commit latency of `LocalRepository`, with and
//! without fsync (what durability costs). borg's figures for the same operations come from
//! `crates/repository/scripts/bench_borg.py`; both are recorded in `docs/repository.md`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rborg_repository::{LocalRepository, OpenOptions, Repository};

const OBJ: usize = 64 * 1024;
const COUNT: usize = 256;

fn objects() -> Vec<([u8; 32], Vec<u8>)> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    (0..COUNT)
        .map(|_| {
            let mut id = [0u8; 32];
            rng.fill_bytes(&mut id);
            let mut d = vec![0u8; OBJ];
            rng.fill_bytes(&mut d);
            (id, d)
        })
        .collect()
}

/// A repository that is deleted when dropped (outside the timed part), so that long runs do
/// not fill the disk and the page cache with dirty data.
struct Scratch(Option<LocalRepository>, std::path::PathBuf);

impl Scratch {
    fn repo(&mut self) -> &mut LocalRepository {
        self.0.as_mut().expect("open")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        drop(self.0.take());
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn fresh(dir: &tempfile::TempDir, n: &mut u64, fsync: bool) -> Scratch {
    *n += 1;
    let path = dir.path().join(format!("r{n}"));
    let mut r = LocalRepository::create(&path, &OpenOptions::exclusive()).unwrap();
    r.set_fsync(fsync);
    Scratch(Some(r), path)
}

fn bench(c: &mut Criterion) {
    let objs = objects();
    let dir = tempfile::tempdir_in(std::env::var("RBORG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .unwrap();
    let mut n = 0u64;
    let mut g = c.benchmark_group("repository");
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(4));
    g.throughput(Throughput::Bytes((OBJ * COUNT) as u64));
    for fsync in [true, false] {
        let tag = if fsync { "fsync" } else { "nofsync" };
        g.bench_function(format!("put_64KiB_x256_commit/{tag}"), |b| {
            b.iter_batched(
                || fresh(&dir, &mut n, fsync),
                |mut s| {
                    let r = s.repo();
                    for (id, d) in &objs {
                        r.put(id, d).unwrap();
                    }
                    r.commit(false, 0.1).unwrap();
                    s
                },
                BatchSize::PerIteration,
            )
        });
    }
    let mut scratch = fresh(&dir, &mut n, true);
    let r = scratch.repo();
    for (id, d) in &objs {
        r.put(id, d).unwrap();
    }
    r.commit(false, 0.1).unwrap();
    g.bench_function("get_64KiB_x256", |b| {
        b.iter(|| {
            for (id, _) in &objs {
                std::hint::black_box(r.get(id).unwrap());
            }
        })
    });
    drop(scratch);
    g.throughput(Throughput::Elements(1));
    for fsync in [true, false] {
        let tag = if fsync { "fsync" } else { "nofsync" };
        // like scripts/bench_borg.py: a fresh repository every 60 commits, so that the
        // number of segments (and the hints size) stays comparable
        g.bench_function(format!("commit_1KiB/{tag}"), |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                let mut scratch = fresh(&dir, &mut n, fsync);
                for k in 0..iters {
                    if k > 0 && k % 60 == 0 {
                        scratch = fresh(&dir, &mut n, fsync);
                    }
                    let r = scratch.repo();
                    let mut id = [0u8; 32];
                    id[..8].copy_from_slice(&k.to_le_bytes());
                    let t = std::time::Instant::now();
                    r.put(&id, &[7u8; 1024]).unwrap();
                    r.commit(false, 0.1).unwrap();
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
