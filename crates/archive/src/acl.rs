//! POSIX ACLs as borg 1.2 stores them in items (`acl_access`, `acl_default`): the text that
//! borg's `platform/linux.pyx` `acl_get` makes from libacl's `acl_to_text`, and back to the
//! kernel's binary `system.posix_acl_*` xattr values on extract.
//!
//! borg reads ACLs through libacl; rborg reads the same data as the kernel's xattrs
//! (`posix_acl_xattr_header` version 2, then `posix_acl_xattr_entry { u16 tag; u16 perm;
//! u32 id }` records, little endian) and renders the text libacl would, quirks included:
//!
//! * an item gets ACLs only when the file has an *extended* ACL (`acl_extended_file`: more than
//!   the three entries the mode bits express, or a default ACL on a directory); the access ACL of
//!   such a file without an access xattr is the one the mode bits express;
//! * a directory with an extended access ACL but no default ACL gets an empty `acl_default`
//!   (libacl's `acl_to_text` of an empty ACL is an empty, non-NULL string);
//! * named entries carry the name (or the number when no user/group has that id) and borg
//!   appends the numeric id as a fourth field (`acl_append_numeric_ids`); with `--numeric-ids`
//!   the name is replaced by the id as well (`acl_numeric_ids`);
//! * `acl_to_text` marks entries whose permissions the mask limits with `\t#effective:...`;
//!   borg removes ` *#.*`, which leaves the tab in front of the fourth field
//!   (`user:4242:rwx\t:4242`).

use std::collections::HashMap;

/// `ACL_USER_OBJ`: the owner's entry.
const TAG_USER_OBJ: u16 = 0x01;
/// `ACL_USER`: a named user.
const TAG_USER: u16 = 0x02;
/// `ACL_GROUP_OBJ`: the owning group's entry.
const TAG_GROUP_OBJ: u16 = 0x04;
/// `ACL_GROUP`: a named group.
const TAG_GROUP: u16 = 0x08;
/// `ACL_MASK`: the upper bound of the group class.
const TAG_MASK: u16 = 0x10;
/// `ACL_OTHER`: everybody else.
const TAG_OTHER: u16 = 0x20;
/// The id field of entries without a qualifier.
const UNDEFINED_ID: u32 = u32::MAX;
/// `POSIX_ACL_XATTR_VERSION`.
const XATTR_VERSION: u32 = 2;

/// The kernel's xattr names.
pub const ACCESS_XATTR: &str = "system.posix_acl_access";
/// The kernel's xattr name for a directory's default ACL.
pub const DEFAULT_XATTR: &str = "system.posix_acl_default";

/// One ACL entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// Parses a binary ACL xattr value; `None` when it is malformed.
fn parse_xattr(value: &[u8]) -> Option<Vec<Entry>> {
    let (header, body) = value.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*header) != XATTR_VERSION || body.len() % 8 != 0 {
        return None;
    }
    Some(
        body.chunks_exact(8)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect(),
    )
}

/// The three entries the mode bits express (libacl's `acl_from_mode`).
fn from_mode(mode: u32) -> Vec<Entry> {
    let perm = |shift: u32| ((mode >> shift) & 7) as u16;
    vec![
        Entry {
            tag: TAG_USER_OBJ,
            perm: perm(6),
            id: UNDEFINED_ID,
        },
        Entry {
            tag: TAG_GROUP_OBJ,
            perm: perm(3),
            id: UNDEFINED_ID,
        },
        Entry {
            tag: TAG_OTHER,
            perm: perm(0),
            id: UNDEFINED_ID,
        },
    ]
}

fn perm_text(perm: u16) -> [u8; 3] {
    [
        if perm & 4 != 0 { b'r' } else { b'-' },
        if perm & 2 != 0 { b'w' } else { b'-' },
        if perm & 1 != 0 { b'x' } else { b'-' },
    ]
}

/// Looks up user and group names by id, caching the answers (libacl's `user_name`/`group_name`).
#[derive(Default)]
pub struct IdNames {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl IdNames {
    /// The name of user `uid`, if it has one.
    pub(crate) fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }

