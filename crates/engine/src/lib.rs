//! `rborg-engine`: rborg as a library. Open a BorgBackup 1.2 repository (a local path or
//! `ssh://`), list its archives, walk an archive's items, stream a file's content, back up
//! paths or readers, prune by a policy and check, without shelling out to `borg` and without
//! a terminal.
//!
//! This crate is a small, stable facade over the lower rborg crates (`rborg-repository`,
//! `rborg-remote`, `rborg-archive`, `rborg-crypto`), which stay usable on their own. It
//! follows the same sequence as borg 1.2's `with_repository(manifest=True)` decorator
//! (`archiver.py`): open the repository, unlock the key (`crypto/key.py` `key_factory`), load and
//! verify the manifest (`helpers/manifest.py`), run the security checks (`cache.py`
//! `SecurityManager.assert_secure`).
//!
//! ```no_run
//! use rborg_engine::{PassphraseSource, Repository};
//! use std::io::Read;
//!
//! # fn main() -> Result<(), rborg_engine::Error> {
//! let mut repo = Repository::open("/backups/repo", PassphraseSource::Env)?;
//! for archive in repo.list_archives() {
//!     println!("{} {}", archive.name, archive.time);
//! }
//! let mut content = String::new();
//! repo.read_file("monday", "etc/hostname")?
//!     .read_to_string(&mut content)
//!     .map_err(rborg_engine::Error::Io)?;
//! # Ok(()) }
//! ```
//!
//! The repository is opened with an exclusive lock (as borg's `create`, `prune` and `check`
//! take it: writes reserve nonces under it), waiting up to one second for another holder; it
//! is released when the [`Repository`] is dropped or [`Repository::close`]d.

mod entry;
mod error;
mod passphrase;
mod repository;

pub use entry::{Entry, EntryKind};
pub use error::Error;
pub use passphrase::PassphraseSource;
pub use repository::{
    Archive, ArchiveInfo, CheckOptions, CheckReport, CreateOptions, CreateStats, DedupStats, Items,
    PrunePolicy, PruneResult, Repository, Source,
};
