//! borg 1.2 compatible cryptography for rborg.
//!
//! Implements, byte-compatible with borg 1.2.4, the seven repository modes (`none`,
//! `authenticated`, `authenticated-blake2`, `repokey`, `keyfile`, `repokey-blake2`,
//! `keyfile-blake2`): chunk IDs, the chunk envelope (type byte, MAC, 8-byte nonce,
//! AES-256-CTR ciphertext), passphrase-protected key blobs / key files / repokeys, manifest
//! and archive TAMs, AES-CTR nonce reservation and key export/import.
//! The envelope carries the *compressed* payload; compression lives in `rborg-compress`.
//!
//! ```
//! use rborg_crypto::{Key, KeyType, Passphrase};
//!
//! let key = Key::create(KeyType::Repokey, [7u8; 32]);
//! let id = key.id_hash(b"chunk data");
//! let envelope = key.encrypt(b"\x00\x00chunk data", 0); // 'none' compressor header + data
//! assert_eq!(envelope[0], KeyType::Repokey.type_byte());
//! assert_eq!(key.decrypt(Some(&id), &envelope).unwrap(), b"\x00\x00chunk data");
//! key.assert_id(&id, b"chunk data").unwrap();
//!
//! // passphrase-protected repokey text as stored in the repository config
//! let pp = Passphrase::new("correct horse");
//! let text = key.to_repokey_string(&pp);
//! let again = Key::from_repokey_string(KeyType::Repokey, &text, &pp).unwrap();
//! assert_eq!(again.id_hash(b"x"), key.id_hash(b"x"));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod argon2kdf;
pub mod error;
pub mod key;
pub mod keyblob;
pub mod keymanager;
pub mod msgpack;
pub mod nonces;
pub mod passphrase;
pub mod paths;
pub mod tam;

pub use error::{Error, Result};
pub use key::{num_cipher_blocks, Key, KeyStorage, KeyType, ID_LEN, PAYLOAD_OVERHEAD};
pub use nonces::{NoRepoNonces, NonceManager, RepoNonces, NONCE_SPACE_RESERVATION};
pub use passphrase::Passphrase;
pub use tam::{pack_and_authenticate, verify_archive, verify_manifest, TamContext};
