//! `borg mount`: archives of a borg 1.2 repository as a read-only FUSE file system.
//!
//! Restoring one file from last Tuesday is the most common restore; admins do it by mounting
//! and copying. This crate implements borg 1.2.4's `fuse.py` over rborg's archive layer with
//! the [`fuser`] crate (no libfuse needed; `fusermount3` mounts for non-root users):
//!
//! * [`tree`]: the inode tree built from items (a directory per archive, loaded on first
//!   access, or one archive; hard links sharing an inode; the `versions` view);
//! * [`fs`]: the FUSE operations, reading file contents lazily through a bounded chunk cache;
//! * [`MountOptions::parse`]: borg's `-o` options (`versions`, `allow_damaged_files`,
//!   `ignore_permissions`, `uid=`, `gid=`, `umask=`), the rest going to the kernel.
//!
//! ```no_run
//! # fn demo(repo: Box<dyn rborg_repository::Repository + Send>, key: rborg_crypto::Key,
//! #         manifest: rborg_archive::Manifest) -> Result<(), rborg_mount::MountError> {
//! use rborg_mount::{mount, MountOptions, Selection};
//! let opts = MountOptions::parse(Some("versions"), false)?;
//! let archives = vec![("monday".to_string(), 0)];
//! mount(repo, key, manifest, Selection::Repository(archives), Box::new(|_: &[u8]| true),
//!       "/mnt/borg".as_ref(), &opts, || {})?;
//! # Ok(()) }
//! ```

pub mod fs;
pub mod tree;

use std::path::Path;

use fuser::{Config, MountOption, SessionACL};
use rborg_archive::item::{Item, S_IFDIR};
use rborg_archive::{Manifest, ReadError};
use rborg_crypto::Key;
use rborg_repository::Repository;

pub use fs::{BorgFs, FsOptions};
pub use tree::{ItemFilter, Tree, TreeOptions};

/// What can go wrong mounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// An `-o` option with a value of the wrong type (borg: "unsupported value in option").
    #[error("unsupported value in option: {0}")]
    BadOption(String),
    /// The versions view needs the whole repository.
    #[error("for versions view, do not specify a single archive, but always give the repository as location.")]
    VersionsNeedRepository,
    /// Reading the archives failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The kernel or `fusermount` refused the mount.
    #[error("mount failed: {0}")]
    Fuse(std::io::Error),
}

/// The options of `borg mount` that shape the file system.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// The view: versions, `--strip-components`, part files, filtering.
    pub tree: TreeOptions,
    /// Ownership, permissions, damaged files, cache size.
    pub fs: FsOptions,
    /// Options passed to the kernel (`fsname=borgfs`, `ro`, `default_permissions` unless
    /// `ignore_permissions`, and whatever else was given, e.g. `allow_other`).
    pub kernel: Vec<String>,
}

/// borg's `pop_option`: removes `key` or `key=value` from `options` and returns its value.
fn pop_option(options: &mut Vec<String>, key: &str) -> Option<Option<String>> {
    let pos = options
        .iter()
        .position(|o| o == key || o.strip_prefix(key).is_some_and(|r| r.starts_with('=')))?;
    let option = options.remove(pos);
    Some(option.split_once('=').map(|(_, v)| v.to_string()))
}

fn pop_bool(options: &mut Vec<String>, key: &str) -> Result<bool, MountError> {
    match pop_option(options, key) {
        None => Ok(false),
        Some(None) => Ok(true),
        Some(Some(v)) => match v.to_lowercase().as_str() {
            "y" | "yes" | "true" | "1" => Ok(true),
            "n" | "no" | "false" | "0" => Ok(false),
            _ => Err(MountError::BadOption(format!("{key}={v}"))),
        },
    }
}

fn pop_int(options: &mut Vec<String>, key: &str, radix: u32) -> Result<Option<u32>, MountError> {
    match pop_option(options, key) {
        None => Ok(None),
        Some(None) => Err(MountError::BadOption(key.to_string())),
        Some(Some(v)) => {
            let digits = if radix == 8 {
                v.trim_start_matches("0o")
            } else {
                v.as_str()
            };
            u32::from_str_radix(digits, radix)
                .map(Some)
                .map_err(|_| MountError::BadOption(format!("{key}={v}")))
        }
    }
}

impl MountOptions {
    /// Parses `-o` (comma separated) as borg 1.2.4's `FuseOperations.mount`; `numeric_ids` is
    /// `--numeric-ids`. The mounting user owns what has no owner.
    pub fn parse(options: Option<&str>, numeric_ids: bool) -> Result<MountOptions, MountError> {
        let mut kernel: Vec<String> = ["fsname=borgfs", "ro", "default_permissions"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(o) = options.filter(|o| !o.is_empty()) {
            kernel.extend(o.split(',').map(str::to_string));
        }
        if pop_bool(&mut kernel, "ignore_permissions")? {
            pop_bool(&mut kernel, "default_permissions")?;
        }
        let allow_damaged_files = pop_bool(&mut kernel, "allow_damaged_files")?;
        let versions = pop_bool(&mut kernel, "versions")?;
        let uid_forced = pop_int(&mut kernel, "uid", 10)?;
        let gid_forced = pop_int(&mut kernel, "gid", 10)?;
        let umask = pop_int(&mut kernel, "umask", 8)?.unwrap_or(0);
        let data_cache_entries = std::env::var("BORG_MOUNT_DATA_CACHE_ENTRIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Ok(MountOptions {
            tree: TreeOptions {
                versions,
                ..TreeOptions::default()
            },
            fs: FsOptions {
                allow_damaged_files,
                umask,
                uid_forced,
                gid_forced,
                numeric_ids,
                default_uid: nix::unistd::getuid().as_raw(),
                default_gid: nix::unistd::getgid().as_raw(),
                data_cache_entries,
            },
            kernel,
        })
    }

