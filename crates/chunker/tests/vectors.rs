//! Checks every committed vector in testdata/chunker/vectors.json (produced by borg 1.2.4's
//! chunker, see testdata/gen/chunker.py) against rborg-chunker. Runs without borg.

mod common;

use common::*;
use rborg_chunker::{ChunkKind, Chunker, ChunkerParams, MapRange, ParamsError};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Cursor;

fn load() -> Value {
    let path = repo_root().join("testdata/chunker/vectors.json");
    let text = std::fs::read_to_string(&path).expect("read vectors.json");
    serde_json::from_str(&text).unwrap()
}

/// Chunk via the streaming API and via the slice API; both must agree and cover the input.
fn chunk_both(params: &ChunkerParams, seed: i32, data: &[u8]) -> Vec<(usize, ChunkKind)> {
    let mut chunker = Chunker::new(params, seed).unwrap();
    let mut streamed = Vec::new();
    let mut chunks = chunker.chunkify(data);
    let mut offset = 0u64;
    while let Some(c) = chunks.next_chunk().unwrap() {
        assert_eq!(c.offset, offset);
        let bytes = &data[offset as usize..offset as usize + c.len];
        match c.kind {
            ChunkKind::Data => assert_eq!(c.data.unwrap(), bytes),
            ChunkKind::Alloc => {
                assert!(c.data.is_none());
                assert!(bytes.iter().all(|&b| b == 0));
            }
            ChunkKind::Hole => panic!("no holes without a map"),
        }
        offset += c.len as u64;
        streamed.push((c.len, c.kind));
    }
    assert_eq!(offset as usize, data.len());
    // The slice API is checked too, on inputs up to 2 MiB (debug builds are slow; tests/api.rs
    // compares the two APIs on bigger inputs).
    if data.len() <= 2 << 20 {
        let sliced: Vec<_> = chunker.chunk_slice(data).map(|c| (c.len, c.kind)).collect();
        assert_eq!(streamed, sliced, "stream vs slice");
    }
    streamed
}

#[test]
fn chunk_vectors_match_borg() {
    let v = load();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() > 2000);
    // group by input so each recipe is built once
    let mut by_input: HashMap<&str, Vec<&Value>> = HashMap::new();
    for c in cases {
        if c.get("fmap").is_none() {
            by_input
                .entry(c["input"].as_str().unwrap())
                .or_default()
                .push(c);
        }
    }
    let mut checked = 0;
    let mut chunks_seen = 0;
    let mut seeds = std::collections::BTreeSet::new();
    let mut specs = std::collections::BTreeSet::new();
    let mut kinds = [0usize; 3];
    for (recipe, cs) in by_input {
        let data = make_input(recipe);
        for c in cs {
            let spec = c["spec"].as_str().unwrap();
            let seed = i32::try_from(c["seed"].as_i64().unwrap()).unwrap();
            let params: ChunkerParams = spec.parse().unwrap();
            let want = parse_compact(c["chunks"].as_str().unwrap());
            let got = chunk_both(&params, seed, &data);
            assert_eq!(got, want, "spec {spec} seed {seed} input {recipe}");
            checked += 1;
            chunks_seen += got.len();
            for (_, k) in &got {
                kinds[k.borg_allocation() as usize] += 1;
            }
            seeds.insert(seed);
            specs.insert(spec.to_string());
        }
    }
    assert!(seeds.len() >= 20 && seeds.contains(&i32::MIN) && seeds.contains(&i32::MAX));
    assert!(specs.len() >= 11);
    assert!(kinds[1] > 0, "all-zero chunks are covered");
    eprintln!(
        "checked {checked} cases, {chunks_seen} chunks ({} data, {} alloc), {} seeds, {} specs",
        kinds[0],
        kinds[1],
        seeds.len(),
        specs.len()
    );
}

#[test]
fn fixed_file_map_vectors_match_borg() {
    let v = load();
    let mut n = 0;
    for c in v["cases"].as_array().unwrap() {
        let Some(fmap) = c.get("fmap") else { continue };
        let map: Vec<MapRange> = fmap
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                MapRange::new(
                    r[0].as_u64().unwrap(),
                    r[1].as_u64().unwrap(),
                    r[2].as_bool().unwrap(),
                )
            })
            .collect();
        let params: ChunkerParams = c["spec"].as_str().unwrap().parse().unwrap();
        let data = make_input(c["input"].as_str().unwrap());
        let mut chunker = Chunker::new(&params, 0).unwrap();
        let mut chunks = chunker
            .chunkify_seekable(Cursor::new(&data), Some(map))
            .unwrap();
        let mut got = Vec::new();
        while let Some(ch) = chunks.next_chunk().unwrap() {
            if let Some(d) = ch.data {
                let o = ch.offset as usize;
                assert_eq!(d, &data[o..o + ch.len]);
            }
            got.push((ch.len, ch.kind));
        }
        assert_eq!(got, parse_compact(c["chunks"].as_str().unwrap()), "{c}");
        assert!(got.iter().any(|(_, k)| *k == ChunkKind::Hole));
        n += 1;
    }
    assert_eq!(n, 3);
}

#[test]
fn parse_vectors_match_borg() {
    let v = load();
    let mut n = 0;
    for c in v["parse"].as_array().unwrap() {
        let spec = c["spec"].as_str().unwrap();
        let ours = spec.parse::<ChunkerParams>();
        if let Some(ok) = c.get("ok") {
            let want: Vec<&str> = ok
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            if c.get("constructor_error").is_some() {
                // borg's parser accepts it but its Chunker asserts "too small max_size"
                assert_eq!(ours, Err(ParamsError::MaxSizeTooSmall), "{spec:?}");
            } else {
                let p = ours.unwrap_or_else(|e| panic!("{spec:?}: {e}"));
                assert_eq!(p.to_string(), want.join(","), "{spec:?}");
                assert_eq!(p.to_string().parse::<ChunkerParams>(), Ok(p));
            }
        } else {
            let want = c["error"].as_str().unwrap();
            match ours {
                Ok(p) => {
                    // the only spec borg rejects that rborg accepts is its own extension
                    assert!(spec.starts_with("fastcdc,"), "{spec:?} accepted as {p}");
                }
                Err(e) => assert_eq!(e.to_string(), want, "{spec:?}"),
            }
        }
        n += 1;
    }
    assert!(n >= 40);
}
