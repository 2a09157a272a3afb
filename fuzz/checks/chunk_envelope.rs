//! Fuzz target `chunk_envelope`: arbitrary bytes as a stored repository object, opened as every
//! read opens one (`rborg_archive::archive::open_object`: `Key::decrypt` checks the type byte
//! and the MAC and decrypts, `rborg_compress::decompress`, `Key::assert_id`), under the real
//! keys of the seed repositories (none, authenticated, authenticated-blake2, repokey,
//! repokey-blake2; see `keys.rs`). Input: a key selector byte, the 32-byte object ID,
//! the object.
//!
//! Properties beyond "no panic": an object that opens, re-encrypted at another nonce, opens to
//! the same data; any bytes encrypted (`Key::encrypt`) decrypt to themselves and carry their
//! nonce. Regression test: `crates/archive/tests/fuzz_regressions.rs`.

use crate::keys;
use rborg_archive::archive::open_object;
use rborg_crypto::Key;

/// One fuzz unit; whether the input was accepted (parsed, opened) by the loader.
pub fn run(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let key = keys::pick(sel);
    let Some((id, cdata)) = rest.split_first_chunk::<32>() else {
        return false;
    };
    let nonce = u64::from_le_bytes(id[..8].try_into().expect("8 bytes"));
    let opened = open_object(key, id, cdata);
    if let Ok(plain) = &opened {
        let payload = key.decrypt(Some(id), cdata).expect("decrypts after open");
        let again = key.encrypt(&payload, nonce);
        assert_eq!(&open_object(key, id, &again).expect("reopen"), plain);
    }
    let sealed = key.encrypt(cdata, nonce);
    assert_eq!(
        key.decrypt(None, &sealed).expect("decrypt own envelope"),
        cdata
    );
    if key.key_type().is_encrypted() {
        assert_eq!(Key::extract_nonce(&sealed), Some(nonce));
    }
    opened.is_ok()
}