    /// The name of group `gid`, if it has one.
    pub(crate) fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

/// borg's text for `entries`: `acl_to_text` (with its effective-rights marks) followed by
/// `acl_append_numeric_ids` / `acl_numeric_ids`.
fn to_text(entries: &[Entry], numeric_ids: bool, names: &mut IdNames) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|e| (e.tag, e.id));
    let mask = sorted.iter().find(|e| e.tag == TAG_MASK).map(|e| e.perm);
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(sorted.len());
    for e in &sorted {
        let (kind, qualifier): (&[u8], Option<(String, u32)>) = match e.tag {
            TAG_USER_OBJ => (b"user", None),
            TAG_USER => {
                let name = names.user(e.id).unwrap_or_else(|| e.id.to_string());
                (b"user", Some((name, e.id)))
            }
            TAG_GROUP_OBJ => (b"group", None),
            TAG_GROUP => {
                let name = names.group(e.id).unwrap_or_else(|| e.id.to_string());
                (b"group", Some((name, e.id)))
            }
            TAG_MASK => (b"mask", None),
            TAG_OTHER => (b"other", None),
            _ => continue,
        };
        let mut line = kind.to_vec();
        line.push(b':');
        if let Some((name, id)) = &qualifier {
            if numeric_ids {
                line.extend_from_slice(id.to_string().as_bytes());
            } else {
                line.extend_from_slice(name.as_bytes());
            }
        }
        line.push(b':');
        line.extend_from_slice(&perm_text(e.perm));
        // acl_to_text's "\t#effective:..." mark, of which borg keeps the tab
        let group_class = matches!(e.tag, TAG_USER | TAG_GROUP_OBJ | TAG_GROUP);
        if let (true, Some(mask)) = (group_class, mask) {
            if e.perm & !mask != 0 {
                line.push(b'\t');
            }
        }
        if let Some((_, id)) = qualifier {
            line.push(b':');
            line.extend_from_slice(id.to_string().as_bytes());
        }
        lines.push(line);
    }
    lines.join(&b'\n')
}

/// The `acl_access` and `acl_default` item values borg 1.2 stores for a file of `mode` whose
/// ACL xattrs are `access` and `default` (as read with `lgetxattr`; `None` when absent).
/// Symlinks have no ACLs; files without an extended ACL get none.
pub fn item_acls(
    mode: u32,
    access: Option<&[u8]>,
    default: Option<&[u8]>,
    numeric_ids: bool,
    names: &mut IdNames,
) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let file_type = mode & crate::item::S_IFMT;
    if file_type == crate::item::S_IFLNK {
        return (None, None);
    }
    let is_dir = file_type == crate::item::S_IFDIR;
    let access = access.and_then(parse_xattr);
    let default = if is_dir {
        default.and_then(parse_xattr)
    } else {
        None
    };
    let extended = access.as_ref().is_some_and(|a| a.len() > 3)
        || default.as_ref().is_some_and(|d| !d.is_empty());
    if !extended {
        return (None, None);
    }
    let access = access.unwrap_or_else(|| from_mode(mode));
    let access_text = to_text(&access, numeric_ids, names);
    let default_text = is_dir.then(|| to_text(&default.unwrap_or_default(), numeric_ids, names));
    (Some(access_text), default_text)
}

/// One extended attribute of `path` (a symlink not followed), read through `file` when the
/// file is open; `None` when it is absent or cannot be read.
pub(crate) fn read_xattr(
    path: &std::path::Path,
    file: Option<&std::fs::File>,
    name: impl AsRef<std::ffi::OsStr>,
) -> Option<Vec<u8>> {
    use xattr::FileExt;
    match file {
        Some(f) => f.get_xattr(name),
        None => xattr::get(path, name),
    }
    .ok()
    .flatten()
}

/// Reads a file's ACLs (without following a symlink) and renders them as borg stores them.
/// With `file`, the file already open, they are read through it (borg's `acl_get` with `fd`:
/// no second path lookup).
pub fn read_item_acls(
    path: &std::path::Path,
    file: Option<&std::fs::File>,
    mode: u32,
    numeric_ids: bool,
    names: &mut IdNames,
) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    if mode & crate::item::S_IFMT == crate::item::S_IFLNK {
        return (None, None);
    }
    let access = read_xattr(path, file, ACCESS_XATTR);
    let default = if mode & crate::item::S_IFMT == crate::item::S_IFDIR {
        read_xattr(path, file, DEFAULT_XATTR)
    } else {
        None
    };
    item_acls(
        mode,
        access.as_deref(),
        default.as_deref(),
        numeric_ids,
        names,
    )
}

