//! Fuzz target `manifest`: arbitrary bytes as a repository's manifest object, decoded by
//! `rborg_archive::Manifest::decode` (decrypt, decompress, TAM check, msgpack, archive list,
//! item keys, config) and checked with `check_repository_compatibility` for every operation,
//! as every command that opens a repository does. Keys: the seed repositories' (see
//! `keys.rs`), picked by the first byte.
//!
//! With the first byte's high bit set the rest is the manifest's plaintext (msgpack), sealed by
//! the target (none compression, encrypted under the picked key) so mutations reach the
//! msgpack decoder past the MAC; otherwise it is the stored object as borg wrote it.
//! Regression test: `crates/archive/tests/fuzz_regressions.rs`.

use crate::keys;
use rborg_archive::manifest::Operation;
use rborg_archive::Manifest;

/// One fuzz unit; whether the input was accepted (parsed, opened) by the loader.
pub fn run(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let key = keys::pick(sel & 0x7f);
    let decoded = if sel & 0x80 != 0 {
        let mut payload = vec![0u8, 0];
        payload.extend_from_slice(rest);
        Manifest::decode(key, &key.encrypt(&payload, 1), "fuzz")
    } else {
        Manifest::decode(key, rest, "fuzz")
    };
    let accepted = decoded.is_ok();
    if let Ok(manifest) = decoded {
        for op in [
            Operation::Read,
            Operation::Check,
            Operation::Write,
            Operation::Delete,
        ] {
            let _ = manifest.check_repository_compatibility(&[op]);
        }
        let _ = manifest.tam_required();
    }
    accepted
}
