//! The client-side cache directory (borg 1.2 `helpers/fs.py` `get_cache_dir`, `cache.py`).
//!
//! Each repository gets `<cache dir>/<repository id hex>/` with the chunks and files caches and
//! a lock, in borg 1.2's format, so borg and rborg can share it: see [`local::LocalCache`],
//! [`files`] and [`config`].

pub mod config;
pub mod files;
pub mod local;

use std::path::PathBuf;

pub use files::{FileCacheEntry, FileStat, FilesCache, Lookup};
pub use local::{CacheOptions, Level, LocalCache};

/// What can go wrong with the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file failed its integrity check (borg's `FileIntegrityError`).
    #[error("File failed integrity check: {}", path.display())]
    Integrity {
        /// The file.
        path: PathBuf,
        /// What did not match.
        detail: String,
    },
    /// A cache file has invalid content.
    #[error("{0}")]
    Corrupt(String),
    /// The directory is not a (supported) borg cache.
    #[error("{0}")]
    NotACache(String),
    /// Reading or writing a cache file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The cache lock could not be taken.
    #[error(transparent)]
    Lock(#[from] rborg_repository::lock::LockError),
    /// The archive layer failed (unknown mandatory feature, ...).
    #[error(transparent)]
    Archive(#[from] crate::Error),
    /// Reading an archive during sync failed.
    #[error(transparent)]
    Read(#[from] crate::ReadError),
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] rborg_repository::Error),
}

impl From<rborg_repository::index_files::IndexFileError> for CacheError {
    fn from(e: rborg_repository::index_files::IndexFileError) -> Self {
        use rborg_repository::index_files::IndexFileError as E;
        match e {
            E::IntegrityMismatch { path, detail } => CacheError::Integrity { path, detail },
            E::Io { path, source } => CacheError::Io { path, source },
            E::Missing(path) => CacheError::Io {
                path,
                source: std::io::ErrorKind::NotFound.into(),
            },
            E::Corrupt { path, message } => {
                CacheError::Corrupt(format!("{}: {message}", path.display()))
            }
        }
    }
}

/// Result type of cache operations.
pub type CacheResult<T> = std::result::Result<T, CacheError>;

/// borg's `files_cache_name`: `files`, or `files.<BORG_FILES_CACHE_SUFFIX>`.
pub fn files_cache_name(env: Env) -> String {
    match env("BORG_FILES_CACHE_SUFFIX").filter(|s| !s.is_empty()) {
        Some(suffix) => format!("files.{suffix}"),
        None => "files".to_string(),
    }
}

use rborg_crypto::paths::{base_dir, Env};

/// `BORG_CACHE_DIR`, else `$XDG_CACHE_HOME/borg` (only when `BORG_BASE_DIR` is unset or
/// empty), else `<base dir>/.cache/borg`.
pub fn cache_dir(env: Env) -> PathBuf {
    if let Some(dir) = env("BORG_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base_dir_set = env("BORG_BASE_DIR").is_some_and(|d| !d.is_empty());
    let xdg = env("XDG_CACHE_HOME").filter(|_| !base_dir_set);
    let cache_home = xdg
        .map(PathBuf::from)
        .unwrap_or_else(|| base_dir(env).join(".cache"));
    cache_home.join("borg")
}

/// The cache directory of one repository.
pub fn repository_cache_dir(env: Env, repository_id: &[u8; 32]) -> PathBuf {
    cache_dir(env).join(hex::encode(repository_id))
}
