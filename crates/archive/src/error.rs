//! Errors of the archive layer.

/// What can go wrong above the object store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository failed (I/O, lock, missing object, ...).
    #[error(transparent)]
    Repository(#[from] rborg_repository::Error),
    /// A key, envelope or TAM failed.
    #[error(transparent)]
    Crypto(#[from] rborg_crypto::Error),
    /// A compressed payload could not be decoded.
    #[error(transparent)]
    Compress(#[from] rborg_compress::DecompressError),
    /// The repository has no manifest (borg's `NoManifestError`).
    #[error("Repository has no manifest.")]
    NoManifest,
    /// The manifest decoded but does not have borg's structure.
    #[error("Invalid manifest: {0}")]
    InvalidManifest(String),
    /// The repository needs a feature rborg does not have (borg's `MandatoryFeatureUnsupported`).
    #[error("Unsupported repository feature(s) {0:?}. A newer version of borg is required to access this repository.")]
    MandatoryFeatureUnsupported(Vec<String>),
    /// The security database says the repository was seen with another key type
    /// (borg's `Cache.EncryptionMethodMismatch`).
    #[error("Repository encryption method changed since last access, refusing to continue")]
    EncryptionMethodMismatch,
    /// The manifest is older than one seen before (borg's `Cache.RepositoryReplay`).
    #[error("Cache, or information obtained from the security directory is newer than repository - this is either an attack or unsafe (multiple repos with same ID)")]
    RepositoryReplay,
    /// An unencrypted repository's manifest is older than one seen before (borg's
    /// `Cache.RepositoryIDNotUnique`).
    #[error("Cache is newer than repository - do you have multiple, independently updated repos with same ID?")]
    RepositoryIdNotUnique,
    /// The user declined (or the environment did not allow) access to an unknown unencrypted or
    /// relocated repository (borg's `Cache.CacheInitAbortedError` / `RepositoryAccessAborted`).
    #[error("{0}")]
    AccessAborted(String),
    /// A new key file would overwrite an existing one.
    #[error("Aborting because key in \"{0}\" already exists.")]
    KeyFileExists(String),
    /// Three wrong interactive passphrases (borg's `PasswordRetriesExceeded`).
    #[error("exceeded the maximum password retries")]
    PasswordRetriesExceeded,
    /// A file of the security database could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result type of the archive layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
