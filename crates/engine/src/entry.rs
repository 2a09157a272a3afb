//! Typed archive items.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rborg_archive::Item;

/// What kind of file system object an item is (the `S_IFMT` bits of its mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file (also a hard link to one).
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A socket or an unknown type.
    Other,
}

impl EntryKind {
    /// The kind of `mode` (`stat.S_IFMT`).
    pub fn from_mode(mode: u32) -> EntryKind {
        match mode & 0o170000 {
            0o100000 => EntryKind::File,
            0o040000 => EntryKind::Directory,
            0o120000 => EntryKind::Symlink,
            0o010000 => EntryKind::Fifo,
            0o020000 => EntryKind::CharDevice,
            0o060000 => EntryKind::BlockDevice,
            _ => EntryKind::Other,
        }
    }
}

/// One item of an archive, as `borg list` shows it. Paths are relative (borg strips the
/// leading `/`) and may hold any bytes except NUL; use [`Entry::path_bytes`] for the exact
/// bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The path as stored, lossily decoded for display.
    pub path: String,
    /// The exact path bytes.
    pub path_bytes: Vec<u8>,
    /// The file type.
    pub kind: EntryKind,
    /// The full mode (type and permission bits).
    pub mode: u32,
    /// Content size in bytes (0 for everything but regular files; a hard link's size is its
    /// target's, as in borg 1.2).
    pub size: u64,
    /// Modification time.
    pub mtime: Option<SystemTime>,
    /// Owner's user ID.
    pub uid: Option<u64>,
    /// Owner's group ID.
    pub gid: Option<u64>,
    /// Owner's user name, unless archived with `--numeric-ids`.
    pub user: Option<String>,
    /// Owner's group name, unless archived with `--numeric-ids`.
    pub group: Option<String>,
    /// A symlink's target, or the path of the item a hard link points to.
    pub link_target: Option<String>,
    /// Whether this is a hard link to an earlier item ([`Entry::link_target`]).
    pub is_hardlink: bool,
    /// Whether this is a part file of a checkpoint (`PATH.borg_part_N`).
    pub is_part: bool,
}

fn text(b: &Option<Vec<u8>>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn time(ns: Option<i64>) -> Option<SystemTime> {
    let ns = ns?;
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    }
}

impl Entry {
    /// Converts an archive item (borg's `Item`, `item.pyx`).
    pub(crate) fn from_item(item: &Item) -> Entry {
        let mode = item.mode.unwrap_or(0);
        Entry {
            path: String::from_utf8_lossy(&item.path).into_owned(),
            path_bytes: item.path.clone(),
            kind: EntryKind::from_mode(mode),
            mode,
            size: item.size.unwrap_or_else(|| item.get_size(false)),
            mtime: time(item.mtime),
            uid: item.uid,
            gid: item.gid,
            user: text(&item.user),
            group: text(&item.group),
            link_target: text(&item.source),
            is_hardlink: item.is_hardlink_slave(),
            is_part: item.part.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_s_ifmt_and_times_keep_nanoseconds() {
        let cases = [
            (0o100644, EntryKind::File),
            (0o040755, EntryKind::Directory),
            (0o120777, EntryKind::Symlink),
            (0o010600, EntryKind::Fifo),
            (0o020660, EntryKind::CharDevice),
            (0o060660, EntryKind::BlockDevice),
            (0o140755, EntryKind::Other),
        ];
        for (mode, kind) in cases {
            assert_eq!(EntryKind::from_mode(mode), kind, "{mode:o}");
        }
        let mut item = Item::new(b"a/b".to_vec(), 0o100600);
        item.mtime = Some(1_700_000_000_123_456_789);
        item.size = Some(42);
        let e = Entry::from_item(&item);
        assert_eq!(
            (e.path.as_str(), e.kind, e.size),
            ("a/b", EntryKind::File, 42)
        );
        let since = e.mtime.unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(since.as_nanos(), 1_700_000_000_123_456_789);
        item.mtime = Some(-1_500_000_000);
        let before = UNIX_EPOCH
            .duration_since(Entry::from_item(&item).mtime.unwrap())
            .unwrap();
        assert_eq!(before.as_nanos(), 1_500_000_000);
    }
}
