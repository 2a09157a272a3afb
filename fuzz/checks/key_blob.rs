//! Fuzz target `key_blob`: arbitrary bytes as a borg key, through the public loaders of
//! `rborg_crypto` the CLI uses. The first byte selects the mode (bits 4-5) and the key type
//! (low nibble, modulo the 7 types); the rest is:
//!
//! * mode 0: a decrypted key blob (msgpack), `Key::from_plain_blob` (what the passphrase
//!   protection hides; the fuzzer cannot forge the HMAC in front of it, so it is fed directly);
//! * mode 1: a key file (`BORG_KEY <id>` + base64), `Key::from_keyfile_str`;
//! * mode 2: a repokey string (the config's `key =` value), `Key::from_repokey_string`;
//! * mode 3: the repository ID (32 bytes), then a `borg key import` text:
//!   `keymanager::import_keyfile` and `import_paperkey` (`--paper`).
//!
//! Modes 1 and 2 use the passphrase of the seeds (`testdata/fuzz/make_seeds.py`). A blob asking
//! for more than [`MAX_PBKDF2`] PBKDF2 iterations or a costly Argon2 is only parsed up to its
//! KDF parameters: borg accepts such keys too, and a real 100 000-iteration key costs a
//! second per run, which would drown the fuzzer in slow units.
//!
//! Properties beyond "no panic": a loaded key, saved again (`to_plain_blob`, or
//! `to_encrypted_blob_with` at one iteration), loads back to the same key material.
//! Regression test: `crates/crypto/tests/fuzz_regressions.rs`.

use rborg_crypto::keyblob::{split_keyfile, text_to_blob};
use rborg_crypto::{keymanager, msgpack, Key, KeyType, Passphrase};

/// The passphrase of the key seeds.
const PASSPHRASE: &str = "rborg-fuzz";
/// Highest PBKDF2 iteration count tried (borg's real count is 100 000).
const MAX_PBKDF2: u64 = 1000;

const TYPES: [KeyType; 7] = [
    KeyType::Plaintext,
    KeyType::Authenticated,
    KeyType::Blake2Authenticated,
    KeyType::Repokey,
    KeyType::Keyfile,
    KeyType::Blake2Repokey,
    KeyType::Blake2Keyfile,
];

fn material(k: &Key) -> impl PartialEq + std::fmt::Debug {
    (
        k.key_type(),
        *k.repository_id(),
        *k.enc_key(),
        k.enc_hmac_key().to_vec(),
        k.id_key().to_vec(),
        k.chunk_seed(),
        k.tam_required(),
    )
}

/// Whether opening the base64 blob `text` costs little (see the module docs).
fn cheap(text: &str) -> bool {
    let Ok(blob) = text_to_blob(text) else {
        return true;
    };
    let Ok(v) = msgpack::unpack(&blob) else {
        return true;
    };
    let num = |k: &str| msgpack::map_get(&v, k).and_then(|x| x.as_u64());
    num("iterations").unwrap_or(0) <= MAX_PBKDF2
        && num("argon2_memory_cost").unwrap_or(0) <= 8192
        && num("argon2_time_cost").unwrap_or(0) <= 4
        && num("argon2_parallelism").unwrap_or(0) <= 4
}

fn round_trip(key: &Key, pass: &Passphrase) {
    let plain = key.to_plain_blob();
    let back = Key::from_plain_blob(key.key_type(), &plain, !key.tam_required())
        .expect("reload a saved key blob");
    assert_eq!(material(&back), material(key));
    if key.key_type() != KeyType::Plaintext {
        let blob = key.to_encrypted_blob_with(pass, b"salt", 1);
        let back = Key::from_encrypted_blob(key.key_type(), &blob, pass, false)
            .expect("reopen a saved encrypted key");
        assert_eq!(material(&back), material(key));
    }
}

/// One fuzz unit; whether the input was accepted (parsed, opened) by the loader.
pub fn run(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let key_type = TYPES[usize::from(sel & 0x0f) % TYPES.len()];
    let pass = Passphrase::new(PASSPHRASE);
    match (sel >> 4) & 3 {
        0 => {
            let Ok(key) = Key::from_plain_blob(key_type, rest, sel & 0x80 != 0) else {
                return false;
            };
            round_trip(&key, &pass);
            true
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return false;
            };
            if let Ok((_, body)) = split_keyfile(text) {
                if !cheap(body) {
                    return false;
                }
            }
            let Ok(key) = Key::from_keyfile_str(key_type, text, &pass) else {
                return false;
            };
            round_trip(&key, &pass);
            true
        }
        2 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return false;
            };
            if !cheap(text) {
                return false;
            }
            let Ok(key) = Key::from_repokey_string(key_type, text, &pass) else {
                return false;
            };
            round_trip(&key, &pass);
            true
        }
        _ => {
            let Some((id, text)) = rest.split_first_chunk::<32>() else {
                return false;
            };
            let text = String::from_utf8_lossy(text);
            let _ = keymanager::import_keyfile(id, &text);
            let Ok(key_text) = keymanager::import_paperkey(id, &text) else {
                return false;
            };
            text_to_blob(&key_text).expect("an imported paper key is base64");
            true
        }
    }
}
