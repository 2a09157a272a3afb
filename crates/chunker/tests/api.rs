//! API behaviour that does not need borg: streaming vs slice equivalence under arbitrary read
//! sizes, reuse, kinds, FastCDC equivalence with the `fastcdc` crate, params round trips, errors.

mod common;

use common::*;
use rand::{Rng, RngCore, SeedableRng};
use rborg_chunker::{
    chunk_file, chunk_slice, BuzHash, BuzhashParams, ChunkInfo, ChunkKind, Chunker, ChunkerParams,
    Error, FastCdcParams, FixedParams, MapRange, ParamsError,
};
use std::io::{self, Cursor, Read};

/// A reader that returns short reads of random sizes (1..=max).
struct Dribble<'a> {
    data: &'a [u8],
    rng: rand::rngs::StdRng,
    max: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .rng
            .gen_range(1..=self.max)
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn stream_infos<R: Read>(chunker: &mut Chunker, r: R) -> Vec<ChunkInfo> {
    let mut out = Vec::new();
    let mut chunks = chunker.chunkify(r);
    while let Some(c) = chunks.next_chunk().unwrap() {
        out.push(c.info());
    }
    out
}

fn mixed_input(seed: u64, len: usize) -> Vec<u8> {
    // random data with zero runs and repeated blocks
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut d = vec![0u8; len];
    rng.fill_bytes(&mut d);
    let mut pos = 0;
    while pos < len {
        let run = rng.gen_range(1..200_000).min(len - pos);
        match rng.gen_range(0..4) {
            0 => d[pos..pos + run].fill(0),
            1 if pos > run => d.copy_within(pos - run..pos, pos),
            _ => {}
        }
        pos += run;
    }
    d
}

#[test]
fn streaming_equals_slice_for_any_read_sizes() {
    let data = mixed_input(1, 3 << 20);
    for spec in [
        "buzhash,10,16,12,4095",
        "buzhash,8,12,10,63",
        "buzhash,15,19,17,4095",
        "fastcdc,10,12,16",
        "fixed,4096,100",
    ] {
        let params: ChunkerParams = spec.parse().unwrap();
        let mut chunker = Chunker::new(&params, -77).unwrap();
        let want: Vec<_> = chunker.chunk_slice(&data).map(|c| c.info()).collect();
        assert_eq!(want.iter().map(|c| c.len).sum::<usize>(), data.len());
        for max in [1, 7, 4096, 100_000] {
            let r = Dribble {
                data: &data,
                rng: rand::rngs::StdRng::seed_from_u64(max as u64),
                max,
            };
            assert_eq!(stream_infos(&mut chunker, r), want, "{spec} reads<={max}");
        }
    }
}

#[test]
fn big_input_stream_equals_slice_default_params() {
    let data = make_input("holes:77:3000000:20000000");
    for params in [ChunkerParams::DEFAULT, "fastcdc,19,21,23".parse().unwrap()] {
        let mut chunker = Chunker::new(&params, i32::MIN).unwrap();
        let want: Vec<_> = chunker.chunk_slice(&data).map(|c| c.info()).collect();
        assert!(want.len() >= 3, "{}", want.len());
        assert_eq!(stream_infos(&mut chunker, &data[..]), want);
    }
}

#[test]
fn chunker_is_reusable() {
    let a = make_input("random:1:300000");
    let b = make_input("text:2:200000");
    let params: ChunkerParams = "buzhash,10,16,12,4095".parse().unwrap();
    let mut chunker = Chunker::new(&params, 5).unwrap();
    let first = stream_infos(&mut chunker, &a[..]);
    // abandon a stream half way, then chunk another input, then the first again
    {
        let mut chunks = chunker.chunkify(&b[..]);
        chunks.next_chunk().unwrap();
    }
    let _ = stream_infos(&mut chunker, &b[..]);
    assert_eq!(stream_infos(&mut chunker, &a[..]), first);
    assert_eq!(chunk_slice(&params, 5, &a).unwrap(), first);
}

