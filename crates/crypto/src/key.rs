//! Key types, key material, chunk IDs and the chunk envelope (borg 1.2.4
//! `borg/crypto/key.py`, `borg/crypto/low_level.pyx`; docs: `internals/security.rst`
//! "Encryption" and `internals/data-structures.rst` "Encryption").
//!
//! Envelope layouts, by the first ("type") byte:
//!
//! * plaintext (`0x02`) and authenticated (`0x07`, `0x06`): `TYPE || payload`. The payload is
//!   protected only through the chunk ID (a keyed MAC in the authenticated modes), which the
//!   caller checks with [`Key::assert_id`] after decompression.
//! * encrypted (`0x00`, `0x03`, `0x04`, `0x05`; `0x01` legacy passphrase is read as repokey):
//!   `TYPE || MAC(32) || IV(8) || AES-256-CTR(payload)`. The 16-byte CTR IV is 8 zero bytes
//!   followed by the stored 8-byte big-endian nonce. The MAC covers `IV(8) || ciphertext`; the
//!   type byte is *not* authenticated (attic legacy, `aad_offset=1`). MAC is HMAC-SHA256 keyed
//!   with `enc_hmac_key` (32 bytes) or, for the BLAKE2b modes, unkeyed BLAKE2b-256 over
//!   `enc_hmac_key(128) || IV || ciphertext` (borg's "keyed by prefix" construction, the
//!   128-byte key being 64 random bytes + 64 zero bytes, i.e. one full BLAKE2b block).

use aes::cipher::{KeyIvInit, StreamCipher};
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type HmacSha256 = Hmac<Sha256>;
type Blake2b256 = Blake2b<U32>;

/// Length of a chunk ID / MAC.
pub const ID_LEN: usize = 32;
/// Bytes an encrypted envelope adds to the payload: type + MAC + stored nonce.
pub const PAYLOAD_OVERHEAD: usize = 1 + 32 + 8;
/// AES block size; nonces count blocks.
pub const AES_BLOCK: u64 = 16;

/// Number of AES blocks needed for `len` bytes (borg's `num_cipher_blocks`).
pub fn num_cipher_blocks(len: usize) -> u64 {
    (len as u64).div_ceil(AES_BLOCK)
}

/// One of borg 1.2's repository encryption modes, identified by the envelope type byte.
///
/// borg's `AVAILABLE_KEY_TYPES`; the legacy `passphrase` type `0x01` is not creatable and is
/// opened as [`KeyType::Repokey`] (borg's `identify_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `--encryption=none`: no encryption, SHA-256 IDs (`PlaintextKey`, 0x02).
    Plaintext,
    /// `authenticated`: HMAC-SHA256 IDs, no encryption (`AuthenticatedKey`, 0x07).
    Authenticated,
    /// `authenticated-blake2`: BLAKE2b IDs, no encryption (`Blake2AuthenticatedKey`, 0x06).
    Blake2Authenticated,
    /// `repokey`: AES-CTR + HMAC-SHA256, key in repo config (`RepoKey`, 0x03).
    Repokey,
    /// `keyfile`: AES-CTR + HMAC-SHA256, key in a local file (`KeyfileKey`, 0x00).
    Keyfile,
    /// `repokey-blake2`: AES-CTR + BLAKE2b MAC/IDs, key in repo config (`Blake2RepoKey`, 0x05).
    Blake2Repokey,
    /// `keyfile-blake2`: AES-CTR + BLAKE2b MAC/IDs, key file (`Blake2KeyfileKey`, 0x04).
    Blake2Keyfile,
}

/// Where a mode keeps its key blob (borg's `KeyBlobStorage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStorage {
    /// No key blob (plaintext).
    None,
    /// A `BORG_KEY` file in the keys directory.
    Keyfile,
    /// The `key` entry of the repository config.
    Repository,
}

impl KeyType {
    /// All seven modes, in borg's `--encryption` help order.
    pub const ALL: [KeyType; 7] = [
        KeyType::Plaintext,
        KeyType::Authenticated,
        KeyType::Blake2Authenticated,
        KeyType::Repokey,
        KeyType::Keyfile,
        KeyType::Blake2Repokey,
        KeyType::Blake2Keyfile,
    ];

