//! The manifest: the one object every borg operation reads first (borg 1.2 `helpers/manifest.py`;
//! `internals/data-structures.rst`, "The manifest").
//!
//! It lives under the all-zero object ID, is compressed with lz4 and wrapped in the key's
//! envelope like any object, and is a msgpack map:
//!
//! | key | value |
//! |---|---|
//! | `version` | 1 |
//! | `archives` | map name -> `{id: archive metadata object ID, time: ISO timestamp}` |
//! | `timestamp` | ISO timestamp (UTC, microseconds), strictly increasing on every write |
//! | `config` | map; `tam_required`, `feature_flags` |
//! | `item_keys` | sorted list of the item keys the repository's archives may use |
//! | `tam` | the manifest TAM (see `rborg_crypto::tam`) |

use std::collections::BTreeMap;

use chrono::{NaiveDateTime, Utc};
use rborg_compress::{CompressionSpec, MAX_DATA_SIZE};
use rborg_crypto::{msgpack, Key, NonceManager, RepoNonces, TamContext};
use rborg_repository::{ObjectId, Repository};
use rmpv::Value;

use crate::error::{Error, Result};

/// The object ID under which the manifest is stored.
pub const MANIFEST_ID: ObjectId = [0; 32];

/// borg's `ISO_FORMAT` for timestamps inside the manifest and archives.
pub const ISO_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";

/// The item keys borg 1.2 knows (`constants.ITEM_KEYS`); a new manifest lists all of them.
pub const ITEM_KEYS: &[&str] = &[
    "acl_access",
    "acl_default",
    "acl_extended",
    "acl_nfs4",
    "atime",
    "birthtime",
    "bsdflags",
    "chunks",
    "chunks_healthy",
    "ctime",
    "gid",
    "group",
    "hardlink_master",
    "mode",
    "mtime",
    "part",
    "path",
    "rdev",
    "size",
    "source",
    "uid",
    "user",
    "xattrs",
];

/// Repository features this implementation supports (borg 1.2's `SUPPORTED_REPO_FEATURES` is
/// empty: any mandatory feature refuses the operation).
const SUPPORTED_REPO_FEATURES: &[&str] = &[];

/// What an operation is about to do, for the manifest's `feature_flags` check
/// (borg's `Manifest.Operation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// List and extract archives.
    Read,
    /// Check and repair, and rarely used operations.
    Check,
    /// Add archives.
    Write,
    /// Delete archives (needs exact reference counts).
    Delete,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Check => "check",
            Operation::Write => "write",
            Operation::Delete => "delete",
        }
    }
}

/// One entry of the manifest's archive list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// ID of the archive metadata object.
    pub id: ObjectId,
    /// Creation time as borg writes it (ISO format, UTC, no zone suffix).
    pub time: String,
}

/// The decoded manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Archives by name.
    pub archives: BTreeMap<String, ArchiveEntry>,
    /// Timestamp of the last write, `None` for a manifest never written.
    pub timestamp: Option<String>,
    /// The `config` map, kept as msgpack so unknown entries survive a rewrite.
    pub config: Vec<(Value, Value)>,
    /// Item keys the repository's archives may use.
    pub item_keys: Vec<String>,
    /// Whether the loaded manifest carried a valid TAM.
    pub tam_verified: bool,
    /// The ID hash of the packed manifest (borg's `manifest.id`, used by the cache).
    pub id: ObjectId,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest::new()
    }
}

impl Manifest {
    /// An empty manifest, as `borg init` writes it.
    pub fn new() -> Manifest {
        Manifest {
            archives: BTreeMap::new(),
            timestamp: None,
            config: Vec::new(),
            item_keys: ITEM_KEYS.iter().map(|s| s.to_string()).collect(),
            tam_verified: false,
            id: [0; 32],
        }
    }

    /// Reads and decrypts the manifest of `repository` with `key`, verifying its TAM as borg
    /// does (`Manifest.load`), and refuses it when `operations` need a mandatory feature rborg
    /// lacks. `location` appears in the "TAM required" error.
    pub fn load(
        repository: &mut dyn Repository,
        key: &Key,
        operations: &[Operation],
        location: &str,
    ) -> Result<Manifest> {
        let cdata = read_manifest_object(repository)?;
        let manifest = Manifest::decode(key, &cdata, location)?;
        manifest.check_repository_compatibility(operations)?;
        Ok(manifest)
    }

