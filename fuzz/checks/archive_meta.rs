//! Fuzz target `archive_meta`: arbitrary bytes as the plaintext of an archive metadata object
//! (msgpack), decoded by `rborg_archive::ArchiveMeta::decode` (TAM verification, version,
//! item chunk list, names, times, statistics) as `ArchiveMeta::load` does after opening the
//! object. The first byte picks the key (the seed repositories', see `keys.rs`) and,
//! with its high bit, whether a TAM is required (borg >= 1.2.5 behaviour).
//!
//! Property beyond "no panic": a decoded archive encoded again (`ArchiveMeta::encode`, which puts
//! the verified TAM back) decodes to an archive that encodes to the same bytes.
//! Regression test: `crates/archive/tests/fuzz_regressions.rs`.

use crate::keys;
use rborg_archive::ArchiveMeta;

/// One fuzz unit; whether the input was accepted (parsed, opened) by the loader.
pub fn run(data: &[u8]) -> bool {
    let Some((&sel, plain)) = data.split_first() else {
        return false;
    };
    let key = keys::pick(sel & 0x7f);
    let require_tam = sel & 0x80 != 0;
    let id = key.id_hash(plain);
    let Ok(meta) = ArchiveMeta::decode(key, &id, plain, require_tam) else {
        return false;
    };
    let _ = meta.name_lossy();
    let encoded = meta.encode();
    let again = ArchiveMeta::decode(key, &id, &encoded, require_tam).expect("decode re-encoded");
    assert_eq!(again.encode(), encoded);
    true
}
