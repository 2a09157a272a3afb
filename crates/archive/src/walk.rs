//! Path handling for `borg create`'s walker: borg's path normalisation (Python's
//! `os.path.normpath`, `helpers/fs.py` `make_path_safe`) and exclusion by tag files
//! (`dir_is_tagged`). Include/exclude patterns live in [`crate::patterns`].
//!
//! ```
//! use rborg_archive::walk::{make_path_safe, normpath};
//! assert_eq!(normpath("a/./b/../c/"), "a/c");
//! assert_eq!(make_path_safe(b"/etc/passwd"), b"etc/passwd");
//! ```

use std::path::Path;

/// Python's `os.path.normpath` for POSIX paths: collapses separators and `.` components and
/// resolves `..` lexically (kept at the start of a relative path; dropped at the root).
pub fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let initial = if path.starts_with("//") && !path.starts_with("///") {
        "//"
    } else if path.starts_with('/') {
        "/"
    } else {
        ""
    };
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if initial.is_empty() {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = format!("{initial}{}", parts.join("/"));
    if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// [`normpath`] on raw bytes (non-UTF-8 paths are handled byte-wise).
pub fn normpath_bytes(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let initial: &[u8] = if path.starts_with(b"//") && !path.starts_with(b"///") {
        b"//"
    } else if path.starts_with(b"/") {
        b"/"
    } else {
        b""
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in path.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|p| *p != b"..") {
                    parts.pop();
                } else if initial.is_empty() {
                    parts.push(b"..");
                }
            }
            c => parts.push(c),
        }
    }
    let mut out = initial.to_vec();
    out.extend_from_slice(&parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// borg's `make_path_safe`: strips leading `/` and `../` runs so archived paths are relative
/// (`.` when nothing is left).
pub fn make_path_safe(path: &[u8]) -> Vec<u8> {
    let mut i = 0;
    loop {
        let mut j = i;
        if path[j..].starts_with(b"..") {
            j += 2;
        }
        let slashes = path[j..].iter().take_while(|&&c| c == b'/').count();
        if slashes == 0 {
            break;
        }
        i = j + slashes;
    }
    if i >= path.len() {
        b".".to_vec()
    } else {
        path[i..].to_vec()
    }
}

/// The exact contents a `CACHEDIR.TAG` file must start with (borg's `CACHE_TAG_CONTENTS`).
pub const CACHE_TAG_CONTENTS: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
/// The name of the cache directory tag (borg's `CACHE_TAG_NAME`).
pub const CACHE_TAG_NAME: &str = "CACHEDIR.TAG";

/// borg's `dir_is_tagged`: the tag names that make `dir` excluded (`CACHEDIR.TAG` with the
/// right signature when `exclude_caches`, plus any `exclude_if_present` name that exists).
pub fn dir_tags(dir: &Path, exclude_caches: bool, exclude_if_present: &[String]) -> Vec<String> {
    use std::io::Read;
    let mut tags = Vec::new();
    if exclude_caches {
        let mut buf = vec![0u8; CACHE_TAG_CONTENTS.len()];
        let ok = std::fs::File::open(dir.join(CACHE_TAG_NAME))
            .and_then(|mut f| f.read_exact(&mut buf))
            .is_ok();
        if ok && buf == CACHE_TAG_CONTENTS {
            tags.push(CACHE_TAG_NAME.to_string());
        }
    }
    for tag in exclude_if_present {
        if dir.join(tag).exists() {
            tags.push(tag.clone());
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normpath_like_python() {
        for (i, o) in [
            ("", "."),
            ("/", "/"),
            ("//a", "//a"),
            ("///a//b/", "/a/b"),
            ("a/./b/../c", "a/c"),
            ("../x", "../x"),
            ("/../x", "/x"),
            ("a/..", "."),
        ] {
            assert_eq!(normpath(i), o, "{i}");
            assert_eq!(normpath_bytes(i.as_bytes()), o.as_bytes(), "{i}");
        }
    }

    #[test]
    fn path_safe() {
        assert_eq!(make_path_safe(b"/etc/x"), b"etc/x");
        assert_eq!(make_path_safe(b"../../a"), b"a");
        assert_eq!(make_path_safe(b"/"), b".");
        assert_eq!(make_path_safe(b"..foo"), b"..foo");
        assert_eq!(make_path_safe(b"a/b"), b"a/b");
    }
}
