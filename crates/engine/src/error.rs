//! The facade's one error type.

/// Everything that can go wrong in the facade. Errors of the lower crates are wrapped, so
/// callers can match on the layer that failed without depending on those crates' versions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The location text is not one of borg's location forms.
    #[error("invalid repository location: {0}")]
    InvalidLocation(String),
    /// The object store failed (I/O, locking, missing object, remote `borg serve` error).
    #[error(transparent)]
    Repository(#[from] rborg_repository::Error),
    /// The archive layer failed (manifest, key, security database).
    #[error(transparent)]
    Archive(#[from] rborg_archive::Error),
    /// Reading an archive failed (decryption, decompression, malformed item).
    #[error(transparent)]
    Read(#[from] rborg_archive::ReadError),
    /// Creating an archive failed.
    #[error(transparent)]
    Create(#[from] rborg_archive::create::CreateError),
    /// Deleting a pruned archive failed.
    #[error(transparent)]
    Delete(#[from] rborg_archive::delete::DeleteError),
    /// The archive check could not run to its end.
    #[error(transparent)]
    Check(#[from] rborg_archive::check::CheckError),
    /// A passphrase or key problem.
    #[error(transparent)]
    Crypto(#[from] rborg_crypto::Error),
    /// No archive of that name.
    #[error("archive {0} does not exist")]
    ArchiveNotFound(String),
    /// The archive has no item with that path.
    #[error("{path}: not found in archive {archive}")]
    PathNotFound {
        /// The archive searched.
        archive: String,
        /// The path asked for.
        path: String,
    },
    /// The item exists but has no content to read (a directory, symlink, device...).
    #[error("{0}: not a regular file")]
    NotAFile(String),
    /// An option value is invalid (compression spec, glob...).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Reading a file's content failed.
    #[error(transparent)]
    Io(std::io::Error),
}
