//! Opt-in Argon2id/ChaCha20-Poly1305 key protection (borg 2 style) against the committed
//! vector built by `testdata/gen/crypto.py` with argon2-cffi + cryptography, following borg
//! master's `encrypt_key_file_argon2`.

use rborg_crypto::argon2kdf::Argon2Params;
use rborg_crypto::{Error, Key, KeyType, Passphrase};
use serde_json::Value as J;

fn vector() -> J {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/crypto/argon2.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn hx(v: &J) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn argon2_blob_opens_and_reproduces() {
    let v = vector();
    let pp = Passphrase::new(v["passphrase"].as_str().unwrap());
    let blob = hx(&v["blob"]);
    let key = Key::from_encrypted_blob(KeyType::Repokey, &blob, &pp, true).unwrap();
    assert_eq!(key.enc_key().to_vec(), hx(&v["enc_key"]));
    assert_eq!(key.enc_hmac_key(), hx(&v["enc_hmac_key"]));
    assert_eq!(key.id_key(), hx(&v["id_key"]));
    assert_eq!(
        i64::from(key.chunk_seed()),
        v["chunk_seed"].as_i64().unwrap()
    );
    let again = key
        .to_encrypted_blob_argon2_with(&pp, &hx(&v["salt"]), Argon2Params::default())
        .unwrap();
    assert_eq!(again, blob);
    let bad = Passphrase::new("nope");
    assert!(matches!(
        Key::from_encrypted_blob(KeyType::Repokey, &blob, &bad, true),
        Err(Error::PassphraseWrong)
    ));
    // borg 1.2.4 cannot open it (its limited unpacker even refuses msgpack bin types)
    assert!(v["borg_1_2_refusal"].as_str().is_some());
}

#[test]
fn argon2_roundtrip_small_params() {
    let key = Key::create(KeyType::Blake2Keyfile, [9; 32]);
    let pp = Passphrase::new("pw");
    let p = Argon2Params {
        time_cost: 1,
        memory_cost: 64,
        parallelism: 1,
    };
    let blob = key.to_encrypted_blob_argon2(&pp, p).unwrap();
    let k2 = Key::from_encrypted_blob(KeyType::Blake2Keyfile, &blob, &pp, true).unwrap();
    assert_eq!(k2.id_key(), key.id_key());
    let mut t = blob.clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    assert!(Key::from_encrypted_blob(KeyType::Blake2Keyfile, &t, &pp, true).is_err());
}
