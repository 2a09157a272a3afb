//! Path handling for `borg create`: borg's path normalisation and its exclude patterns
//! (borg 1.2 `patterns.py`, `shellpattern.py`, `helpers/fs.py` `make_path_safe`,
//! `dir_is_tagged`; `borg help patterns`).
//!
//! Patterns match a path with its leading slashes removed, as borg's `PatternMatcher.match`
//! does. A pattern's style is chosen by a two-letter prefix (`fm:`, `sh:`, `re:`, `pp:`, `pf:`);
//! without one, `--exclude` patterns are `fm:` (fnmatch).
//!
//! ```
//! use rborg_archive::walk::Pattern;
//! let p = Pattern::parse("sh:home/*/junk").unwrap();
//! assert!(p.matches(b"/home/user/junk/file"));
//! assert!(!p.matches(b"/home/user/keep"));
//! let p = Pattern::parse("*.tmp").unwrap();
//! assert!(p.matches(b"srv/a/b.tmp"));
//! ```

use std::path::Path;

use regex::bytes::Regex;

/// An invalid pattern (borg's `ValueError` / `re.error` when parsing patterns).
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// The `xx:` prefix names no pattern style.
    #[error("Unknown pattern style: {0}")]
    UnknownStyle(String),
    /// A `re:` pattern (or a translated glob) does not compile.
    #[error("invalid pattern {pattern:?}: {source}")]
    Regex {
        /// The pattern as given.
        pattern: String,
        /// The compiler's complaint.
        source: regex::Error,
    },
}

/// The pattern styles of borg 1.2 (`_PATTERN_CLASSES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternStyle {
    /// `fm:` shell-style fnmatch; `*` also matches `/`; matches a path and all below it.
    Fnmatch,
    /// `sh:` shell glob; `*` stops at `/`, `**/` matches any number of directories.
    Shell,
    /// `re:` regular expression searched anywhere in the path.
    Regex,
    /// `pp:` path prefix.
    PathPrefix,
    /// `pf:` full path.
    PathFull,
}

/// One compiled exclude pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    style: PatternStyle,
    original: String,
    literal: Vec<u8>,
    regex: Option<Regex>,
}

impl Pattern {
    /// Parses `text` (with an optional `xx:` style prefix; fnmatch when there is none),
    /// like borg's `parse_pattern(pattern, fallback=FnmatchPattern)`.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        Pattern::parse_with_default(text, PatternStyle::Fnmatch)
    }

    /// Parses `text`, using `fallback` when it has no style prefix.
    pub fn parse_with_default(text: &str, fallback: PatternStyle) -> Result<Pattern, PatternError> {
        let b = text.as_bytes();
        let (style, body) =
            if b.len() > 2 && b[2] == b':' && b[..2].iter().all(u8::is_ascii_alphanumeric) {
                let style = match &text[..2] {
                    "fm" => PatternStyle::Fnmatch,
                    "sh" => PatternStyle::Shell,
                    "re" => PatternStyle::Regex,
                    "pp" => PatternStyle::PathPrefix,
                    "pf" => PatternStyle::PathFull,
                    other => return Err(PatternError::UnknownStyle(other.to_string())),
                };
                (style, &text[3..])
            } else {
                (fallback, text)
            };
        let compile = |re: String| {
            Regex::new(&re).map_err(|source| PatternError::Regex {
                pattern: text.to_string(),
                source,
            })
        };
        let mut pattern = Pattern {
            style,
            original: text.to_string(),
            literal: Vec::new(),
            regex: None,
        };
        match style {
            PatternStyle::PathFull => {
                pattern.literal = normpath(body).trim_start_matches('/').as_bytes().to_vec();
            }
            PatternStyle::PathPrefix => {
                let mut p = normpath(body).trim_end_matches('/').to_string();
                p.push('/');
                pattern.literal = p.trim_start_matches('/').as_bytes().to_vec();
            }
            PatternStyle::Fnmatch | PatternStyle::Shell => {
                let shell = style == PatternStyle::Shell;
                let suffix = if shell { "/**/*" } else { "/*" };
                let full = if body.ends_with('/') {
                    format!("{}{suffix}/", normpath(body).trim_end_matches('/'))
                } else {
                    format!("{}{suffix}", normpath(body))
                };
                let full = full.trim_start_matches('/');
                pattern.regex = Some(compile(glob_to_regex(full, shell))?);
            }
            PatternStyle::Regex => pattern.regex = Some(compile(body.to_string())?),
        }
        Ok(pattern)
    }

    /// The style of this pattern.
    pub fn style(&self) -> PatternStyle {
        self.style
    }

    /// The pattern as given.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// Whether `path` (a filesystem path; leading slashes are ignored) matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        let start = path.iter().position(|&c| c != b'/').unwrap_or(path.len());
        let path = &path[start..];
        let with_sep = || [path, b"/"].concat();
        match self.style {
            PatternStyle::PathFull => path == self.literal.as_slice(),
            PatternStyle::PathPrefix => with_sep().starts_with(&self.literal),
            PatternStyle::Fnmatch | PatternStyle::Shell => {
                self.regex.as_ref().is_some_and(|r| r.is_match(&with_sep()))
            }
            PatternStyle::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(path)),
        }
    }
}

