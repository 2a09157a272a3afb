//! rborg-crypto throughput: chunk ID hash, encrypt+MAC and MAC-check+decrypt per mode on a
//! 1 MiB chunk. Compare with borg's numbers in `docs/crypto.md`.

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
