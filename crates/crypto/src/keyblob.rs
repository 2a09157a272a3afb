//! Passphrase-protected key blobs, key files and repokeys (borg 1.2.4
//! `KeyfileKeyBase._save/_load`, `encrypt_key_file/decrypt_key_file`; docs:
//! `internals/data-structures.rst` "Key files").
//!
//! The key blob is the msgpack map (sorted keys, borg's `Key.as_dict()`):
//! `{chunk_seed, enc_hmac_key, enc_key, id_key, repository_id, tam_required, version: 1}`.
//! It is protected by the "encrypted key" msgpack map
//! `{algorithm: "sha256", data, hash, iterations, salt, version: 1}` where
//! `k = PBKDF2-HMAC-SHA256(passphrase, salt(32), iterations(100000), 32)`,
//! `data = AES-256-CTR(k, iv=0)(blob)` and `hash = HMAC-SHA256(k, blob)`.
//! The text form is that map in base64, wrapped at 70 columns (Python's `textwrap.wrap`).
//! A key file prepends `BORG_KEY <repo id hex>\n` and ends with `\n`; a repokey stores the
//! bare text (no trailing newline) in the repository config's `key` entry.

use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rmpv::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::key::{Key, KeyType};
use crate::msgpack;
use crate::passphrase::Passphrase;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type HmacSha256 = Hmac<Sha256>;

/// PBKDF2 iteration count borg 1.2 writes (`PBKDF2_ITERATIONS` in constants.py).
pub const PBKDF2_ITERATIONS: u32 = 100_000;

/// First token of a key file (`KeyfileKey.FILE_ID`).
pub const FILE_ID: &str = "BORG_KEY";

/// Upper bound on iterations we accept from a key blob, so a hostile key file cannot make us
/// spin for hours (borg itself has no bound).
pub const MAX_ITERATIONS: u32 = 100_000_000;

fn kdf(passphrase: &Passphrase, salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut k = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(passphrase.as_bytes(), salt, iterations, &mut k[..]);
    k
}

fn aes_ctr_zero_iv(key: &[u8; 32], data: &mut [u8]) {
    let mut c = Aes256Ctr::new(key.into(), &[0u8; 16].into());
    c.apply_keystream(data);
}

fn s(v: &str) -> Value {
    Value::from(v)
}

/// Python-`textwrap.wrap(width=70)` of a base64 string without whitespace.
fn wrap70(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 70 + 1);
    for (i, chunk) in b64.as_bytes().chunks(70).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // base64 output is ASCII
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    out
}

impl Key {
    /// The plain msgpack key blob (before passphrase protection).
    pub fn to_plain_blob(&self) -> Zeroizing<Vec<u8>> {
        let v = Value::Map(vec![
            (s("chunk_seed"), Value::from(self.chunk_seed())),
            (
                s("enc_hmac_key"),
                Value::Binary(self.enc_hmac_key().to_vec()),
            ),
            (s("enc_key"), Value::Binary(self.enc_key().to_vec())),
            (s("id_key"), Value::Binary(self.id_key().to_vec())),
            (
                s("repository_id"),
                Value::Binary(self.repository_id().to_vec()),
            ),
            (s("tam_required"), Value::Boolean(self.tam_required())),
            (s("version"), Value::from(1)),
        ]);
        let packed = Zeroizing::new(msgpack::pack(&v));
        zeroize_value(v);
        packed
    }

