//! Hostile input never panics: random and mutated bytes fed to every parser/decryptor must
//! come back as typed errors (or, where the format allows, as unverified results).

use rand::{Rng, RngCore, SeedableRng};
use rborg_crypto::{keyblob, keymanager, msgpack, tam, Key, KeyType, Passphrase};

#[test]
fn random_garbage_is_rejected_without_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let pp = Passphrase::new("x");
    let keys: Vec<Key> = KeyType::ALL
        .iter()
        .map(|kt| Key::create(*kt, [3; 32]))
        .collect();
    for round in 0..3000 {
        let len = rng.gen_range(0..200);
        let mut data = vec![0u8; len];
        rng.fill_bytes(&mut data);
        if round % 3 == 0 && !data.is_empty() {
            data[0] = 0x80 | (data[0] & 0x0f); // start with a fixmap to reach deeper code
        }
        for key in &keys {
            if key.key_type().is_encrypted() {
                assert!(key.decrypt(None, &data).is_err());
            } else {
                let _ = key.decrypt(None, &data);
            }
            let r = tam::verify_manifest(key, &data, false, "/r");
            if let Ok(v) = r {
                assert!(!v.verified);
            }
            if let Ok(v) = tam::verify_archive(key, &data, false) {
                assert!(!v.verified);
            }
        }
        let _ = msgpack::unpack(&data);
        assert!(Key::from_encrypted_blob(KeyType::Repokey, &data, &pp, true).is_err());
        assert!(Key::from_plain_blob(KeyType::Repokey, &data, true).is_err());
        let text = String::from_utf8_lossy(&data);
        assert!(Key::from_keyfile_str(KeyType::Keyfile, &text, &pp).is_err());
        assert!(keymanager::import_paperkey(&[0; 32], &text).is_err());
        let _ = keyblob::text_to_blob(&text);
    }
}

#[test]
fn mutated_key_blobs_are_rejected_without_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let key = Key::create(KeyType::Blake2Repokey, [5; 32]);
    let pp = Passphrase::new("pw");
    // small iteration count keeps this fast; the format is the same
    let blob = key.to_encrypted_blob_with(&pp, &[1; 32], 10);
    assert_eq!(
        Key::from_encrypted_blob(KeyType::Blake2Repokey, &blob, &pp, true)
            .unwrap()
            .id_key(),
        key.id_key()
    );
    for _ in 0..400 {
        let mut b = blob.clone();
        let pos = rng.gen_range(0..b.len());
        b[pos] ^= 1 << rng.gen_range(0..8);
        if let Ok(k) = Key::from_encrypted_blob(KeyType::Blake2Repokey, &b, &pp, true) {
            // only a change that leaves the authenticated content intact may succeed
            assert_eq!(k.id_key(), key.id_key());
            assert_eq!(k.enc_key(), key.enc_key());
        }
        let cut = rng.gen_range(0..b.len());
        assert!(Key::from_encrypted_blob(KeyType::Blake2Repokey, &b[..cut], &pp, true).is_err());
    }
    let plain = key.to_plain_blob();
    for cut in 0..plain.len() {
        assert!(Key::from_plain_blob(KeyType::Blake2Repokey, &plain[..cut], true).is_err());
    }
}

/// `decrypt_in_place` gives `decrypt`'s payload and `decrypt`'s error for every key type:
/// sealed envelopes, the same with one byte flipped, and random bytes.
#[test]
fn decrypt_in_place_agrees_with_decrypt() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for &kt in KeyType::ALL.iter() {
        let key = Key::create(kt, [5; 32]);
        for round in 0..300u64 {
            let mut payload = vec![0u8; rng.gen_range(0..3000)];
            rng.fill_bytes(&mut payload);
            let mut data = key.encrypt(&payload, round * 1000);
            match round % 3 {
                1 => {
                    let at = rng.gen_range(0..data.len());
                    data[at] ^= 1 << rng.gen_range(0..8);
                }
                2 => rng.fill_bytes(&mut data),
                _ => {}
            }
            let mut in_place = data.clone();
            let opened = key
                .decrypt_in_place(None, &mut in_place)
                .map(|r| in_place[r].to_vec())
                .map_err(|e| e.to_string());
            let want = key.decrypt(None, &data).map_err(|e| e.to_string());
            assert_eq!(opened, want, "{kt:?} round {round}");
            if round % 3 == 0 {
                assert_eq!(opened.as_deref(), Ok(&payload[..]), "{kt:?} round {round}");
            }
        }
    }
}

