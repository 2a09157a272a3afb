//! A borg 1.2 compatible repository: a transactional key/value store of encrypted objects kept
//! in a log of segment files, byte-compatible with what borg 1.2.4 writes and reads (see
//! borg's `internals/data-structures.rst`, sections "Repository", "Segments", "Compaction",
//! "Index, hints and integrity", "Storage quotas" and "Config file", and `borg/repository.py`).
//!
//! * [`segment`]: the segment files (borg's `LoggedIO`).
//! * [`hashindex`], [`hints`], [`index_files`]: the per-transaction `index.N`, `hints.N`,
//!   `integrity.N` files.
//! * [`config`], [`lock`]: the repository `config` file and the `lock.exclusive`/`lock.roster`
//!   locking protocol.
//! * [`Repository`]: the operations `borg serve` exposes, implemented locally by
//!   [`LocalRepository`].
//!
//! ```
//! use rborg_repository::{LocalRepository, OpenOptions, Repository};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("repo");
//! let mut repo = LocalRepository::create(&path, &OpenOptions::exclusive()).unwrap();
//! let id = [1u8; 32];
//! repo.put(&id, b"some encrypted object").unwrap();
//! repo.commit(true, 0.1).unwrap();
//! assert_eq!(repo.get(&id).unwrap(), b"some encrypted object");
//! assert_eq!(repo.len().unwrap(), 1);
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod hashindex;
pub mod hints;
pub mod index_files;
pub mod local;
pub mod location;
pub mod lock;
pub mod segment;

mod check;
mod compact;

pub use error::Error;
pub use hashindex::{IdHasher, IdMap, IdSet, ObjectId};
pub use local::{CheckReport, LocalRepository, OpenOptions};

/// Result type of repository operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Default compaction threshold: segments with more than 10% freeable space are compacted
/// (`borg compact --threshold 10`).
pub const DEFAULT_COMPACT_THRESHOLD: f64 = 0.1;

/// The operations of a borg repository as `borg serve` exposes them (`RepositoryServer.rpc_methods`
/// in `borg/remote.py`; `open`/`negotiate` are constructors of the implementations). Object safe,
/// so that a local and a remote (RPC) repository can be used through `&mut dyn Repository`.
pub trait Repository {
    /// The repository id (config `id`).
    fn id(&self) -> ObjectId;
    /// Number of objects (`__len__`).
    fn len(&mut self) -> Result<usize>;
    /// True if the repository has no objects.
    fn is_empty(&mut self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Whether an object exists (`__contains__`).
    fn contains(&mut self, id: &ObjectId) -> Result<bool>;
    /// Read one object (`get`); [`Error::ObjectNotFound`] if missing.
    fn get(&mut self, id: &ObjectId) -> Result<Vec<u8>>;
    /// Read several objects in order (`get_many`).
    fn get_many(&mut self, ids: &[ObjectId]) -> Result<Vec<Vec<u8>>> {
        ids.iter().map(|id| self.get(id)).collect()
    }
    /// Announces that `ids` will be read next, in this order, with [`get`](Self::get) or
    /// [`get_many`](Self::get_many) (borg's `RemoteRepository.preload`, used by its
    /// `DownloadPipeline`). A remote repository sends the requests now, so that they are in
    /// flight while the caller decrypts and writes what it already has: without it, reading
    /// many small files through `borg serve` costs a round trip each. A later read of an id
    /// that is further down the announced list drops the announcements before it (the caller
    /// skipped them); reads of ids never announced work as usual. Local repositories ignore
    /// it: a read there is a function call.
    fn preload(&mut self, ids: &[ObjectId]) -> Result<()> {
        let _ = ids;
        Ok(())
    }
    /// Store (or replace) an object in the current transaction (`put`).
    fn put(&mut self, id: &ObjectId, data: &[u8]) -> Result<()>;
    /// Delete an object in the current transaction (`delete`).
    fn delete(&mut self, id: &ObjectId) -> Result<()>;
    /// Commit the transaction; with `compact`, compact segments whose freeable space exceeds
    /// `threshold` (a ratio, borg's default 0.1) unless the repository is append-only.
    fn commit(&mut self, compact: bool, threshold: f64) -> Result<()>;
    /// Discard the current transaction.
    fn rollback(&mut self) -> Result<()>;
    /// Up to `limit` ids after `marker`, in index (hash table) order.
    fn list(&mut self, limit: Option<usize>, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>>;
    /// Up to `limit` ids after `marker`, in on-disk (segment) order.
    fn scan(&mut self, limit: Option<usize>, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>>;
    /// Verify all segments and the index (`check`); with `repair`, fix what can be fixed.
    /// Returns true when no problems were found (or they were repaired).
    fn check(&mut self, repair: bool, save_space: bool) -> Result<bool>;
    /// Delete the whole repository; the handle is closed afterwards.
    fn destroy(&mut self) -> Result<()>;
    /// Store the repokey (config `key`).
    fn save_key(&mut self, keydata: &[u8]) -> Result<()>;
    /// The repokey (empty if none).
    fn load_key(&mut self) -> Result<Vec<u8>>;
    /// Break a stale lock of this repository.
    fn break_lock(&mut self) -> Result<()>;
    /// The next free AES-CTR nonce recorded in the repository (file `nonce`), if any.
    fn get_free_nonce(&mut self) -> Result<Option<u64>>;
    /// Reserve nonces up to `next_unreserved`; `start_nonce` must equal the current value.
    fn commit_nonce_reservation(
        &mut self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<()>;
}
