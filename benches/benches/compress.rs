//! Compression throughput of rborg-compress at borg's typical levels.
//!
//! Inputs are the splitmix64 recipes of `testdata/gen/compress.py` (1 MiB of
//! text-like words, seed 7; 1 MiB of random bytes, seed 8), so
//! `/usr/bin/python3 testdata/gen/compress.py --bench` measures borg on the
//! very same bytes. Results: docs/compress.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rborg_compress::{decompress, CompressionSpec, MAX_DATA_SIZE};

const SIZE: usize = 1 << 20;

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

const WORDS: &str = "the of and to in is that for it as was with be by on not he this are or \
    his from at which but have an they you were her she there been one all we \
    their has would when if so no will more can said who up out about them into \
    repository archive chunk segment compression backup borg deduplication key \
    encryption index manifest lz4 zstd zlib lzma obfuscate data file directory";

fn text(seed: u64, n: usize) -> Vec<u8> {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = SplitMix64(seed);
    let mut out = Vec::with_capacity(n + 32);
    while out.len() < n {
        let v = rng.next();
        out.extend_from_slice(words[(v % words.len() as u64) as usize].as_bytes());
        out.push(if (v >> 32) % 12 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(n);
    out
}

fn random(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = SplitMix64(seed);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(n);
    out
}

const SPECS: &[&str] = &["lz4", "zstd,3", "zstd,10", "zlib,6", "lzma,6"];

fn bench(c: &mut Criterion) {
    let inputs = [("text", text(7, SIZE)), ("random", random(8, SIZE))];
    for op in ["compress", "decompress"] {
        let mut group = c.benchmark_group(format!("compress/{op}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Bytes(SIZE as u64));
        for spec in SPECS {
            let compressor = spec.parse::<CompressionSpec>().unwrap().compressor();
            for (name, data) in &inputs {
                let id = BenchmarkId::new(*spec, name);
                if op == "compress" {
                    let mut out = Vec::with_capacity(2 * SIZE);
                    group.bench_with_input(id, data, |b, d| {
                        b.iter(|| {
                            out.clear();
                            compressor
                                .try_compress_into(black_box(d), &mut out)
                                .unwrap();
                            black_box(out.len())
                        })
                    });
                } else {
                    let blob = compressor.compress(data);
                    eprintln!(
                        "{spec} {name}: ratio {:.4} ({} -> {} bytes)",
                        blob.len() as f64 / data.len() as f64,
                        data.len(),
                        blob.len()
                    );
                    group.bench_with_input(id, &blob, |b, blob| {
                        b.iter(|| {
                            decompress(black_box(blob), Some(SIZE), MAX_DATA_SIZE)
                                .unwrap()
                                .len()
                        })
                    });
                }
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
