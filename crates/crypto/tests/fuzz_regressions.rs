//! Replays the committed inputs of the `key_blob` fuzz target (`fuzz/`, see
//! `docs/reliability.md`): real borg 1.2.4 key files, repokey strings, paper keys and decrypted
//! key blobs, and every input that once crashed the target, through the target's own check
//! (`fuzz/checks/key_blob.rs`: the public key loaders plus the save/load round trip).

#[path = "../../../fuzz/checks/key_blob.rs"]
mod key_blob;
#[path = "../../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn key_blob_inputs() {
    let results = replay::replay("key_blob", key_blob::run);
    // borg's real 100 000-iteration key is only parsed up to its KDF parameters (see the check)
    replay::assert_seeds("key_blob", &results, &["repokey-real-kdf"]);
}

/// A key repeated in a metadata map (the `archive_meta` finding): the last value counts, as in
/// the Python dict borg 1.2.4 unpacks into (`msgpack.unpackb` keeps the last), and TAM
/// verification removes every `tam` entry, as borg's `dict.pop('tam')` does.
#[test]
fn repeated_map_keys_read_like_borg() {
    use rborg_crypto::{msgpack, verify_archive, Key};
    use rmpv::Value;
    let map = Value::Map(vec![
        (Value::from("name"), Value::from("first")),
        (Value::from("tam"), Value::from(1)),
        (Value::from("name"), Value::from("last")),
        (Value::from("tam"), Value::from(2)),
    ]);
    let got = msgpack::map_get(&map, "name").and_then(msgpack::as_raw);
    assert_eq!(got, Some(&b"last"[..]));
    let key = Key::plaintext([0; 32]);
    let verified = verify_archive(&key, &msgpack::pack(&map), true);
    // the last `tam` (an int, not a map) is the one checked: refused as borg refuses it
    assert!(verified.is_err());
    let map = Value::Map(vec![
        (Value::from("tam"), Value::from(1)),
        (Value::from("name"), Value::from("a")),
        (Value::from("tam"), Value::Map(vec![])),
    ]);
    let verified = verify_archive(&key, &msgpack::pack(&map), true).unwrap();
    assert!(!verified.verified);
    assert!(msgpack::map_get(&verified.value, "tam").is_none());
}