    /// Parse a plain msgpack key blob for a repository of mode `key_type`.
    ///
    /// `tam_required_default` is used when the blob predates the `tam_required` field
    /// (borg falls back to the security dir's `tam_required` file).
    pub fn from_plain_blob(
        key_type: KeyType,
        blob: &[u8],
        tam_required_default: bool,
    ) -> Result<Key> {
        let v = msgpack::unpack(blob)?;
        let res = (|| {
            let get = |name: &str| msgpack::map_get(&v, name);
            let version = get("version").and_then(Value::as_u64);
            if version != Some(1) {
                return Err(Error::Unsupported(format!(
                    "key version {} is not supported by this borg version.",
                    version.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
                )));
            }
            let raw = |name: &str| -> Result<Vec<u8>> {
                get(name)
                    .and_then(msgpack::as_raw)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| Error::InvalidKey(format!("key blob lacks {name}")))
            };
            let repo_id: [u8; 32] = raw("repository_id")?
                .try_into()
                .map_err(|_| Error::InvalidKey("repository_id must be 32 bytes".into()))?;
            let mut enc_key_v = Zeroizing::new(raw("enc_key")?);
            let enc_key: [u8; 32] = enc_key_v
                .as_slice()
                .try_into()
                .map_err(|_| Error::InvalidKey("enc_key must be 32 bytes".into()))?;
            enc_key_v.clear();
            let seed = get("chunk_seed")
                .and_then(Value::as_i64)
                .and_then(|s| i32::try_from(s).ok())
                .ok_or_else(|| Error::InvalidKey("bad chunk_seed".into()))?;
            let tam_required = match get("tam_required") {
                Some(Value::Boolean(b)) => *b,
                _ => tam_required_default,
            };
            Key::from_material(
                key_type,
                repo_id,
                enc_key,
                raw("enc_hmac_key")?,
                raw("id_key")?,
                seed,
                tam_required,
            )
        })();
        zeroize_value(v);
        res
    }

    /// Passphrase-protect the key blob (borg's `encrypt_key_file`) with a random salt and
    /// borg's iteration count; returns the msgpack "encrypted key" bytes.
    pub fn to_encrypted_blob(&self, passphrase: &Passphrase) -> Vec<u8> {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        self.to_encrypted_blob_with(passphrase, &salt, PBKDF2_ITERATIONS)
    }

    /// [`Key::to_encrypted_blob`] with explicit salt and iterations (reproducible output for
    /// tests; use the random-salt version otherwise).
    pub fn to_encrypted_blob_with(
        &self,
        passphrase: &Passphrase,
        salt: &[u8],
        iterations: u32,
    ) -> Vec<u8> {
        let plain = self.to_plain_blob();
        let k = kdf(passphrase, salt, iterations);
        let mut m = HmacSha256::new_from_slice(&k[..]).expect("any key length");
        m.update(&plain);
        let hash = m.finalize().into_bytes();
        let mut data = plain.to_vec();
        aes_ctr_zero_iv(&k, &mut data);
        let v = Value::Map(vec![
            (s("algorithm"), s("sha256")),
            (s("data"), Value::Binary(data)),
            (s("hash"), Value::Binary(hash.to_vec())),
            (s("iterations"), Value::from(iterations)),
            (s("salt"), Value::Binary(salt.to_vec())),
            (s("version"), Value::from(1)),
        ]);
        msgpack::pack(&v)
    }

    /// Open a passphrase-protected blob (borg's `decrypt_key_file` + `_load`).
    /// Besides borg 1.2's `"sha256"` (PBKDF2) this also opens the opt-in borg-2 style
    /// `"argon2 chacha20-poly1305"` protection ([`crate::argon2kdf`]).
    /// Besides borg 1.2's `"sha256"` (PBKDF2) this also opens the opt-in borg-2 style
    /// `"argon2 chacha20-poly1305"` protection ([`crate::argon2kdf`]).
    /// A wrong passphrase gives [`Error::PassphraseWrong`].
    pub fn from_encrypted_blob(
        key_type: KeyType,
        cdata: &[u8],
        passphrase: &Passphrase,
        tam_required_default: bool,
    ) -> Result<Key> {
        let v = msgpack::unpack(cdata)?;
        let get = |name: &str| msgpack::map_get(&v, name);
        let version = get("version").and_then(Value::as_u64);
        if version != Some(1) {
            return Err(Error::Unsupported(format!(
                "encrypted key version {} is not supported by this borg version.",
                version.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
            )));
        }
        let algorithm = get("algorithm")
            .and_then(msgpack::as_raw)
            .unwrap_or_default();
        if algorithm == crate::argon2kdf::ALGORITHM.as_bytes() {
            return crate::argon2kdf::decrypt(key_type, &v, passphrase, tam_required_default);
        }
        if algorithm != b"sha256" {
            return Err(Error::Unsupported(format!(
                "encrypted key algorithm '{}' is not supported by this borg version.",
                String::from_utf8_lossy(algorithm)
            )));
        }
        let raw = |name: &str| {
            get(name)
                .and_then(msgpack::as_raw)
                .ok_or_else(|| Error::InvalidKey(format!("encrypted key lacks {name}")))
        };
        let iterations = get("iterations")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
            .filter(|i| (1..=MAX_ITERATIONS).contains(i))
            .ok_or_else(|| Error::InvalidKey("bad iterations".into()))?;
        let salt = raw("salt")?;
        let hash = raw("hash")?;
        let k = kdf(passphrase, salt, iterations);
        let mut data = Zeroizing::new(raw("data")?.to_vec());
        aes_ctr_zero_iv(&k, &mut data);
        let mut m = HmacSha256::new_from_slice(&k[..]).expect("any key length");
        m.update(&data);
        let computed = m.finalize().into_bytes();
        if !bool::from(computed.as_slice().ct_eq(hash)) {
            return Err(Error::PassphraseWrong);
        }
        Key::from_plain_blob(key_type, &data, tam_required_default)
    }

    /// The base64 text form (what a repokey stores in the config, and a key file's body
    /// without its header line and final newline).
    pub fn to_key_text(&self, passphrase: &Passphrase) -> String {
        blob_to_text(&self.to_encrypted_blob(passphrase))
    }

    /// Parse the base64 text form. Whitespace/newlines are ignored like Python's `a2b_base64`.
    pub fn from_key_text(
        key_type: KeyType,
        text: &str,
        passphrase: &Passphrase,
        tam_required_default: bool,
    ) -> Result<Key> {
        let cdata = text_to_blob(text)?;
        Key::from_encrypted_blob(key_type, &cdata, passphrase, tam_required_default)
    }

    /// Repokey form: the string for the repository config `key` entry (borg `RepoKey.save`).
    pub fn to_repokey_string(&self, passphrase: &Passphrase) -> String {
        self.to_key_text(passphrase)
    }

    /// Read a repokey from the repository config `key` entry (borg `RepoKey.load`).
    /// A blob without `tam_required` is treated as requiring TAMs; use
    /// [`Key::from_key_text`] with [`crate::paths::tam_required_default`] for borg's exact rule.
    pub fn from_repokey_string(
        key_type: KeyType,
        text: &str,
        passphrase: &Passphrase,
    ) -> Result<Key> {
        if text.trim().is_empty() {
            return Err(Error::InvalidKey(
                "No key entry found in the config of repository".into(),
            ));
        }
        Key::from_key_text(key_type, text, passphrase, true)
    }

    /// Complete key file contents: `BORG_KEY <repo id hex>\n<wrapped base64>\n`
    /// (borg `KeyfileKey.save`).
    pub fn to_keyfile_string(&self, passphrase: &Passphrase) -> String {
        keyfile_from_text(self.repository_id(), &self.to_key_text(passphrase))
    }

    /// Parse a key file; the repository ID in the header must match the key blob's.
    /// `tam_required` defaults to true like [`Key::from_repokey_string`].
    pub fn from_keyfile_str(key_type: KeyType, text: &str, passphrase: &Passphrase) -> Result<Key> {
        let (repo_id, body) = split_keyfile(text)?;
        let key = Key::from_key_text(key_type, body, passphrase, true)?;
        if key.repository_id() != &repo_id {
            return Err(Error::KeyfileMismatch {
                repository: hex::encode(key.repository_id()),
                path: "(key file header)".into(),
            });
        }
        Ok(key)
    }
}