/// The binary `system.posix_acl_*` xattr value (entries sorted by tag and id) for an ACL in the
/// text form borg stores. Named entries get their id from `resolve(is_user, name, stored_id)`,
/// where `stored_id` is borg's fourth field (or the qualifier when it is a number); the caller
/// decides between the local id of the name and the stored one (borg's
/// `acl_use_local_uid_gid` / `posix_acl_use_stored_uid_gid`). `None` for malformed text.
pub fn text_to_xattr(
    text: &[u8],
    mut resolve: impl FnMut(bool, &[u8], Option<u32>) -> Option<u32>,
) -> Option<Vec<u8>> {
    let mut entries: Vec<Entry> = Vec::new();
    for line in text.split(|&b| b == b'\n' || b == b',') {
        let line = match line.iter().position(|&b| b == b'#') {
            Some(i) => &line[..i],
            None => line,
        };
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        // the tab borg leaves where acl_to_text put `#effective:` is trimmed with the fields
        let fields: Vec<&[u8]> = line.split(|&b| b == b':').map(<[u8]>::trim_ascii).collect();
        let (tag, qualifier, perms) = (fields.first()?, fields.get(1)?, fields.get(2)?);
        let mut perm = 0u16;
        for &c in perms.iter() {
            perm |= match c {
                b'r' => 4,
                b'w' => 2,
                b'x' => 1,
                b'-' => 0,
                _ => return None,
            };
        }
        let stored = fields
            .get(3)
            .and_then(|f| std::str::from_utf8(f).ok()?.parse().ok())
            .or_else(|| std::str::from_utf8(qualifier).ok()?.parse().ok());
        let (tag, id) = match (*tag, qualifier.is_empty()) {
            (b"user" | b"u", true) => (TAG_USER_OBJ, UNDEFINED_ID),
            (b"user" | b"u", false) => (TAG_USER, resolve(true, qualifier, stored)?),
            (b"group" | b"g", true) => (TAG_GROUP_OBJ, UNDEFINED_ID),
            (b"group" | b"g", false) => (TAG_GROUP, resolve(false, qualifier, stored)?),
            (b"mask" | b"m", _) => (TAG_MASK, UNDEFINED_ID),
            (b"other" | b"o", _) => (TAG_OTHER, UNDEFINED_ID),
            _ => return None,
        };
        entries.push(Entry { tag, perm, id });
    }
    entries.sort_by_key(|e| (e.tag, e.id));
    let mut out = XATTR_VERSION.to_le_bytes().to_vec();
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut out = XATTR_VERSION.to_le_bytes().to_vec();
        for &(tag, perm, id) in entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&perm.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    const U: u32 = UNDEFINED_ID;

    #[test]
    fn plain_mode_acl_is_not_stored() {
        let base = xattr(&[(1, 6, U), (4, 4, U), (0x20, 4, U)]);
        let got = item_acls(0o100644, Some(&base), None, false, &mut IdNames::default());
        assert_eq!(got, (None, None));
    }

    #[test]
    fn effective_mark_leaves_a_tab_and_ids_are_appended() {
        // uid 4242 has no name here (as in the oracle run this mirrors)
        let acl = xattr(&[
            (1, 6, U),
            (2, 7, 4_000_000_001),
            (4, 4, U),
            (0x10, 4, U),
            (0x20, 4, U),
        ]);
        let (access, default) =
            item_acls(0o100644, Some(&acl), None, false, &mut IdNames::default());
        assert_eq!(
            access.unwrap(),
            b"user::rw-\nuser:4000000001:rwx\t:4000000001\ngroup::r--\nmask::r--\nother::r--"
        );
        assert_eq!(default, None);
    }

    #[test]
    fn directory_without_default_acl_gets_an_empty_one() {
        let acl = xattr(&[
            (1, 7, U),
            (4, 5, U),
            (8, 6, 4_000_000_002),
            (0x10, 7, U),
            (0x20, 5, U),
        ]);
        let (access, default) = item_acls(0o40755, Some(&acl), None, true, &mut IdNames::default());
        assert_eq!(
            access.unwrap(),
            b"user::rwx\ngroup::r-x\ngroup:4000000002:rw-:4000000002\nmask::rwx\nother::r-x"
        );
        assert_eq!(default.unwrap(), b"");
    }

    #[test]
    fn default_acl_only_takes_access_from_mode() {
        let default = xattr(&[
            (1, 7, U),
            (2, 7, 4_000_000_003),
            (4, 5, U),
            (0x10, 7, U),
            (0x20, 5, U),
        ]);
        let (access, default) = item_acls(
            0o40750,
            None,
            Some(&default),
            false,
            &mut IdNames::default(),
        );
        assert_eq!(access.unwrap(), b"user::rwx\ngroup::r-x\nother::---");
        assert_eq!(
            default.unwrap(),
            b"user::rwx\nuser:4000000003:rwx:4000000003\ngroup::r-x\nmask::rwx\nother::r-x"
        );
    }

    #[test]
    fn text_round_trips_to_the_xattr() {
        let acl = xattr(&[
            (1, 6, U),
            (2, 7, 4242),
            (4, 4, U),
            (0x10, 4, U),
            (0x20, 4, U),
        ]);
        let (access, _) = item_acls(0o100644, Some(&acl), None, true, &mut IdNames::default());
        let back = text_to_xattr(&access.unwrap(), |_, _, stored| stored).unwrap();
        assert_eq!(back, acl);
    }

    #[test]
    fn malformed_input_is_refused_not_panicking() {
        assert_eq!(parse_xattr(b""), None);
        assert_eq!(parse_xattr(&[2, 0, 0, 0, 1]), None);
        assert_eq!(text_to_xattr(b"bogus::rw-", |_, _, s| s), None);
        assert_eq!(text_to_xattr(b"user::rwz", |_, _, s| s), None);
        let (a, d) = item_acls(
            0o100644,
            Some(b"\x02"),
            None,
            false,
            &mut IdNames::default(),
        );
        assert_eq!((a, d), (None, None));
    }
}