/// Escapes one byte for a `(?-u)` regex.
fn push_byte(out: &mut String, c: u8) {
    if c.is_ascii_alphanumeric() || c == b'_' {
        out.push(c as char);
    } else {
        out.push_str(&format!("\\x{c:02x}"));
    }
}

/// Python's `fnmatch.translate` (`shell == false`) or borg's `shellpattern.translate`
/// (`shell == true`) as an anchored byte regex.
fn glob_to_regex(pat: &str, shell: bool) -> String {
    let p = pat.as_bytes();
    let n = p.len();
    let mut out = String::from("(?s-u)^");
    let mut i = 0;
    while i < n {
        let c = p[i];
        i += 1;
        match c {
            b'*' if shell => {
                if i + 1 < n && p[i] == b'*' && p[i + 1] == b'/' {
                    out.push_str("(?:[^/]*/)*");
                    i += 2;
                } else {
                    out.push_str("[^/]*");
                }
            }
            b'*' => out.push_str(".*"),
            b'?' if shell => out.push_str("[^/]"),
            b'?' => out.push('.'),
            b'[' => {
                let mut j = i;
                if j < n && p[j] == b'!' {
                    j += 1;
                }
                if j < n && p[j] == b']' {
                    j += 1;
                }
                while j < n && p[j] != b']' {
                    j += 1;
                }
                if j >= n {
                    out.push_str("\\[");
                } else {
                    let stuff = &p[i..j];
                    i = j + 1;
                    out.push('[');
                    let mut rest = stuff;
                    if let Some((&b'!', tail)) = stuff.split_first() {
                        out.push('^');
                        rest = tail;
                    }
                    for &b in rest {
                        // ranges keep their dash; everything else is a literal byte
                        if b == b'-' {
                            out.push('-');
                        } else {
                            push_byte(&mut out, b);
                        }
                    }
                    out.push(']');
                }
            }
            other => push_byte(&mut out, other),
        }
    }
    out.push('$');
    out
}

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

    #[test]
    fn styles() {
        let fm = Pattern::parse("/tmp/*.o").unwrap();
        assert!(fm.matches(b"/tmp/x.o"));
        assert!(fm.matches(b"tmp/sub/x.o"));
        assert!(!fm.matches(b"tmp/x.c"));
        let fm_dir = Pattern::parse("home/").unwrap();
        assert!(fm_dir.matches(b"home/a"));
        assert!(!fm_dir.matches(b"home"));
        let sh = Pattern::parse("sh:a/*/c").unwrap();
        assert!(sh.matches(b"a/b/c"));
        assert!(sh.matches(b"a/b/c/d"));
        assert!(!sh.matches(b"a/b/x/c"));
        let sh2 = Pattern::parse("sh:**/*.log").unwrap();
        assert!(sh2.matches(b"x/y/z.log"));
        assert!(sh2.matches(b"z.log"));
        let re = Pattern::parse("re:\\.bak$").unwrap();
        assert!(re.matches(b"/a/b.bak"));
        assert!(!re.matches(b"/a/b.bak2"));
        let pp = Pattern::parse("pp:/a/b").unwrap();
        assert!(pp.matches(b"a/b"));
        assert!(pp.matches(b"a/b/c"));
        assert!(!pp.matches(b"a/bc"));
        let pf = Pattern::parse("pf:a/b").unwrap();
        assert!(pf.matches(b"/a/b"));
        assert!(!pf.matches(b"a/b/c"));
        let cls = Pattern::parse("[!x]y").unwrap();
        assert!(cls.matches(b"ay"));
        assert!(!cls.matches(b"xy"));
        assert!(matches!(
            Pattern::parse("zz:x"),
            Err(PatternError::UnknownStyle(_))
        ));
        assert!(Pattern::parse("re:(").is_err());
    }
}