    /// The envelope type byte (`TYPE` in key.py).
    pub fn type_byte(self) -> u8 {
        match self {
            KeyType::Keyfile => 0x00,
            KeyType::Plaintext => 0x02,
            KeyType::Repokey => 0x03,
            KeyType::Blake2Keyfile => 0x04,
            KeyType::Blake2Repokey => 0x05,
            KeyType::Blake2Authenticated => 0x06,
            KeyType::Authenticated => 0x07,
        }
    }

    /// Mode for an envelope type byte; `0x01` (legacy passphrase) maps to repokey like borg.
    pub fn from_type_byte(b: u8) -> Result<KeyType> {
        Ok(match b {
            0x00 => KeyType::Keyfile,
            0x01 | 0x03 => KeyType::Repokey,
            0x02 => KeyType::Plaintext,
            0x04 => KeyType::Blake2Keyfile,
            0x05 => KeyType::Blake2Repokey,
            0x06 => KeyType::Blake2Authenticated,
            0x07 => KeyType::Authenticated,
            other => return Err(Error::UnsupportedPayload(other)),
        })
    }

    /// Detect a repository's mode from its (encrypted) manifest object (borg's `identify_key`).
    pub fn from_manifest(manifest_data: &[u8]) -> Result<KeyType> {
        match manifest_data.first() {
            Some(b) => KeyType::from_type_byte(*b),
            None => Err(Error::Integrity("Manifest: empty envelope".into())),
        }
    }

    /// The `--encryption` argument (`ARG_NAME`).
    pub fn arg_name(self) -> &'static str {
        match self {
            KeyType::Plaintext => "none",
            KeyType::Authenticated => "authenticated",
            KeyType::Blake2Authenticated => "authenticated-blake2",
            KeyType::Repokey => "repokey",
            KeyType::Keyfile => "keyfile",
            KeyType::Blake2Repokey => "repokey-blake2",
            KeyType::Blake2Keyfile => "keyfile-blake2",
        }
    }

    /// Parse an `--encryption` argument.
    pub fn from_arg_name(name: &str) -> Option<KeyType> {
        KeyType::ALL.into_iter().find(|k| k.arg_name() == name)
    }

    /// Human readable name (`NAME`, shown by `borg info`).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Plaintext => "plaintext",
            KeyType::Authenticated => "authenticated",
            KeyType::Blake2Authenticated => "authenticated BLAKE2b",
            KeyType::Repokey => "repokey",
            KeyType::Keyfile => "key file",
            KeyType::Blake2Repokey => "repokey BLAKE2b",
            KeyType::Blake2Keyfile => "key file BLAKE2b",
        }
    }

    /// Where the key blob lives.
    pub fn storage(self) -> KeyStorage {
        match self {
            KeyType::Plaintext => KeyStorage::None,
            KeyType::Keyfile | KeyType::Blake2Keyfile => KeyStorage::Keyfile,
            _ => KeyStorage::Repository,
        }
    }

    /// BLAKE2b for IDs (and MAC, if encrypted).
    pub fn is_blake2(self) -> bool {
        matches!(
            self,
            KeyType::Blake2Authenticated | KeyType::Blake2Repokey | KeyType::Blake2Keyfile
        )
    }

    /// Whether chunks are AES-CTR encrypted.
    pub fn is_encrypted(self) -> bool {
        matches!(
            self,
            KeyType::Repokey | KeyType::Keyfile | KeyType::Blake2Repokey | KeyType::Blake2Keyfile
        )
    }

    /// Whether an envelope with type byte `b` is acceptable for this mode (repokey also
    /// accepts the legacy passphrase byte `0x01`, as borg does).
    pub fn accepts_type_byte(self, b: u8) -> bool {
        b == self.type_byte() || (b == 0x01 && self == KeyType::Repokey)
    }

    /// Length of `enc_hmac_key` / `id_key` in this mode's key blob.
    pub fn mac_key_len(self) -> usize {
        if self.is_blake2() {
            128
        } else {
            32
        }
    }
}