/// The batch forms agree with the single ones for every key type, whatever the batch holds:
/// `id_hash_many` with `id_hash` over lengths around BLAKE2b's 128-byte block and up to a
/// few hundred KiB (the SIMD lanes refill as inputs end), `assert_id_many` with `assert_id`,
/// and `decrypt_in_place_many` with `decrypt_in_place` for batches mixing sound envelopes,
/// flipped bits, random bytes and cut-off ones (each verdict and error its own).
#[test]
fn batch_forms_agree_with_single_ones() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let lengths = [
        0usize, 1, 127, 128, 129, 255, 256, 257, 4096, 65_537, 300_000,
    ];
    for &kt in KeyType::ALL.iter() {
        let key = Key::create(kt, [6; 32]);
        for batch in 0..40u64 {
            let n = rng.gen_range(0..12);
            let plains: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let len = if rng.gen_bool(0.5) {
                        lengths[rng.gen_range(0..lengths.len())]
                    } else {
                        rng.gen_range(0..20_000)
                    };
                    let mut p = vec![0u8; len];
                    rng.fill_bytes(&mut p);
                    p
                })
                .collect();
            let refs: Vec<&[u8]> = plains.iter().map(|p| &p[..]).collect();
            let single: Vec<[u8; 32]> = refs.iter().map(|p| key.id_hash(p)).collect();
            assert_eq!(key.id_hash_many(&refs), single, "{kt:?} batch {batch}");

            // every other ID wrong
            let ids: Vec<[u8; 32]> = single
                .iter()
                .enumerate()
                .map(|(i, id)| if i % 2 == 1 { [i as u8; 32] } else { *id })
                .collect();
            let pairs: Vec<(&[u8; 32], &[u8])> = ids.iter().zip(refs.iter().copied()).collect();
            let want: Vec<Result<(), String>> = pairs
                .iter()
                .map(|(id, p)| key.assert_id(id, p).map_err(|e| e.to_string()))
                .collect();
            let got: Vec<Result<(), String>> = key
                .assert_id_many(&pairs)
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect();
            assert_eq!(got, want, "{kt:?} batch {batch}");

            let stored: Vec<Vec<u8>> = plains
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mut data = key.encrypt(p, batch * 100_000 + i as u64 * 1000);
                    match rng.gen_range(0..5) {
                        1 => {
                            let at = rng.gen_range(0..data.len());
                            data[at] ^= 1 << rng.gen_range(0..8);
                        }
                        2 => rng.fill_bytes(&mut data),
                        3 => data.truncate(rng.gen_range(0..data.len().min(45))),
                        _ => {}
                    }
                    data
                })
                .collect();
            let want: Vec<Result<Vec<u8>, String>> = stored
                .iter()
                .zip(&ids)
                .map(|(data, id)| {
                    let mut d = data.clone();
                    key.decrypt_in_place(Some(id), &mut d)
                        .map(|r| d[r].to_vec())
                        .map_err(|e| e.to_string())
                })
                .collect();
            let mut opened = stored.clone();
            let id_refs: Vec<&[u8; 32]> = ids.iter().collect();
            let mut envelopes: Vec<&mut [u8]> = opened.iter_mut().map(|d| &mut d[..]).collect();
            let ranges = key.decrypt_in_place_many(&id_refs, &mut envelopes);
            let got: Vec<Result<Vec<u8>, String>> = ranges
                .into_iter()
                .zip(&opened)
                .map(|(r, d)| r.map(|r| d[r].to_vec()).map_err(|e| e.to_string()))
                .collect();
            assert_eq!(got, want, "{kt:?} batch {batch}");
        }
    }
}
