//! The archive layer of rborg: what borg 1.2 keeps *in* a repository above the object store.
//!
//! * [`manifest`]: the manifest object (ID all zeros), its TAM and the archive list
//!   (borg's `helpers/manifest.py`, `internals/data-structures.rst` "The manifest").
//! * [`security`]: the client-side security database that detects a relocated, swapped or
//!   replayed repository (borg's `cache.SecurityManager`).
//! * [`keys`]: finding and unlocking the key of a repository in each of the seven modes.
//! * [`init`]: creating a repository with its key and an empty manifest (`borg init`).
//!
//! Every module works on `&mut dyn Repository`, so a local and a remote repository are used the
//! same way.

pub mod acl;
pub mod archive;
pub mod cache;
pub mod check;
pub mod create;
pub mod delete;
pub mod diff;
pub mod error;
pub mod export_tar;
pub mod extract;
pub mod format;
pub mod import_tar;
pub mod info;
pub mod init;
pub mod item;
pub mod keys;
pub mod manifest;
pub mod patterns;
pub mod prune;
pub mod recreate;
pub mod refcount;
pub mod robust_unpacker;
pub mod security;
pub mod walk;
pub mod writer;

pub use archive::{ArchiveMeta, ContentReader, ItemIter, ReadError};
pub use error::{Error, Result};
pub use item::{ChunkListEntry, Item, ItemUnpacker};
pub use manifest::{ArchiveEntry, Manifest, MANIFEST_ID};