    /// The made-up directories' metadata (borg's `default_dir`): mode 755 minus the umask,
    /// owned by the forced or mounting user, modified now.
    pub fn default_dir(&self) -> Item {
        let uid = self.fs.uid_forced.unwrap_or(self.fs.default_uid);
        let gid = self.fs.gid_forced.unwrap_or(self.fs.default_gid);
        let mut dir = Item::new(Vec::new(), (S_IFDIR | 0o755) & !self.fs.umask);
        dir.uid = Some(u64::from(uid));
        dir.gid = Some(u64::from(gid));
        dir.user = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name.into_bytes());
        dir.group = nix::unistd::Group::from_gid(gid.into())
            .ok()
            .flatten()
            .map(|g| g.name.into_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        dir.mtime = Some(now);
        dir
    }

    fn config(&self) -> Config {
        let mut config = Config::default();
        for o in &self.kernel {
            match o.as_str() {
                "ro" => config.mount_options.push(MountOption::RO),
                "default_permissions" => config.mount_options.push(MountOption::DefaultPermissions),
                "allow_other" => config.acl = SessionACL::All,
                "allow_root" => config.acl = SessionACL::RootAndOwner,
                "auto_unmount" => config.mount_options.push(MountOption::AutoUnmount),
                "noexec" => config.mount_options.push(MountOption::NoExec),
                "nosuid" => config.mount_options.push(MountOption::NoSuid),
                "nodev" => config.mount_options.push(MountOption::NoDev),
                "noatime" => config.mount_options.push(MountOption::NoAtime),
                other => match other.strip_prefix("fsname=") {
                    Some(name) => config.mount_options.push(MountOption::FSName(name.into())),
                    None => config
                        .mount_options
                        .push(MountOption::CUSTOM(other.to_string())),
                },
            }
        }
        config
    }
}

/// What to mount.
pub enum Selection {
    /// One archive, its tree directly under the mount point.
    Archive(String),
    /// These archives (name, time in ns), one directory each, or merged in the versions view.
    Repository(Vec<(String, i64)>),
}

/// Builds the tree and mounts it at `mountpoint`; calls `mounted` once the kernel has the
/// file system (so a daemonizing caller can let its parent go), then serves requests until
/// the file system is unmounted (`borg umount`, `fusermount -u`).
#[allow(clippy::too_many_arguments)]
pub fn mount(
    mut repository: Box<dyn Repository + Send>,
    key: Key,
    manifest: Manifest,
    selection: Selection,
    mut filter: Box<dyn ItemFilter + Send>,
    mountpoint: &Path,
    opts: &MountOptions,
    mounted: impl FnOnce(),
) -> Result<(), MountError> {
    let mut tree = Tree::new(opts.default_dir(), opts.tree.clone());
    match selection {
        Selection::Archive(name) => {
            if opts.tree.versions {
                return Err(MountError::VersionsNeedRepository);
            }
            tree.process_archive(
                &name,
                &[],
                repository.as_mut(),
                &key,
                &manifest,
                filter.as_mut(),
            )?;
        }
        Selection::Repository(archives) => tree.add_archives(
            &archives,
            repository.as_mut(),
            &key,
            &manifest,
            filter.as_mut(),
        )?,
    }
    let fs = BorgFs::new(tree, repository, key, manifest, filter, opts.fs.clone());
    let session = fuser::Session::new(fs, mountpoint, &opts.config()).map_err(MountError::Fuse)?;
    mounted();
    session.run().map_err(MountError::Fuse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borgs_options_are_taken_out_and_the_rest_goes_to_the_kernel() {
        let o = MountOptions::parse(
            Some("versions,allow_damaged_files,uid=1000,gid=100,umask=0227,allow_other"),
            false,
        )
        .unwrap();
        assert!(o.tree.versions);
        assert!(o.fs.allow_damaged_files);
        assert_eq!(o.fs.uid_forced, Some(1000));
        assert_eq!(o.fs.gid_forced, Some(100));
        assert_eq!(o.fs.umask, 0o227);
        assert_eq!(
            o.kernel,
            ["fsname=borgfs", "ro", "default_permissions", "allow_other"]
        );
        assert_eq!(o.default_dir().mode, Some(S_IFDIR | 0o550));
    }

    #[test]
    fn ignore_permissions_drops_default_permissions() {
        let o = MountOptions::parse(Some("ignore_permissions"), false).unwrap();
        assert_eq!(o.kernel, ["fsname=borgfs", "ro"]);
        let o = MountOptions::parse(None, true).unwrap();
        assert!(o.fs.numeric_ids);
        assert!(!o.tree.versions);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in ["versions=maybe", "uid=alice", "umask=9", "gid"] {
            assert!(
                matches!(
                    MountOptions::parse(Some(bad), false),
                    Err(MountError::BadOption(_))
                ),
                "{bad}"
            );
        }
        assert!(
            !MountOptions::parse(Some("versions=no"), false)
                .unwrap()
                .tree
                .versions
        );
    }
}
