//! Tertiary authentication of metadata (TAM) for the manifest and archives
//! (borg 1.2.4 `KeyBase.pack_and_authenticate_metadata` / `unpack_and_verify_manifest`;
//! archive verification as added in borg 1.2.5 `unpack_and_verify_archive`; docs:
//! `internals/security.rst` "Offline authentication" / TAM).
//!
//! The metadata dict gets a `tam` entry `{hmac: 64 zero bytes, salt: 64 random bytes,
//! type: "HKDF_HMAC_SHA512"}` and is packed with sorted top-level keys (borg's
//! `StableDict`); then `hmac = HMAC-SHA512(k, packed)` with
//! `k = HKDF-SHA512(ikm = id_key || enc_key || enc_hmac_key, salt, info =
//! "borg-metadata-authentication-" + context, L = 64)` and the dict is packed again with the
//! real hmac. Plaintext keys use `k = salt || context` (borg's `PlaintextKey._tam_key`).
//! Verification zeroes the first occurrence of the hmac bytes in the received data and
//! recomputes — no re-packing, so any faithful msgpack producer verifies.
//!
//! Note: borg 1.2.4 already *writes* archive TAMs (`Archive.save` calls
//! `pack_and_authenticate_metadata(..., context=b'archive')`) but never checks them; checking
//! came with borg 1.2.5 (CVE-2023-36811). [`verify_archive`] follows 1.2.5+.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rmpv::Value;
use sha2::Sha512;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::key::{Key, KeyType};
use crate::msgpack;

type HmacSha512 = Hmac<Sha512>;

/// The only TAM suite borg 1.2 knows.
pub const TAM_TYPE: &str = "HKDF_HMAC_SHA512";

/// What a TAM authenticates; part of the HKDF info string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TamContext {
    /// The repository manifest (`b'manifest'`).
    Manifest,
    /// An archive metadata object (`b'archive'`).
    Archive,
}

impl TamContext {
    /// The context bytes.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            TamContext::Manifest => b"manifest",
            TamContext::Archive => b"archive",
        }
    }
}

/// Derive the 64-byte TAM key for `salt` and `context` (borg `_tam_key`).
pub fn tam_key(key: &Key, salt: &[u8], context: TamContext) -> Zeroizing<Vec<u8>> {
    if key.key_type() == KeyType::Plaintext {
        let mut k = salt.to_vec();
        k.extend_from_slice(context.as_bytes());
        return Zeroizing::new(k);
    }
    let ikm = key.tam_ikm();
    let hk = Hkdf::<Sha512>::new(Some(salt), &ikm);
    let mut info = b"borg-metadata-authentication-".to_vec();
    info.extend_from_slice(context.as_bytes());
    let mut okm = Zeroizing::new(vec![0u8; 64]);
    hk.expand(&info, &mut okm).expect("64 <= 255*64");
    okm
}