/// A repository key: the secret material of borg's key blob plus the mode.
///
/// All secret fields are zeroized on drop. Plaintext keys carry empty material.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key {
    #[zeroize(skip)]
    key_type: KeyType,
    repository_id: [u8; 32],
    enc_key: [u8; 32],
    enc_hmac_key: Vec<u8>,
    id_key: Vec<u8>,
    chunk_seed: i32,
    tam_required: bool,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("key_type", &self.key_type)
            .field("repository_id", &hex::encode(self.repository_id))
            .field("chunk_seed", &self.chunk_seed)
            .field("tam_required", &self.tam_required)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A fresh random key for a new repository (borg's `KeyfileKeyBase.create` /
    /// `init_from_random_data`): 100 random bytes split into enc_key, enc_hmac_key, id_key and
    /// a signed 32-bit chunk seed; the BLAKE2b modes replace the two MAC keys by 64 random
    /// bytes + 64 zero bytes. New keys have `tam_required = true` (plaintext: false).
    pub fn create(key_type: KeyType, repository_id: [u8; 32]) -> Key {
        if key_type == KeyType::Plaintext {
            return Key::plaintext(repository_id);
        }
        let mut rng = rand::rngs::OsRng;
        let mut data = [0u8; 100];
        rng.fill_bytes(&mut data);
        let mut enc_key = [0u8; 32];
        enc_key.copy_from_slice(&data[0..32]);
        let (enc_hmac_key, id_key) = if key_type.is_blake2() {
            let mut a = vec![0u8; 128];
            let mut b = vec![0u8; 128];
            rng.fill_bytes(&mut a[..64]);
            rng.fill_bytes(&mut b[..64]);
            (a, b)
        } else {
            (data[32..64].to_vec(), data[64..96].to_vec())
        };
        let chunk_seed = i32::from_be_bytes([data[96], data[97], data[98], data[99]]);
        data.zeroize();
        Key {
            key_type,
            repository_id,
            enc_key,
            enc_hmac_key,
            id_key,
            chunk_seed,
            tam_required: true,
        }
    }

    /// The key of an unencrypted (`none`) repository.
    pub fn plaintext(repository_id: [u8; 32]) -> Key {
        Key {
            key_type: KeyType::Plaintext,
            repository_id,
            enc_key: [0; 32],
            enc_hmac_key: Vec::new(),
            id_key: Vec::new(),
            chunk_seed: 0,
            tam_required: false,
        }
    }

    /// Build a key from known material (e.g. decoded from a key blob). Checks key lengths
    /// against what borg's cipher suites accept for `key_type`.
    pub fn from_material(
        key_type: KeyType,
        repository_id: [u8; 32],
        enc_key: [u8; 32],
        enc_hmac_key: Vec<u8>,
        id_key: Vec<u8>,
        chunk_seed: i32,
        tam_required: bool,
    ) -> Result<Key> {
        if key_type == KeyType::Plaintext {
            return Ok(Key::plaintext(repository_id));
        }
        let want = key_type.mac_key_len();
        if enc_hmac_key.len() != want {
            return Err(Error::InvalidKey(format!(
                "enc_hmac_key has {} bytes, {} needs {want}",
                enc_hmac_key.len(),
                key_type.arg_name()
            )));
        }
        // borg's ID functions accept any id_key length; BLAKE2b keys are 128 bytes, HMAC 32.
        Ok(Key {
            key_type,
            repository_id,
            enc_key,
            enc_hmac_key,
            id_key,
            chunk_seed,
            tam_required,
        })
    }

    /// The mode.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
    /// Repository ID stored in the key blob.
    pub fn repository_id(&self) -> &[u8; 32] {
        &self.repository_id
    }
    /// AES-256 key.
    pub fn enc_key(&self) -> &[u8; 32] {
        &self.enc_key
    }
    /// Chunk MAC key (32 bytes HMAC, 128 bytes BLAKE2b).
    pub fn enc_hmac_key(&self) -> &[u8] {
        &self.enc_hmac_key
    }
    /// Chunk-ID key (32 bytes HMAC, 128 bytes BLAKE2b).
    pub fn id_key(&self) -> &[u8] {
        &self.id_key
    }
    /// Seed for the buzhash chunker (XORed into its table), signed like borg stores it.
    pub fn chunk_seed(&self) -> i32 {
        self.chunk_seed
    }
    /// Whether manifests (and archives) must carry a valid TAM.
    pub fn tam_required(&self) -> bool {
        self.tam_required
    }
    /// Change the TAM requirement (e.g. from the security dir's `tam_required` file for key
    /// blobs that lack the field, or `borg upgrade --tam`).
    pub fn set_tam_required(&mut self, required: bool) {
        self.tam_required = required;
    }

    /// Chunk ID of plaintext `data` (`id_hash` in key.py): SHA-256 (none), HMAC-SHA256 with
    /// `id_key`, or BLAKE2b-256 over `id_key(128) || data` (borg's `blake2b_256`).
    pub fn id_hash(&self, data: &[u8]) -> [u8; 32] {
        match self.key_type {
            KeyType::Plaintext => Sha256::digest(data).into(),
            kt if kt.is_blake2() => {
                let mut h = Blake2b256::new();
                h.update(&self.id_key);
                h.update(data);
                h.finalize().into()
            }
            _ => {
                let mut m = HmacSha256::new_from_slice(&self.id_key)
                    .expect("HMAC accepts keys of any length");
                m.update(data);
                m.finalize().into_bytes().into()
            }
        }
    }

    /// Verify that `data` (decompressed plaintext) hashes to `id` (borg's `assert_id`),
    /// in constant time.
    pub fn assert_id(&self, id: &[u8; 32], data: &[u8]) -> Result<()> {
        id_verdict(id, &self.id_hash(data))
    }

    /// [`Key::id_hash`] of several plaintexts at once, in their order. For the BLAKE2b keys
    /// chunks of similar sizes are hashed side by side in SIMD lanes ([`blake2b_256_many`]):
    /// up to 1.9x the throughput of hashing them one after another on AVX2 (docs/crypto.md).
    /// Readers that hold a batch of chunks (extract's finishing stage) check IDs through this.
    pub fn id_hash_many(&self, datas: &[&[u8]]) -> Vec<[u8; 32]> {
        if self.key_type.is_blake2() {
            blake2b_256_many(&self.id_key, datas)
        } else {
            datas.iter().map(|d| self.id_hash(d)).collect()
        }
    }

    /// [`Key::assert_id`] of several chunks at once ([`Key::id_hash_many`]): one verdict
    /// per `(id, plaintext)` pair, in their order.
    pub fn assert_id_many(&self, chunks: &[(&[u8; 32], &[u8])]) -> Vec<Result<()>> {
        let datas: Vec<&[u8]> = chunks.iter().map(|(_, data)| *data).collect();
        let computed = self.id_hash_many(&datas);
        chunks
            .iter()
            .zip(computed)
            .map(|((id, _), computed)| id_verdict(id, &computed))
            .collect()
    }

    /// Wrap an (already compressed) payload in this mode's envelope.
    ///
    /// `nonce` is the AES-CTR counter start for this envelope; it must come from a
    /// [`crate::nonces::NonceManager`] so it is never reused (use [`Key::encrypt_next`]).
    /// It is ignored by the unencrypted modes.
    pub fn encrypt(&self, payload: &[u8], nonce: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.envelope_header_len() + payload.len());
        out.resize(self.envelope_header_len(), 0);
        out.extend_from_slice(payload);
        self.seal_in_place(&mut out, nonce);
        out
    }

    /// How many bytes an envelope of this key puts before the payload: the type byte, and for
    /// encrypting keys the MAC and the nonce (`internals/security.rst`, "Encryption").
    pub fn envelope_header_len(&self) -> usize {
        if self.key_type.is_encrypted() {
            PAYLOAD_OVERHEAD
        } else {
            1
        }
    }

    /// Turns `buf` into an envelope in place: `buf` holds [`Key::envelope_header_len`]
    /// bytes of room followed by the payload; the header is filled in and the payload
    /// encrypted where it lies. What [`Key::encrypt`] returns for the same payload and nonce,
    /// without a second buffer: the create pipeline compresses each chunk straight into its
    /// envelope. A `buf` shorter than the header is left alone (it cannot hold one).
    pub fn seal_in_place(&self, buf: &mut [u8], nonce: u64) {
        if buf.len() < self.envelope_header_len() {
            return;
        }
        buf[0] = self.key_type.type_byte();
        if !self.key_type.is_encrypted() {
            return;
        }
        buf[33..PAYLOAD_OVERHEAD].copy_from_slice(&nonce.to_be_bytes());
        let mut cipher = Aes256Ctr::new(&self.enc_key.into(), &iv_for(nonce).into());
        cipher.apply_keystream(&mut buf[PAYLOAD_OVERHEAD..]);
        let mac = self.mac(&buf[33..]);
        buf[1..33].copy_from_slice(&mac);
    }

    /// Encrypt with the next nonce of `nonces` (reserving nonce space as needed), like borg's
    /// `AESKeyBase.encrypt`.
    pub fn encrypt_next<R: crate::nonces::RepoNonces>(
        &self,
        payload: &[u8],
        nonces: &mut crate::nonces::NonceManager<R>,
    ) -> Result<Vec<u8>> {
        if !self.key_type.is_encrypted() {
            return Ok(self.encrypt(payload, 0));
        }
        let nonce = nonces.next_nonce(num_cipher_blocks(payload.len()))?;
        Ok(self.encrypt(payload, nonce))
    }

    /// [`Key::seal_in_place`] with the next nonce of `nonces` (as [`Key::encrypt_next`]).
    pub fn seal_next_in_place<R: crate::nonces::RepoNonces>(
        &self,
        buf: &mut [u8],
        nonces: &mut crate::nonces::NonceManager<R>,
    ) -> Result<()> {
        let payload = buf.len().saturating_sub(self.envelope_header_len());
        let nonce = if self.key_type.is_encrypted() {
            nonces.next_nonce(num_cipher_blocks(payload))?
        } else {
            0
        };
        self.seal_in_place(buf, nonce);
        Ok(())
    }

    /// Check and open an envelope, returning the (still compressed) payload.
    ///
    /// `id` is only used in error messages (borg's `Chunk <id>: ...`); after decompression the
    /// caller must check the ID with [`Key::assert_id`]. Wrong type byte, short data or a MAC
    /// mismatch give [`Error::Integrity`]; nothing here panics on hostile input.
    pub fn decrypt(&self, id: Option<&[u8; 32]>, data: &[u8]) -> Result<Vec<u8>> {
        if !self.check_envelope(id, data)? {
            return Ok(data[1..].to_vec());
        }
        let mut out = data[PAYLOAD_OVERHEAD..].to_vec();
        self.payload_cipher(data).apply_keystream(&mut out);
        Ok(out)
    }

    /// [`Key::decrypt`] without a copy: checks the envelope in `data` and decrypts its payload
    /// where it lies, returning where the payload is (readers that own the stored object, such
    /// as extract's content reader, spare an allocation and a copy per chunk).
    pub fn decrypt_in_place(
        &self,
        id: Option<&[u8; 32]>,
        data: &mut [u8],
    ) -> Result<std::ops::Range<usize>> {
        if !self.check_envelope(id, data)? {
            return Ok(1..data.len());
        }
        let mut cipher = self.payload_cipher(data);
        cipher.apply_keystream(&mut data[PAYLOAD_OVERHEAD..]);
        Ok(PAYLOAD_OVERHEAD..data.len())
    }

    /// [`Key::decrypt_in_place`] of several envelopes at once, one verdict per envelope in
    /// their order: the BLAKE2b MACs of a batch are computed side by side in SIMD lanes
    /// ([`blake2b_256_many`]). `ids` name the envelopes in error messages, as in
    /// [`Key::decrypt`]. An envelope that fails leaves the others alone.
    pub fn decrypt_in_place_many(
        &self,
        ids: &[&[u8; 32]],
        envelopes: &mut [&mut [u8]],
    ) -> Vec<Result<std::ops::Range<usize>>> {
        if !self.key_type.is_blake2() || !self.key_type.is_encrypted() {
            return ids
                .iter()
                .zip(envelopes.iter_mut())
                .map(|(id, data)| self.decrypt_in_place(Some(id), data))
                .collect();
        }
        let headers: Vec<Result<bool>> = ids
            .iter()
            .zip(envelopes.iter())
            .map(|(id, data)| self.check_envelope_header(Some(id), data))
            .collect();
        let macs = {
            let macced: Vec<&[u8]> = envelopes
                .iter()
                .zip(&headers)
                .filter(|(_, header)| header.is_ok())
                .map(|(data, _)| &data[33..])
                .collect();
            blake2b_256_many(&self.enc_hmac_key, &macced)
        };
        let mut macs = macs.into_iter();
        ids.iter()
            .zip(envelopes.iter_mut())
            .zip(headers)
            .map(|((id, data), header)| {
                header?;
                let mac = macs.next().expect("one MAC per checked header");
                mac_verdict(Some(id), &mac, data)?;
                let mut cipher = self.payload_cipher(data);
                cipher.apply_keystream(&mut data[PAYLOAD_OVERHEAD..]);
                Ok(PAYLOAD_OVERHEAD..data.len())
            })
            .collect()
    }

    /// The envelope checks of [`Key::decrypt`]: type byte, length, MAC. Whether the payload
    /// is encrypted (else it follows the type byte as it is).
    fn check_envelope(&self, id: Option<&[u8; 32]>, data: &[u8]) -> Result<bool> {
        if !self.check_envelope_header(id, data)? {
            return Ok(false);
        }
        mac_verdict(id, &self.mac(&data[33..]), data)?;
        Ok(true)
    }

    /// The checks of [`Key::check_envelope`] before the MAC: type byte and length. Whether
    /// the payload is encrypted (then `data` is long enough to hold a MAC and a nonce).
    fn check_envelope_header(&self, id: Option<&[u8; 32]>, data: &[u8]) -> Result<bool> {
        let id_str = || id.map(hex::encode).unwrap_or_else(|| "(unknown)".into());
        let Some(&tb) = data.first() else {
            return Err(Error::Integrity(format!(
                "Chunk {}: Invalid encryption envelope",
                id_str()
            )));
        };
        if !self.key_type.accepts_type_byte(tb) {
            let what = match self.key_type {
                KeyType::Authenticated | KeyType::Blake2Authenticated => "Invalid envelope",
                _ => "Invalid encryption envelope",
            };
            return Err(Error::Integrity(format!("Chunk {}: {what}", id_str())));
        }
        if !self.key_type.is_encrypted() {
            return Ok(false);
        }
        if data.len() < PAYLOAD_OVERHEAD {
            return Err(Error::Integrity(format!(
                "Chunk {}: Could not decrypt [envelope too short]",
                id_str()
            )));
        }
        Ok(true)
    }

    /// The AES-CTR cipher of a checked encrypted envelope, at the nonce stored in it.
    fn payload_cipher(&self, data: &[u8]) -> Aes256Ctr {
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&data[33..41]);
        Aes256Ctr::new(
            &self.enc_key.into(),
            &iv_for(u64::from_be_bytes(nonce)).into(),
        )
    }

    /// The nonce stored in an encrypted envelope (borg's `extract_iv`).
    pub fn extract_nonce(data: &[u8]) -> Option<u64> {
        let b: [u8; 8] = data.get(33..41)?.try_into().ok()?;
        Some(u64::from_be_bytes(b))
    }

    /// First nonce that is safe after the manifest envelope `manifest_data` (borg's
    /// `init_ciphers`: stored IV + `num_cipher_blocks(len(manifest_data))`, a safe upper bound).
    pub fn nonce_after_manifest(&self, manifest_data: &[u8]) -> Result<u64> {
        let tb = manifest_data.first().copied();
        if !tb.is_some_and(|b| self.key_type.accepts_type_byte(b)) {
            return Err(Error::Integrity(
                "Manifest: Invalid encryption envelope".into(),
            ));
        }
        if !self.key_type.is_encrypted() {
            return Ok(0);
        }
        let iv = Key::extract_nonce(manifest_data)
            .ok_or_else(|| Error::Integrity("Manifest: Invalid encryption envelope".into()))?;
        iv.checked_add(num_cipher_blocks(manifest_data.len()))
            .ok_or_else(|| Error::Nonce("nonce space exhausted".into()))
    }

    fn mac(&self, iv_and_ciphertext: &[u8]) -> [u8; 32] {
        if self.key_type.is_blake2() {
            let mut h = Blake2b256::new();
            h.update(&self.enc_hmac_key);
            h.update(iv_and_ciphertext);
            h.finalize().into()
        } else {
            let mut m = HmacSha256::new_from_slice(&self.enc_hmac_key)
                .expect("HMAC accepts keys of any length");
            m.update(iv_and_ciphertext);
            m.finalize().into_bytes().into()
        }
    }

    /// IKM for the TAM key derivation: `id_key || enc_key || enc_hmac_key` (borg `_tam_key`).
    pub(crate) fn tam_ikm(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut v = Vec::with_capacity(self.id_key.len() + 32 + self.enc_hmac_key.len());
        v.extend_from_slice(&self.id_key);
        v.extend_from_slice(&self.enc_key);
        v.extend_from_slice(&self.enc_hmac_key);
        zeroize::Zeroizing::new(v)
    }
}