/// base64 + 70-column wrapping of an encrypted key blob.
pub fn blob_to_text(cdata: &[u8]) -> String {
    wrap70(&base64::engine::general_purpose::STANDARD.encode(cdata))
}

/// Inverse of [`blob_to_text`], tolerant of whitespace.
pub fn text_to_blob(text: &str) -> Result<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| Error::InvalidKey(format!("key data is not valid base64: {e}")))
}

/// Key file text from the repo ID and the key text (adds header and final newline).
pub fn keyfile_from_text(repository_id: &[u8], key_text: &str) -> String {
    let mut out = format!("{FILE_ID} {}\n{key_text}", hex::encode(repository_id));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Split a key file into (repository ID from the header, base64 body).
pub fn split_keyfile(text: &str) -> Result<([u8; 32], &str)> {
    let (header, body) = text.split_once('\n').unwrap_or((text, ""));
    let hex_id = header
        .strip_prefix(FILE_ID)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| Error::InvalidKey("not a borg key file (no BORG_KEY header)".into()))?;
    let mut id = [0u8; 32];
    hex::decode_to_slice(hex_id.trim_end(), &mut id)
        .map_err(|_| Error::InvalidKey("bad repository id in key file header".into()))?;
    Ok((id, body))
}

fn zeroize_value(v: Value) {
    use zeroize::Zeroize;
    if let Value::Map(entries) = v {
        for (_, v) in entries {
            if let Value::Binary(mut b) = v {
                b.zeroize();
            } else if let Value::String(s) = v {
                let mut b = s.into_bytes();
                b.zeroize();
            }
        }
    }
}