fn hmac512(k: &[u8], data: &[u8]) -> [u8; 64] {
    let mut m = HmacSha512::new_from_slice(k).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Add a TAM to `metadata` (a msgpack map) and pack it, with a random salt.
pub fn pack_and_authenticate(key: &Key, metadata: &Value, context: TamContext) -> Result<Vec<u8>> {
    let mut salt = [0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    pack_and_authenticate_with_salt(key, metadata, context, &salt)
}

/// [`pack_and_authenticate`] with a given salt (reproducible; tests only, a salt must never
/// be reused in production).
///
/// Top-level keys are sorted (borg wraps the dict in a `StableDict`); nested maps are packed
/// in the order given, so callers must already order them as borg would (borg uses
/// `StableDict`, i.e. sorted, for the manifest's `archives`/`config` and archive metadata).
/// An existing `tam` entry is replaced.
pub fn pack_and_authenticate_with_salt(
    key: &Key,
    metadata: &Value,
    context: TamContext,
    salt: &[u8; 64],
) -> Result<Vec<u8>> {
    let Value::Map(entries) = metadata else {
        return Err(Error::Msgpack(
            "metadata to authenticate must be a map".into(),
        ));
    };
    let mut entries: Vec<(Value, Value)> = entries
        .iter()
        .filter(|(k, _)| msgpack::key_bytes(k) != b"tam")
        .cloned()
        .collect();
    let tam = |hmac: Vec<u8>| {
        Value::Map(vec![
            (Value::from("hmac"), Value::Binary(hmac)),
            (Value::from("salt"), Value::Binary(salt.to_vec())),
            (Value::from("type"), Value::from(TAM_TYPE)),
        ])
    };
    entries.push((Value::from("tam"), tam(vec![0u8; 64])));
    let mut dict = Value::Map(entries);
    msgpack::sort_map_keys(&mut dict);
    let packed = msgpack::pack(&dict);
    let k = tam_key(key, salt, context);
    let mac = hmac512(&k, &packed);
    if let Value::Map(entries) = &mut dict {
        for (k, v) in entries.iter_mut() {
            if msgpack::key_bytes(k) == b"tam" {
                *v = tam(mac.to_vec());
            }
        }
    }
    Ok(msgpack::pack(&dict))
}

/// Outcome of verifying TAM'd metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The metadata map with the `tam` entry removed.
    pub value: Value,
    /// Whether a TAM was present and verified (false: accepted because not required).
    pub verified: bool,
    /// The TAM salt, if verified (borg >= 1.2.5 returns it for archives, to detect reuse).
    pub salt: Option<Vec<u8>>,
}

/// Verify a packed manifest (borg `unpack_and_verify_manifest`).
///
/// `location` is only used in the [`Error::TamRequired`] message. `force_tam_not_required`
/// mirrors borg's flag (e.g. for `borg upgrade --tam`).
pub fn verify_manifest(
    key: &Key,
    data: &[u8],
    force_tam_not_required: bool,
    location: &str,
) -> Result<Verified> {
    if data.starts_with(&[0xc1; 4]) {
        return Err(Error::UnsupportedManifest);
    }
    let required = key.tam_required() && !force_tam_not_required;
    verify(
        key,
        data,
        TamContext::Manifest,
        required,
        |_| Error::TamRequired {
            location: location.to_string(),
        },
        "Manifest authentication did not verify",
    )
}

/// Verify a packed archive metadata object (borg >= 1.2.5 `unpack_and_verify_archive`).
pub fn verify_archive(key: &Key, data: &[u8], force_tam_not_required: bool) -> Result<Verified> {
    let required = key.tam_required() && !force_tam_not_required;
    verify(
        key,
        data,
        TamContext::Archive,
        required,
        |v| {
            let name = msgpack::map_get(v, "name")
                .and_then(msgpack::as_raw)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_else(|| "<unknown>".into());
            Error::ArchiveTamRequired(name)
        },
        "Archive authentication did not verify",
    )
}

fn verify(
    key: &Key,
    data: &[u8],
    context: TamContext,
    required: bool,
    missing: impl Fn(&Value) -> Error,
    invalid_msg: &str,
) -> Result<Verified> {
    let invalid = || Error::Integrity(invalid_msg.to_string());
    let mut value = msgpack::unpack(data)?;
    let Value::Map(entries) = &mut value else {
        return Err(Error::Msgpack("metadata is not a map".into()));
    };
    // borg unpacks into a dict: of repeated `tam` keys the last one counts and `pop` removes
    // the key altogether (a map with two was found by the `archive_meta` fuzz target).
    let Some(pos) = entries
        .iter()
        .rposition(|(k, _)| msgpack::key_bytes(k) == b"tam")
    else {
        if required {
            return Err(missing(&value));
        }
        return Ok(Verified {
            value,
            verified: false,
            salt: None,
        });
    };
    let (_, tam) = entries.remove(pos);
    entries.retain(|(k, _)| msgpack::key_bytes(k) != b"tam");
    if !tam.is_map() {
        return Err(invalid());
    }
    let tam_type = msgpack::map_get(&tam, "type")
        .and_then(msgpack::as_raw)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_else(|| "<none>".into());
    if tam_type != TAM_TYPE {
        if required {
            return Err(Error::TamUnsupportedSuite(tam_type));
        }
        return Ok(Verified {
            value,
            verified: false,
            salt: None,
        });
    }
    let (Some(hmac), Some(salt)) = (
        msgpack::map_get(&tam, "hmac").and_then(msgpack::as_raw),
        msgpack::map_get(&tam, "salt").and_then(msgpack::as_raw),
    ) else {
        return Err(invalid());
    };
    if hmac.is_empty() {
        return Err(invalid());
    }
    // borg: offset = data.index(tam_hmac); data[offset:offset + 64] = bytes(64)
    let offset = find(data, hmac).ok_or_else(invalid)?;
    let mut buf = data.to_vec();
    let end = (offset + 64).min(buf.len());
    buf.splice(offset..end, std::iter::repeat_n(0u8, 64));
    let k = tam_key(key, salt, context);
    let computed = hmac512(&k, &buf);
    if !bool::from(computed.as_slice().ct_eq(hmac)) {
        return Err(invalid());
    }
    let salt = salt.to_vec();
    Ok(Verified {
        value,
        verified: true,
        salt: Some(salt),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