/// borg's `assert_id` verdict on a computed ID, compared in constant time.
fn id_verdict(id: &[u8; 32], computed: &[u8; 32]) -> Result<()> {
    if bool::from(computed.ct_eq(id)) {
        Ok(())
    } else {
        Err(Error::Integrity(format!(
            "Chunk {}: id verification failed",
            hex::encode(id)
        )))
    }
}

/// Whether the MAC stored in an encrypted envelope (`data`, at least
/// [`PAYLOAD_OVERHEAD`] long) is `mac`, compared in constant time.
fn mac_verdict(id: Option<&[u8; 32]>, mac: &[u8; 32], data: &[u8]) -> Result<()> {
    if bool::from(mac.ct_eq(&data[1..33])) {
        Ok(())
    } else {
        Err(Error::Integrity(format!(
            "Chunk {}: Could not decrypt [MAC Authentication failed]",
            id.map(hex::encode).unwrap_or_else(|| "(unknown)".into())
        )))
    }
}

/// borg's `blake2b_256(key, data)` (BLAKE2b-256 of `key || data`, the 128-byte key one full
/// block) of several inputs at once: `blake2b_simd`'s `update_many` hashes four inputs side
/// by side in AVX2 lanes, refilling a lane when its input ends, longest inputs first. That
/// pays only while all four lanes are busy: one or two inputs at a time, `blake2b_simd` is
/// slower than the `blake2` crate here (0.85 and about 1.5 GB/s against 1.5 GB/s; four lanes
/// 2.8 GB/s; docs/crypto.md). So an input longer than a quarter of what is left with it
/// (which would finish alone in its lane) is hashed on its own by the `blake2` crate, as is
/// everything when fewer than four inputs are left or the machine lacks AVX2.
fn blake2b_256_many(key: &[u8], inputs: &[&[u8]]) -> Vec<[u8; 32]> {
    const LANES: usize = 4;
    let one = |data: &[u8]| -> [u8; 32] {
        let mut h = Blake2b256::new();
        h.update(key);
        h.update(data);
        h.finalize().into()
    };
    let mut out = vec![[0u8; 32]; inputs.len()];
    let mut longest_first: Vec<usize> = (0..inputs.len()).collect();
    longest_first.sort_unstable_by_key(|&i| std::cmp::Reverse(inputs[i].len()));
    let mut rest: usize = inputs.iter().map(|d| d.len()).sum();
    let mut lanes_from = 0;
    while lanes_from < longest_first.len() {
        let longest = inputs[longest_first[lanes_from]].len();
        if longest_first.len() - lanes_from >= LANES && longest * LANES <= rest {
            break;
        }
        out[longest_first[lanes_from]] = one(inputs[longest_first[lanes_from]]);
        rest -= longest;
        lanes_from += 1;
    }
    let lanes = &longest_first[lanes_from..];
    if lanes.is_empty() {
        return out;
    }
    if blake2b_simd::many::degree() < LANES {
        for &i in lanes {
            out[i] = one(inputs[i]);
        }
        return out;
    }
    let mut keyed = blake2b_simd::Params::new().hash_length(32).to_state();
    keyed.update(key);
    let mut states = vec![keyed; lanes.len()];
    blake2b_simd::many::update_many(states.iter_mut().zip(lanes.iter().map(|&i| inputs[i])));
    for (state, &i) in states.iter().zip(lanes) {
        out[i].copy_from_slice(state.finalize().as_bytes());
    }
    out
}

fn iv_for(nonce: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[8..].copy_from_slice(&nonce.to_be_bytes());
    iv
}
