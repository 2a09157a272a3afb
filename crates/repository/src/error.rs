//! The repository error type, carrying borg's exception classes and messages
//! (`Repository.*` in `borg/repository.py`, `IntegrityError` in `borg/helpers/errors.py`).

use crate::config::ConfigError;
use crate::hashindex::HashIndexError;
use crate::hints::HintsError;
use crate::index_files::IndexFileError;
use crate::lock::LockError;
use crate::segment::SegmentError;

/// Everything that can go wrong in a repository operation. The `Display` text is borg's message
/// for the same condition; [`Error::borg_class`] gives borg's exception class name, which the
/// RPC layer sends to clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `Repository.DoesNotExist`
    #[error("Repository {0} does not exist.")]
    DoesNotExist(String),
    /// `Repository.AlreadyExists`
    #[error("A repository already exists at {0}.")]
    AlreadyExists(String),
    /// `Repository.PathAlreadyExists`
    #[error("There is already something at {0}.")]
    PathAlreadyExists(String),
    /// `Repository.ParentPathDoesNotExist`
    #[error("The parent path of the repo directory [{0}] does not exist.")]
    ParentPathDoesNotExist(String),
    /// `Repository.InvalidRepository`
    #[error("{0} is not a valid repository. Check repo config.")]
    InvalidRepository(String),
    /// `Repository.InvalidRepositoryConfig`
    #[error("{0} does not have a valid configuration. Check repo config [{1}].")]
    InvalidRepositoryConfig(String, String),
    /// `Repository.AtticRepository`
    #[error("Attic repository detected. Please run \"borg upgrade {0}\".")]
    AtticRepository(String),
    /// `Repository.CheckNeeded`
    #[error("Inconsistency detected. Please run \"borg check {0}\".")]
    CheckNeeded(String),
    /// `Repository.ObjectNotFound` (id in hex)
    #[error("Object with key {id} not found in repository {repo}.")]
    ObjectNotFound {
        /// Hex id of the object.
        id: String,
        /// Repository path.
        repo: String,
    },
    /// `Repository.InsufficientFreeSpaceError` (sizes formatted like borg's `format_file_size`)
    #[error("Insufficient free space to complete transaction (required: {required}, available: {available}).")]
    InsufficientFreeSpace {
        /// Bytes required, formatted.
        required: String,
        /// Bytes available, formatted.
        available: String,
    },
    /// `Repository.StorageQuotaExceeded`
    #[error("The storage quota ({quota}) has been exceeded ({used}). Try deleting some archives.")]
    StorageQuotaExceeded {
        /// The quota, formatted.
        quota: String,
        /// The use, formatted.
        used: String,
    },
    /// borg raises `ValueError(path + " is in append-only mode")` for destroy/repair.
    #[error("{0} is in append-only mode")]
    AppendOnly(String),
    /// borg raises a plain `Exception` when the nonce file changed under us.
    #[error("nonce space reservation with mismatched previous state")]
    NonceMismatch,
    /// A write needs the exclusive lock (borg: `AssertionError`).
    #[error("bug in code, exclusive lock should exist here")]
    NotExclusive,
    /// An invalid argument (borg raises `ValueError`), e.g. `scan(limit=0)`.
    #[error("{0}")]
    InvalidArgument(String),
    /// The repository was closed (destroyed) and cannot be used any more.
    #[error("repository is closed")]
    Closed,
    /// `IntegrityError` from the segment files.
    #[error("Data integrity error: {0}")]
    Integrity(#[source] SegmentError),
    /// Errors of the hash index.
    #[error(transparent)]
    HashIndex(#[from] HashIndexError),
    /// Errors of index/hints/integrity files.
    #[error(transparent)]
    IndexFile(#[from] IndexFileError),
    /// Errors of the hints file.
    #[error(transparent)]
    Hints(#[from] HintsError),
    /// Errors of the config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Lock errors.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Other I/O errors.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An I/O error on a segment file ([`SegmentError::File`]: path, operation, OS error).
    #[error(transparent)]
    SegmentFile(SegmentError),
    /// `PathNotAllowed` (`borg/remote.py`): `borg serve --restrict-to-path/--restrict-to-repository`
    /// refused the repository path.
    #[error("Repository path not allowed: {0}")]
    PathNotAllowed(String),
    /// An `IntegrityError` reported by a remote repository (its message only).
    #[error("Data integrity error: {0}")]
    RemoteIntegrity(String),
    /// `InvalidRPCMethod`: the server does not know the method.
    #[error("RPC method {0} is not valid")]
    InvalidRpcMethod(String),
    /// `ConnectionClosed` / `ConnectionClosedWithHint`: the RPC peer went away.
    #[error("Connection closed by remote host{0}")]
    ConnectionClosed(String),
    /// `UnexpectedRPCDataFormatFromServer`/`...FromClient`: undecodable RPC data.
    #[error("Got unexpected RPC data format: {0}")]
    UnexpectedRpcData(String),
    /// Any other exception of the remote side (borg's `RemoteRepository.RPCError`): the
    /// class name and the short message the server sent.
    #[error("{message}")]
    Remote {
        /// borg's exception class name.
        class: String,
        /// `exception_short`, joined by newlines.
        message: String,
    },
}

impl From<SegmentError> for Error {
    fn from(e: SegmentError) -> Self {
        match e {
            SegmentError::Io(io) => Error::Io(io),
            file @ SegmentError::File { .. } => Error::SegmentFile(file),
            other => Error::Integrity(other),
        }
    }
}

impl Error {
    /// borg's exception class name for this error, as `borg serve` reports it to clients
    /// (e.g. `"ObjectNotFound"`, `"IntegrityError"`).
    pub fn borg_class(&self) -> &'static str {
        match self {
            Error::DoesNotExist(_) => "DoesNotExist",
            Error::AlreadyExists(_) => "AlreadyExists",
            Error::PathAlreadyExists(_) => "PathAlreadyExists",
            Error::ParentPathDoesNotExist(_) => "ParentPathDoesNotExist",
            Error::InvalidRepository(_) => "InvalidRepository",
            Error::InvalidRepositoryConfig(..) => "InvalidRepositoryConfig",
            Error::AtticRepository(_) => "AtticRepository",
            Error::CheckNeeded(_) => "CheckNeeded",
            Error::ObjectNotFound { .. } => "ObjectNotFound",
            Error::InsufficientFreeSpace { .. } => "InsufficientFreeSpaceError",
            Error::StorageQuotaExceeded { .. } => "StorageQuotaExceeded",
            Error::AppendOnly(_) | Error::InvalidArgument(_) => "ValueError",
            Error::NonceMismatch => "Exception",
            Error::NotExclusive => "AssertionError",
            Error::Closed => "AssertionError",
            Error::Integrity(_) => "IntegrityError",
            Error::IndexFile(IndexFileError::IntegrityMismatch { .. }) => "FileIntegrityError",
            Error::HashIndex(_) | Error::IndexFile(_) | Error::Hints(_) | Error::Config(_) => {
                "ValueError"
            }
            Error::Lock(_) => "LockError",
            Error::Io(_) | Error::SegmentFile(_) => "OSError",
            Error::PathNotAllowed(_) => "PathNotAllowed",
            Error::RemoteIntegrity(_) => "IntegrityError",
            Error::InvalidRpcMethod(_) => "InvalidRPCMethod",
            Error::ConnectionClosed(_) => "ConnectionClosed",
            Error::UnexpectedRpcData(_) => "UnexpectedRPCDataFormatFromServer",
            Error::Remote { .. } => "RPCError",
        }
    }

    /// The positional arguments borg's exception carries (what `borg serve` sends as
    /// `exception_args`).
    pub fn borg_args(&self) -> Vec<String> {
        match self {
            Error::DoesNotExist(p)
            | Error::AlreadyExists(p)
            | Error::PathAlreadyExists(p)
            | Error::ParentPathDoesNotExist(p)
            | Error::InvalidRepository(p)
            | Error::AtticRepository(p)
            | Error::CheckNeeded(p)
            | Error::PathNotAllowed(p)
            | Error::RemoteIntegrity(p)
            | Error::InvalidRpcMethod(p) => vec![p.clone()],
            Error::InvalidRepositoryConfig(p, m) => vec![p.clone(), m.clone()],
            Error::ObjectNotFound { id, repo } => vec![id.clone(), repo.clone()],
            Error::InsufficientFreeSpace {
                required,
                available,
            } => vec![required.clone(), available.clone()],
            Error::StorageQuotaExceeded { quota, used } => vec![quota.clone(), used.clone()],
            other => vec![other.to_string()],
        }
    }
}

/// Format a byte count like borg's `format_file_size` (decimal units, two decimals, e.g.
/// `"1.50 MB"`, `"999 B"`).
pub fn format_file_size(v: i64) -> String {
    format_file_size_units(v, false)
}

/// borg's `format_file_size` / `sizeof_fmt` with precision 2, in decimal units or, with `iec`
/// (`--iec`), in binary units (`"1.50 KiB"`).
pub fn format_file_size_units(v: i64, iec: bool) -> String {
    let (units, power): (&[&str], f64) = if iec {
        (
            &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"],
            1024.0,
        )
    } else {
        (&["", "k", "M", "G", "T", "P", "E", "Z", "Y"], 1000.0)
    };
    let mut num = v as f64;
    let mut prec = 0usize;
    for (i, unit) in units.iter().enumerate() {
        if i + 1 == units.len() || ((num * 100.0).round() / 100.0).abs() < power {
            return format!("{num:.prec$} {unit}B");
        }
        num /= power;
        prec = 2;
    }
    unreachable!("the last unit always returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_size_format_matches_borg() {
        // values from borg's test_helpers.py format_file_size cases
        assert_eq!(format_file_size(0), "0 B");
        assert_eq!(format_file_size(1), "1 B");
        assert_eq!(format_file_size(999), "999 B");
        assert_eq!(format_file_size(1000), "1.00 kB");
        assert_eq!(format_file_size(1234), "1.23 kB");
        assert_eq!(format_file_size(1_000_000), "1.00 MB");
        assert_eq!(format_file_size(1_500_000_000), "1.50 GB");
        assert_eq!(format_file_size(-1234), "-1.23 kB");
    }

    #[test]
    fn messages_and_classes() {
        let e = Error::ObjectNotFound {
            id: "ab".into(),
            repo: "/r".into(),
        };
        assert_eq!(
            e.to_string(),
            "Object with key ab not found in repository /r."
        );
        assert_eq!(e.borg_class(), "ObjectNotFound");
        let e: Error = SegmentError::Checksum {
            segment: 3,
            offset: 8,
        }
        .into();
        assert_eq!(
            e.to_string(),
            "Data integrity error: Segment entry checksum mismatch [segment 3, offset 8]"
        );
        assert_eq!(e.borg_class(), "IntegrityError");
    }
}
