//! The keys of the real borg 1.2.4 repositories the seeds come from (`testdata/fuzz/keys/`,
//! written by `testdata/fuzz/make_seeds.py`: repokey strings protected with the passphrase
//! `rborg-fuzz` at one PBKDF2 iteration), loaded once, so the seeds' real objects open with
//! their real keys. Shared by the `chunk_envelope`, `manifest` and `archive_meta` targets.

use std::sync::OnceLock;

use rborg_crypto::{Key, KeyType, Passphrase};

/// (mode, key type, repokey string) of every seed repository but the unencrypted one.
const KEYS: &[(&str, KeyType, &str)] = &[
    (
        "authenticated",
        KeyType::Authenticated,
        include_str!("../../testdata/fuzz/keys/authenticated.key"),
    ),
    (
        "authenticated-blake2",
        KeyType::Blake2Authenticated,
        include_str!("../../testdata/fuzz/keys/authenticated-blake2.key"),
    ),
    (
        "repokey",
        KeyType::Repokey,
        include_str!("../../testdata/fuzz/keys/repokey.key"),
    ),
    (
        "repokey-blake2",
        KeyType::Blake2Repokey,
        include_str!("../../testdata/fuzz/keys/repokey-blake2.key"),
    ),
];

/// Key 0 is the `none` mode's, 1.. the ones above: a selector byte modulo `all().len()`.
pub fn all() -> &'static [Key] {
    static ALL: OnceLock<Vec<Key>> = OnceLock::new();
    ALL.get_or_init(|| {
        let pass = Passphrase::new("rborg-fuzz");
        let mut keys = vec![Key::plaintext([0; 32])];
        for (name, ty, text) in KEYS {
            let key = Key::from_repokey_string(*ty, text.trim(), &pass)
                .unwrap_or_else(|e| panic!("seed key {name}: {e}"));
            keys.push(key);
        }
        keys
    })
}

/// The key a selector byte picks.
pub fn pick(sel: u8) -> &'static Key {
    let keys = all();
    &keys[usize::from(sel) % keys.len()]
}
