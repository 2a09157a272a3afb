//! Fuzz target `index`: arbitrary bytes as a borg hash index file, decoded by
//! `rborg_repository::hashindex` as the repository index (`index.N`, `NsIndex`) or, when the
//! first byte is odd, as the chunks cache (`ChunkIndex`, also in its compacted form of
//! `chunks.archive.d/*.compact`). The first byte is a selector, the rest the file.
//!
//! Properties beyond "no panic": the in-memory decoder (`from_bytes`) and the streaming one
//! (`read_from`) accept the same files with the same content; a loaded index saved and loaded
//! again gives the same bytes; a value inserted into a loaded index can be looked up.
//! Regression test: `crates/repository/tests/fuzz_regressions.rs`.

use rborg_repository::hashindex::{BucketValue, ChunkEntry, HashIndex, NsEntry};

fn check<V: BucketValue + PartialEq + std::fmt::Debug>(
    file: &[u8],
    compact: bool,
    make: impl Fn(u32) -> V,
) -> bool {
    let loaded = if compact {
        HashIndex::<V>::from_bytes_compact(file)
    } else {
        HashIndex::<V>::from_bytes(file)
    };
    if !compact {
        let streamed = HashIndex::<V>::read_from(file);
        assert_eq!(
            loaded.is_ok(),
            streamed.is_ok(),
            "{:?} / {:?}",
            loaded.as_ref().err(),
            streamed.as_ref().err()
        );
        if let (Ok(a), Ok(b)) = (&loaded, &streamed) {
            assert_eq!(a.to_bytes(), b.to_bytes());
        }
    }
    let Ok(mut index) = loaded else {
        return false;
    };
    let saved = index.to_bytes();
    if !compact {
        let again = HashIndex::<V>::from_bytes(&saved).expect("reload a saved index");
        assert_eq!(again.to_bytes(), saved);
        assert_eq!(again.len(), index.len());
    }
    let _ = index.iter().count();
    let mut key = [0u8; 32];
    let n = file.len().min(32);
    key[..n].copy_from_slice(&file[..n]);
    let value = make(file.len() as u32 % 1000);
    if index.try_insert(key, value).is_ok() {
        assert_eq!(index.get(&key), Some(make(file.len() as u32 % 1000)));
        index.remove(&key);
    }
    true
}

/// One fuzz unit; whether the input was accepted (parsed, opened) by the loader.
pub fn run(data: &[u8]) -> bool {
    let Some((&sel, file)) = data.split_first() else {
        return false;
    };
    if sel & 1 == 0 {
        check::<NsEntry>(file, false, |n| NsEntry {
            segment: n,
            offset: 8,
        })
    } else {
        check::<ChunkEntry>(file, sel & 2 != 0, |n| ChunkEntry {
            refcount: n + 1,
            size: 1,
            csize: 2,
        })
    }
}