    /// Decodes a manifest object's bytes (the envelope as stored in the repository).
    pub fn decode(key: &Key, cdata: &[u8], location: &str) -> Result<Manifest> {
        let compressed = key.decrypt(None, cdata)?;
        let data = rborg_compress::decompress(&compressed, None, MAX_DATA_SIZE)?;
        let verified = rborg_crypto::verify_manifest(key, &data, false, location)?;
        let map = verified.value;
        let version = msgpack::map_get(&map, "version").and_then(Value::as_u64);
        if !matches!(version, Some(1) | Some(2)) {
            return Err(Error::InvalidManifest("Invalid manifest version".into()));
        }
        let mut archives = BTreeMap::new();
        if let Some(list) = msgpack::map_get(&map, "archives").and_then(Value::as_map) {
            for (name, entry) in list {
                let name = String::from_utf8_lossy(msgpack::key_bytes(name)).into_owned();
                let id = msgpack::map_get(entry, "id")
                    .and_then(msgpack::as_raw)
                    .and_then(|b| <ObjectId>::try_from(b).ok())
                    .ok_or_else(|| {
                        Error::InvalidManifest(format!("archive {name:?} has no valid id"))
                    })?;
                let time = msgpack::map_get(entry, "time")
                    .and_then(msgpack::as_raw)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .ok_or_else(|| {
                        Error::InvalidManifest(format!("archive {name:?} has no time"))
                    })?;
                archives.insert(name, ArchiveEntry { id, time });
            }
        }
        let text = |v: &Value| msgpack::as_raw(v).map(|b| String::from_utf8_lossy(b).into_owned());
        let mut item_keys: Vec<String> = ITEM_KEYS.iter().map(|s| s.to_string()).collect();
        if let Some(list) = msgpack::map_get(&map, "item_keys").and_then(Value::as_array) {
            item_keys.extend(list.iter().filter_map(text));
        }
        item_keys.sort();
        item_keys.dedup();
        Ok(Manifest {
            archives,
            timestamp: msgpack::map_get(&map, "timestamp").and_then(text),
            config: msgpack::map_get(&map, "config")
                .and_then(Value::as_map)
                .cloned()
                .unwrap_or_default(),
            item_keys,
            tam_verified: verified.verified,
            id: key.id_hash(&data),
        })
    }

