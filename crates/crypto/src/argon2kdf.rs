//! **Opt-in** Argon2id + ChaCha20-Poly1305 key protection, as borg 2 writes it
//! (borg master `borg/crypto/key.py` `encrypt_key_file_argon2`, `constants.py`
//! `ARGON2_ARGS`, `low_level.pyx` `CHACHA20_POLY1305`).
//!
//! # Warning
//!
//! **borg 1.x cannot open a key protected this way**: borg 1.2.4 refuses every
//! encrypted-key algorithm except `"sha256"` ("encrypted key algorithm 'argon2 chacha20-poly1305'
//! is not supported by this borg version."). Only use it when every client of the repository is
//! rborg. The default ([`crate::Key::to_encrypted_blob`]) stays PBKDF2 as borg 1.2.
//!
//! Format: msgpack map (sorted keys, borg 2 packing: str8/bin types) `{algorithm:
//! "argon2 chacha20-poly1305", argon2_memory_cost: 65536, argon2_parallelism: 4,
//! argon2_time_cost: 3, argon2_type: "id", data, salt(16), version: 1}`;
//! `k = Argon2id(passphrase, salt, t=3, m=64 MiB, p=4, 32 bytes)`;
//! `data = tag(16) || ChaCha20-Poly1305(k, nonce = 12 zero bytes, aad = "")` ciphertext of
//! the plain key blob (borg's AEAD layout puts the tag first). The inner blob is rborg's
//! borg-1.2 key blob (borg 2's own inner key blob has different fields).

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use rand::RngCore;
use rmpv::Value;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::key::{Key, KeyType};
use crate::msgpack;
use crate::passphrase::Passphrase;

/// The algorithm name stored in the encrypted-key map.
pub const ALGORITHM: &str = "argon2 chacha20-poly1305";

/// Argon2 cost parameters (borg 2's `ARGON2_ARGS` are the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Iterations (`time_cost`).
    pub time_cost: u32,
    /// Memory in KiB (`memory_cost`).
    pub memory_cost: u32,
    /// Lanes (`parallelism`).
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Argon2Params {
            time_cost: 3,
            memory_cost: 1 << 16,
            parallelism: 4,
        }
    }
}

fn derive(passphrase: &Passphrase, salt: &[u8], p: Argon2Params) -> Result<Zeroizing<[u8; 32]>> {
    let params = Params::new(p.memory_cost, p.time_cost, p.parallelism, Some(32))
        .map_err(|e| Error::InvalidKey(format!("argon2 parameters: {e}")))?;
    let mut k = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut k[..])
        .map_err(|e| Error::InvalidKey(format!("argon2: {e}")))?;
    Ok(k)
}

impl Key {
    /// Protect the key blob with Argon2id + ChaCha20-Poly1305 (borg 2 format).
    /// **borg 1.x cannot read the result** — see the module docs.
    pub fn to_encrypted_blob_argon2(
        &self,
        passphrase: &Passphrase,
        params: Argon2Params,
    ) -> Result<Vec<u8>> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        self.to_encrypted_blob_argon2_with(passphrase, &salt, params)
    }

    /// [`Key::to_encrypted_blob_argon2`] with a given salt (tests).
    pub fn to_encrypted_blob_argon2_with(
        &self,
        passphrase: &Passphrase,
        salt: &[u8],
        params: Argon2Params,
    ) -> Result<Vec<u8>> {
        let k = derive(passphrase, salt, params)?;
        let mut data = self.to_plain_blob().to_vec();
        let tag = ChaCha20Poly1305::new(k.as_ref().into())
            .encrypt_in_place_detached(&[0u8; 12].into(), b"", &mut data)
            .map_err(|_| Error::InvalidKey("chacha20-poly1305 encryption failed".into()))?;
        let mut stored = tag.to_vec();
        stored.extend_from_slice(&data);
        let v = Value::Map(vec![
            (Value::from("algorithm"), Value::from(ALGORITHM)),
            (
                Value::from("argon2_memory_cost"),
                Value::from(params.memory_cost),
            ),
            (
                Value::from("argon2_parallelism"),
                Value::from(params.parallelism),
            ),
            (
                Value::from("argon2_time_cost"),
                Value::from(params.time_cost),
            ),
            (Value::from("argon2_type"), Value::from("id")),
            (Value::from("data"), Value::Binary(stored)),
            (Value::from("salt"), Value::Binary(salt.to_vec())),
            (Value::from("version"), Value::from(1)),
        ]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).map_err(|e| Error::Msgpack(e.to_string()))?;
        Ok(out)
    }
}

/// Open an Argon2-protected blob (called by [`Key::from_encrypted_blob`] for this algorithm).
pub(crate) fn decrypt(
    key_type: KeyType,
    v: &Value,
    passphrase: &Passphrase,
    tam_required_default: bool,
) -> Result<Key> {
    let get = |n: &str| msgpack::map_get(v, n);
    let num = |n: &str| -> Result<u32> {
        get(n)
            .and_then(Value::as_u64)
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| Error::InvalidKey(format!("encrypted key lacks {n}")))
    };
    let ty = get("argon2_type")
        .and_then(msgpack::as_raw)
        .unwrap_or_default();
    if ty != b"id" {
        return Err(Error::Unsupported(format!(
            "argon2 type '{}' is not supported",
            String::from_utf8_lossy(ty)
        )));
    }
    let params = Argon2Params {
        time_cost: num("argon2_time_cost")?,
        memory_cost: num("argon2_memory_cost")?,
        parallelism: num("argon2_parallelism")?,
    };
    if params.memory_cost > 4 << 20 || params.time_cost > 100 {
        return Err(Error::InvalidKey(
            "argon2 cost parameters unreasonably large".into(),
        ));
    }
    let salt = get("salt")
        .and_then(msgpack::as_raw)
        .ok_or_else(|| Error::InvalidKey("no salt".into()))?;
    let stored = get("data")
        .and_then(msgpack::as_raw)
        .ok_or_else(|| Error::InvalidKey("no data".into()))?;
    if stored.len() < 16 {
        return Err(Error::InvalidKey("data too short".into()));
    }
    let k = derive(passphrase, salt, params)?;
    let (tag, ct) = stored.split_at(16);
    let mut data = Zeroizing::new(ct.to_vec());
    ChaCha20Poly1305::new(k.as_ref().into())
        .decrypt_in_place_detached(&[0u8; 12].into(), b"", &mut data, tag.into())
        .map_err(|_| Error::PassphraseWrong)?;
    Key::from_plain_blob(key_type, &data, tam_required_default)
}
