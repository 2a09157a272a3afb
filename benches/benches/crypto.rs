//! rborg-crypto throughput: chunk ID hash, encrypt+MAC and MAC-check+decrypt per mode on a
//! 1 MiB chunk, and the ID hash of a batch of chunks one by one against `id_hash_many`
//! (BLAKE2b in SIMD lanes). Compare with borg's numbers in `docs/crypto.md`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{RngCore, SeedableRng};
use rborg_crypto::{Key, KeyType};

const SIZE: usize = 1 << 20;

fn bench(c: &mut Criterion) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut data = vec![0u8; SIZE];
    rng.fill_bytes(&mut data);
    for (group, f) in [("id_hash", 0), ("encrypt", 1), ("decrypt", 2)] {
        let mut g = c.benchmark_group(format!("crypto/{group}"));
        g.throughput(Throughput::Bytes(SIZE as u64));
        g.sample_size(20);
        for kt in KeyType::ALL {
            let key = Key::create(kt, [1; 32]);
            let env = key.encrypt(&data, 12345);
            g.bench_with_input(
                BenchmarkId::from_parameter(kt.arg_name()),
                &kt,
                |b, _| match f {
                    0 => b.iter(|| key.id_hash(std::hint::black_box(&data))),
                    1 => b.iter(|| key.encrypt(std::hint::black_box(&data), 12345)),
                    _ => b.iter(|| key.decrypt(None, std::hint::black_box(&env)).unwrap()),
                },
            );
        }
        g.finish();
    }
    bench_batches(c, &mut rng);
}

/// ID hashes of a batch as extract's finishing stage sees one: eight 1 MiB chunks, 8 MiB of a
/// large file (four chunks of unequal sizes, as the content-defined chunker cuts them), and
/// 8 MiB of mixed sizes (small files' single chunks beside large files' chunks of 0.5-4 MiB).
fn bench_batches(c: &mut Criterion, rng: &mut rand::rngs::StdRng) {
    let key = Key::create(KeyType::Blake2Repokey, [1; 32]);
    let equal: Vec<usize> = vec![1 << 20; 8];
    let mut mixed: Vec<usize> = vec![4 << 20, 1 << 20, 600 << 10, 2 << 20];
    mixed.extend((0..40).map(|i| 1000 + i * 600));
    mixed.extend([300 << 10, 100 << 10, 50 << 10]);
    let large_file: Vec<usize> = vec![3 << 20, 5 << 19, 3 << 19, 1 << 20];
    for (name, lengths) in [
        ("8x1MiB", equal),
        ("large_file", large_file),
        ("mixed", mixed),
    ] {
        let chunks: Vec<Vec<u8>> = lengths
            .iter()
            .map(|&n| {
                let mut v = vec![0u8; n];
                rng.fill_bytes(&mut v);
                v
            })
            .collect();
        let refs: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
        let mut g = c.benchmark_group(format!("crypto/id_hash_batch/{name}"));
        g.throughput(Throughput::Bytes(lengths.iter().sum::<usize>() as u64));
        g.sample_size(20);
        g.bench_function("one_by_one", |b| {
            b.iter(|| {
                std::hint::black_box(&refs)
                    .iter()
                    .map(|c| key.id_hash(c))
                    .collect::<Vec<_>>()
            })
        });
        g.bench_function("id_hash_many", |b| {
            b.iter(|| key.id_hash_many(std::hint::black_box(&refs)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