    /// Whether the manifest's config says TAMs are required.
    pub fn tam_required(&self) -> bool {
        self.config_get("tam_required")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    fn config_get(&self, name: &str) -> Option<&Value> {
        self.config
            .iter()
            .find(|(k, _)| msgpack::key_bytes(k) == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// borg's `check_repository_compatibility`: mandatory features listed in
    /// `config.feature_flags[operation]` must all be supported.
    pub fn check_repository_compatibility(&self, operations: &[Operation]) -> Result<()> {
        let Some(flags) = self.config_get("feature_flags") else {
            return Ok(());
        };
        for op in operations {
            let Some(requirements) = msgpack::map_get(flags, op.name()) else {
                continue;
            };
            let Some(mandatory) =
                msgpack::map_get(requirements, "mandatory").and_then(Value::as_array)
            else {
                continue;
            };
            let unsupported: Vec<String> = mandatory
                .iter()
                .filter_map(msgpack::as_raw)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .filter(|f| !SUPPORTED_REPO_FEATURES.contains(&f.as_str()))
                .collect();
            if !unsupported.is_empty() {
                return Err(Error::MandatoryFeatureUnsupported(unsupported));
            }
        }
        Ok(())
    }

    /// The next timestamp: now, but strictly after the previous one even if the clock went
    /// backwards (borg's `Manifest.write`).
    fn next_timestamp(&self) -> String {
        let now = Utc::now().naive_utc();
        let next = match self.timestamp.as_deref().and_then(parse_timestamp) {
            Some(prev) => std::cmp::max(prev + chrono::Duration::microseconds(1), now),
            None => now,
        };
        next.format(ISO_FORMAT).to_string()
    }

    /// The msgpack map borg hashes and stores, without the TAM (borg's `ManifestItem.as_dict`).
    fn to_value(&self) -> Value {
        let s = |v: &str| Value::from(v);
        let archives = self
            .archives
            .iter()
            .map(|(name, e)| {
                (
                    s(name),
                    Value::Map(vec![
                        (s("id"), Value::Binary(e.id.to_vec())),
                        (s("time"), s(&e.time)),
                    ]),
                )
            })
            .collect();
        let mut config = self.config.clone();
        config.sort_by(|(a, _), (b, _)| msgpack::key_bytes(a).cmp(msgpack::key_bytes(b)));
        Value::Map(vec![
            (s("version"), Value::from(1)),
            (s("archives"), Value::Map(archives)),
            (s("timestamp"), s(self.timestamp.as_deref().unwrap_or(""))),
            (s("config"), Value::Map(config)),
            (
                s("item_keys"),
                Value::Array(self.item_keys.iter().map(|k| s(k)).collect()),
            ),
        ])
    }

    /// Writes the manifest into `repository` (not committed): sets `tam_required` when the key
    /// requires TAMs, advances the timestamp, packs and authenticates, compresses with lz4 and
    /// encrypts with a fresh nonce (borg's `Manifest.write`).
    pub fn write(
        &mut self,
        repository: &mut dyn Repository,
        key: &Key,
        nonce_file: std::path::PathBuf,
    ) -> Result<()> {
        if key.tam_required() && !self.tam_required() {
            self.config
                .push((Value::from("tam_required"), Value::Boolean(true)));
        }
        self.timestamp = Some(self.next_timestamp());
        let data =
            rborg_crypto::pack_and_authenticate(key, &self.to_value(), TamContext::Manifest)?;
        self.tam_verified = true;
        self.id = key.id_hash(&data);
        put_metadata_object(repository, key, &MANIFEST_ID, &data, nonce_file)
    }
}

/// Stores a metadata object (the manifest, an archive's metadata) as borg does: lz4-compressed
/// and encrypted with a fresh nonce reserved after the current manifest's (borg's
/// `key.encrypt` with the default compressor), then `put` (not committed).
pub fn put_metadata_object(
    repository: &mut dyn Repository,
    key: &Key,
    id: &ObjectId,
    plaintext: &[u8],
    nonce_file: std::path::PathBuf,
) -> Result<()> {
    let compressed = CompressionSpec::Lz4.compressor().compress(plaintext);
    let manifest_nonce = match repository.get(&MANIFEST_ID) {
        Ok(old) => key.nonce_after_manifest(&old).unwrap_or(0),
        Err(rborg_repository::Error::ObjectNotFound { .. }) => 0,
        Err(e) => return Err(e.into()),
    };
    let envelope = {
        let mut nonces = NonceManager::new(
            RepositoryNonces(&mut *repository),
            nonce_file,
            manifest_nonce,
        );
        key.encrypt_next(&compressed, &mut nonces)?
    };
    repository.put(id, &envelope)?;
    Ok(())
}

/// Reads the raw manifest object, mapping "not found" to borg's `NoManifestError`.
pub fn read_manifest_object(repository: &mut dyn Repository) -> Result<Vec<u8>> {
    match repository.get(&MANIFEST_ID) {
        Ok(data) => Ok(data),
        Err(rborg_repository::Error::ObjectNotFound { .. }) => Err(Error::NoManifest),
        Err(e) => Err(e.into()),
    }
}

/// Parses a timestamp in borg's ISO format (with or without fractional seconds).
pub fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok()
}

/// Lets the key's nonce manager reserve nonce space in any [`Repository`].
pub struct RepositoryNonces<'a>(pub &'a mut dyn Repository);

impl RepoNonces for RepositoryNonces<'_> {
    fn get_free_nonce(&mut self) -> rborg_crypto::Result<Option<u64>> {
        self.0
            .get_free_nonce()
            .map_err(|e| rborg_crypto::Error::Nonce(e.to_string()))
    }

    fn commit_nonce_reservation(
        &mut self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> rborg_crypto::Result<()> {
        self.0
            .commit_nonce_reservation(next_unreserved, start_nonce)
            .map_err(|e| rborg_crypto::Error::Nonce(e.to_string()))
    }
}