#[test]
fn empty_and_tiny_inputs() {
    for spec in [
        "default",
        "buzhash,6,7,6,1",
        "fixed,64",
        "fixed,64,10",
        "fastcdc,6,8,10",
    ] {
        let params: ChunkerParams = spec.parse().unwrap();
        assert!(chunk_slice(&params, 0, &[]).unwrap().is_empty(), "{spec}");
        let one = chunk_slice(&params, 0, &[7]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(
            (one[0].offset, one[0].len, one[0].kind),
            (0, 1, ChunkKind::Data)
        );
        let z = chunk_slice(&params, 0, &[0]).unwrap();
        assert_eq!(z[0].kind, ChunkKind::Alloc);
    }
}

#[test]
fn zero_chunks_have_no_data() {
    let mut data = vec![0u8; 1 << 20];
    data[700_000] = 1;
    let params: ChunkerParams = "fixed,65536".parse().unwrap();
    let mut chunker = Chunker::new(&params, 0).unwrap();
    let kinds: Vec<_> = chunker
        .chunk_slice(&data)
        .map(|c| {
            assert_eq!(c.data.is_some(), c.kind == ChunkKind::Data);
            c.kind
        })
        .collect();
    assert_eq!(kinds.len(), 16);
    assert_eq!(kinds.iter().filter(|k| **k == ChunkKind::Data).count(), 1);
    assert_eq!(kinds[700_000 / 65536], ChunkKind::Data);
}

#[test]
fn fastcdc_matches_fastcdc_crate() {
    use fastcdc::v2020::{FastCDC, Normalization};
    let data = mixed_input(9, 6 << 20);
    for (spec, seed) in [
        ("fastcdc,10,12,16", 0),
        ("fastcdc,13,15,17", -5),
        ("fastcdc,6,8,10", 99),
    ] {
        let params: ChunkerParams = spec.parse().unwrap();
        let ChunkerParams::FastCdc(p) = params else {
            unreachable!()
        };
        let reference: Vec<(usize, usize)> = FastCDC::with_level_and_seed(
            &data,
            p.min_size() as u32,
            p.avg_size() as u32,
            p.max_size() as u32,
            Normalization::Level1,
            rborg_chunker::gear_seed(seed),
        )
        .map(|c| (c.offset, c.length))
        .collect();
        let ours: Vec<(usize, usize)> = chunk_slice(&params, seed, &data)
            .unwrap()
            .iter()
            .map(|c| (c.offset as usize, c.len))
            .collect();
        assert_eq!(ours, reference, "{spec}");
        let mut chunker = Chunker::new(&params, seed).unwrap();
        let streamed: Vec<(usize, usize)> = stream_infos(&mut chunker, &data[..])
            .iter()
            .map(|c| (c.offset as usize, c.len))
            .collect();
        assert_eq!(streamed, reference, "{spec} streaming");
    }
}

#[test]
fn rolling_hash_equals_direct_hash() {
    let data = make_input("random:3:20000");
    for (seed, w) in [
        (0, 4095usize),
        (-1, 63),
        (i32::MIN, 64),
        (12345, 1),
        (7, 31),
    ] {
        let h = BuzHash::new(seed, w);
        let mut sum = h.hash(&data[..w]);
        for p in 0..data.len() - w {
            assert_eq!(sum, h.hash(&data[p..p + w]), "seed {seed} w {w} p {p}");
            sum = h.update(sum, data[p], data[p + w], w);
        }
    }
    // seed enters as its two's complement u32: -1 flips every table bit
    assert_eq!(
        BuzHash::new(-1, 1).hash(&[0]),
        !rborg_chunker::TABLE_BASE[0]
    );
}

#[test]
fn params_round_trip_and_validation() {
    let mut ok = 0;
    for min in 5..=24i64 {
        for max in min..=24 {
            for mask in [min, (min + max) / 2, max] {
                for window in [1i64, 63, 4095] {
                    let s = format!("buzhash,{min},{max},{mask},{window}");
                    match s.parse::<ChunkerParams>() {
                        Ok(p) => {
                            assert_eq!(p.to_string(), s);
                            assert_eq!(format!("{min},{max},{mask},{window}").parse(), Ok(p));
                            Chunker::new(&p, 0).unwrap();
                            ok += 1;
                        }
                        Err(e) => assert!(
                            min < 6 || max > 23 || window + (1 << min) + 1 > (1 << max),
                            "{s}: {e}"
                        ),
                    }
                }
            }
        }
    }
    assert!(ok > 300);
    assert_eq!(
        "fixed,4096,-1".parse::<ChunkerParams>(),
        Err(ParamsError::NegativeHeaderSize)
    );
    assert_eq!(
        "buzhash,19,23,21,0".parse::<ChunkerParams>(),
        Err(ParamsError::WindowTooSmall)
    );
    assert_eq!(
        "fastcdc,19,21,23"
            .parse::<ChunkerParams>()
            .unwrap()
            .to_string(),
        "fastcdc,19,21,23"
    );
    for bad in [
        "fastcdc,5,8,10",
        "fastcdc,21,21,23",
        "fastcdc,10,9,16",
        "fastcdc,10,12,24",
    ] {
        assert_eq!(
            bad.parse::<ChunkerParams>(),
            Err(ParamsError::FastCdcOutOfRange),
            "{bad}"
        );
    }
    // metadata tuples
    assert_eq!(
        ChunkerParams::from_parts(None, &[19, 23, 21, 4095]),
        Ok(ChunkerParams::DEFAULT)
    );
    assert_eq!(
        ChunkerParams::from_parts(Some("fixed"), &[4096, 0])
            .unwrap()
            .to_string(),
        "fixed,4096,0"
    );
    assert_eq!(
        ChunkerParams::from_parts(Some("rabin"), &[1, 2]),
        Err(ParamsError::UnknownAlgorithm("rabin".into()))
    );
    assert_eq!(ChunkerParams::ITEMS.to_string(), "buzhash,15,19,17,4095");
    assert_eq!(ChunkerParams::default(), ChunkerParams::DEFAULT);
}

#[test]
fn directly_built_invalid_params_are_rejected() {
    let bad = [
        ChunkerParams::Buzhash(BuzhashParams {
            min_exp: 19,
            max_exp: 23,
            mask_bits: 21,
            window_size: 0,
        }),
        ChunkerParams::Buzhash(BuzhashParams {
            min_exp: 40,
            max_exp: 50,
            mask_bits: 45,
            window_size: 4095,
        }),
        ChunkerParams::Fixed(FixedParams {
            block_size: 10,
            header_size: 0,
        }),
        ChunkerParams::FastCdc(FastCdcParams {
            min_exp: 30,
            avg_exp: 31,
            max_exp: 32,
        }),
    ];
    for p in bad {
        assert!(
            matches!(Chunker::new(&p, 0), Err(Error::Params(_))),
            "{p:?}"
        );
    }
}

struct Failing(usize);
impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.0).min(1000);
        buf[..n].fill(1);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn read_errors_are_returned() {
    for spec in ["default", "fixed,4096", "fastcdc,10,12,16"] {
        let params: ChunkerParams = spec.parse().unwrap();
        let mut chunker = Chunker::new(&params, 0).unwrap();
        let mut chunks = chunker.chunkify(Failing(10_000));
        let err = loop {
            match chunks.next_chunk() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{spec}: error swallowed"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::Io(_)), "{spec}");
    }
}

#[test]
fn maps_only_for_fixed() {
    let mut chunker = Chunker::new(&ChunkerParams::DEFAULT, 0).unwrap();
    let r = chunker.chunkify_seekable(
        Cursor::new(vec![1u8; 10]),
        Some(vec![MapRange::new(0, 10, true)]),
    );
    assert!(matches!(r, Err(Error::MapNeedsFixed)));
}

#[test]
fn sparse_file_holes_are_not_read() {
    // 1 MiB hole, 64 KiB data, 1 MiB hole (at the end)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&path).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&make_input("random:5:65536")).unwrap();
        f.set_len((2 << 20) + 65536).unwrap();
    }
    let params: ChunkerParams = "fixed,65536".parse().unwrap();
    let sparse = chunk_file(&params, 0, &path, true).unwrap();
    let dense = chunk_file(&params, 0, &path, false).unwrap();
    // same boundaries either way; holes are Hole when sparse (if the file system reports them)
    assert_eq!(
        sparse.iter().map(|c| (c.offset, c.len)).collect::<Vec<_>>(),
        dense.iter().map(|c| (c.offset, c.len)).collect::<Vec<_>>()
    );
    assert!(dense.iter().all(|c| c.kind != ChunkKind::Hole));
    assert_eq!(
        dense.iter().filter(|c| c.kind == ChunkKind::Data).count(),
        1
    );
    let map = rborg_chunker::sparse_map(&std::fs::File::open(&path).unwrap()).unwrap();
    if map.iter().any(|r| !r.is_data) {
        assert_eq!(
            sparse.iter().filter(|c| c.kind == ChunkKind::Hole).count(),
            32
        );
        assert_eq!(sparse[16].kind, ChunkKind::Data);
    } else {
        eprintln!("NOTICE: file system reports no holes; sparse path checked as dense");
    }
}
