//! Chunker throughput: buzhash (borg default params), buzhash (items params), fastcdc and fixed
//! over 64 MiB of pseudo-random data, boundaries only (`slice/`: `Chunker::chunk_slice`) and
//! streaming (`stream/`: `Chunker::chunkify` over a `&[u8]` reader, i.e. including the copy
//! into the chunker's buffer).
//!
//! Run: `cargo bench -p rborg-benches --bench chunker`. borg's own C chunker on the same kind of
//! data: `/usr/bin/python3 testdata/gen/chunker.py bench SPEC SEED FILE` (see docs/chunker.md).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{RngCore, SeedableRng};
use rborg_chunker::{Chunker, ChunkerParams};
use std::hint::black_box;

const SIZE: usize = 64 << 20;

fn data() -> Vec<u8> {
    let mut d = vec![0u8; SIZE];
    rand::rngs::StdRng::seed_from_u64(42).fill_bytes(&mut d);
    d
}

fn bench(c: &mut Criterion) {
    let data = data();
    let mut g = c.benchmark_group("chunker");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    for spec in [
        "buzhash,19,23,21,4095",
        "buzhash,15,19,17,4095",
        "fastcdc,19,21,23",
        "fastcdc,15,17,19",
        "fixed,4194304",
    ] {
        let params: ChunkerParams = spec.parse().unwrap();
        let mut chunker = Chunker::new(&params, 0x1234_5678).unwrap();
        if !spec.starts_with("fixed") {
            // (fixed boundaries need no look at the data: only the streaming case is meaningful)
            g.bench_function(format!("slice/{spec}"), |b| {
                b.iter(|| black_box(chunker.chunk_slice(&data).count()))
            });
        }
        g.bench_function(format!("stream/{spec}"), |b| {
            b.iter(|| {
                let mut chunks = chunker.chunkify(&data[..]);
                let mut n = 0usize;
                while let Some(c) = chunks.next_chunk().unwrap() {
                    n += c.len;
                }
                black_box(n)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
