//! Typed errors of the crypto crate.
//!
//! Where borg 1.2.4 shows a fixed message for a condition (its `Error` subclasses in
//! `borg/crypto/key.py`, `borg/crypto/keymanager.py` and `borg/helpers/errors.py`), the
//! `Display` text here is the same string, so a CLI can print it verbatim.

use thiserror::Error;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while handling keys, envelopes and TAMs.
#[derive(Debug, Error)]
pub enum Error {
    /// Corrupted or tampered data (borg's `IntegrityError`, "Data integrity error: {}").
    #[error("Data integrity error: {0}")]
    Integrity(String),

    /// The first byte of an envelope names no key type this version knows
    /// (borg's `UnsupportedPayloadError`).
    #[error(
        "Unsupported payload type {0}. A newer version is required to access this repository."
    )]
    UnsupportedPayload(u8),

    /// A manifest written by a newer borg (starts with four `0xc1` bytes).
    #[error(
        "Unsupported manifest envelope. A newer version is required to access this repository."
    )]
    UnsupportedManifest,

    /// Passphrase from the environment did not decrypt the key (borg's `PassphraseWrong`,
    /// exit code 2 in the CLI).
    #[error("passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND or via BORG_PASSPHRASE_FD is incorrect.")]
    PassphraseWrong,

    /// `BORG_PASSCOMMAND` could not be run or failed (borg's `PasscommandFailure`).
    #[error("passcommand supplied in BORG_PASSCOMMAND failed: {0}")]
    PasscommandFailure(String),

    /// No passphrase could be obtained (borg's `NoPassphraseFailure`).
    #[error("can not acquire a passphrase: {0}")]
    NoPassphrase(String),

    /// Manifest has no TAM although one is required (borg's `TAMRequiredError`).
    #[error("Manifest is unauthenticated, but it is required for this repository.\n\nThis either means that you are under attack, or that you modified this repository\nwith a Borg version older than 1.0.9 after TAM authentication was enabled.\n\nIn the latter case, use \"borg upgrade --tam --force '{location}'\" to re-authenticate the manifest.")]
    TamRequired {
        /// Canonical repository location, shown in the message.
        location: String,
    },

    /// Archive has no TAM although one is required (borg >= 1.2.5 `ArchiveTAMRequiredError`).
    #[error("Archive '{0}' is unauthenticated, but it is required for this repository.")]
    ArchiveTamRequired(String),

    /// TAM present but of an unknown suite (borg's `TAMUnsupportedSuiteError`).
    #[error("Could not verify manifest: Unsupported suite \"'{0}'\"; a newer version is needed.")]
    TamUnsupportedSuite(String),

    /// Malformed key file / key blob (borg's `KeyfileInvalidError` and friends).
    #[error("Invalid key: {0}")]
    InvalidKey(String),

    /// The key file belongs to a different repository (borg's `KeyfileMismatchError`).
    #[error("Mismatch between repository {repository} and key file {path}.")]
    KeyfileMismatch {
        /// Repository location.
        repository: String,
        /// Key file path.
        path: String,
    },

    /// No key file for a repository (borg's `KeyfileNotFoundError`).
    #[error("No key file for repository {repository} found in {keys_dir}.")]
    KeyfileNotFound {
        /// Repository location.
        repository: String,
        /// The directory that was searched.
        keys_dir: String,
    },

    /// Key blob versions / algorithms borg 1.2 does not support.
    #[error("{0}")]
    Unsupported(String),

    /// Imported file is not a borg key (borg's `NotABorgKeyFile`).
    #[error("This file is not a borg key backup, aborting.")]
    NotABorgKeyFile,

    /// Imported key belongs to another repository (borg's `RepoIdMismatch`).
    #[error("This key backup seems to be for a different backup repository, aborting.")]
    RepoIdMismatch,

    /// A paper-key line failed its checksum or syntax check; the text is borg's prompt message.
    #[error("paper key: {0}")]
    PaperKey(String),

    /// msgpack data could not be decoded or has an unexpected shape.
    #[error("msgpack: {0}")]
    Msgpack(String),

    /// Nonce bookkeeping went wrong (mismatched reservation state, exhausted nonce space).
    #[error("nonce: {0}")]
    Nonce(String),

    /// The operation needs an encrypting key but this one has no cipher (plaintext/authenticated).
    #[error("operation not available for key type {0}")]
    NotAvailable(&'static str),

    /// Filesystem error (key files, nonce file, security dir).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
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

    /// True for errors borg reports as `IntegrityError` (tampering / corruption).
    pub fn is_integrity(&self) -> bool {
        matches!(self, Error::Integrity(_) | Error::TamUnsupportedSuite(_))
    }
}
