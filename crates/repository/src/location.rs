//! Repository locations as borg 1.2 parses them (`borg.helpers.parseformat.Location`).
//!
//! A location names a repository and, optionally, an archive in it:
//!
//! | form | example |
//! |---|---|
//! | local path | `/srv/repo`, `relative/repo`, `repo::archive` |
//! | `file://` URL | `file:///srv/repo::archive` |
//! | `ssh://` URL | `ssh://user@host:2222/srv/repo`, `ssh://host/./relative`, `ssh://[::1]/repo` |
//! | scp-style | `user@host:/srv/repo`, `host:relative/repo::archive` |
//! | from `BORG_REPO` | `::`, `::archive`, or an empty string |
//!
//! The rules follow borg's regular expressions: the path may hold single colons but never `::`
//! (which separates the archive name), an archive name never holds `/`, and paths are normalised
//! like Python's `os.path.normpath`, except that a leading `/./` (borg's marker for "relative to the
//! remote working directory") is kept.
//!
//! ```
//! use rborg_repository::location::{Location, Protocol};
//! let loc = Location::parse("ssh://backup@nas:2222/srv/repo::monday").unwrap();
//! assert_eq!(loc.proto, Protocol::Ssh);
//! assert_eq!(loc.host.as_deref(), Some("nas"));
//! assert_eq!(loc.port, Some(2222));
//! assert_eq!(loc.path, "/srv/repo");
//! assert_eq!(loc.archive.as_deref(), Some("monday"));
//! ```

use std::fmt;

/// How a repository is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A directory on this machine.
    File,
    /// `borg serve` on another host, reached over SSH.
    Ssh,
}

/// A parsed repository location, optionally with an archive name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Local directory or remote repository.
    pub proto: Protocol,
    /// SSH user, if given.
    pub user: Option<String>,
    /// SSH host without IPv6 brackets.
    pub host: Option<String>,
    /// SSH port, if given.
    pub port: Option<u16>,
    /// The repository path, normalised.
    pub path: String,
    /// The archive name after `::`, if given.
    pub archive: Option<String>,
    /// The text the location was parsed from (after `BORG_REPO` substitution).
    pub processed: String,
}

/// The location text matched none of borg's location forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid location format: \"{0}\"")]
pub struct InvalidLocation(pub String);

impl Location {
    /// Parses `text`, falling back to the `BORG_REPO` environment variable for `::`, `::archive`
    /// and the empty string, exactly as borg does.
    pub fn parse(text: &str) -> Result<Location, InvalidLocation> {
        Self::parse_with_env(text, std::env::var("BORG_REPO").ok().as_deref())
    }

    /// Like [`Location::parse`], with the value of `BORG_REPO` given explicitly.
    pub fn parse_with_env(
        text: &str,
        borg_repo: Option<&str>,
    ) -> Result<Location, InvalidLocation> {
        if let Some(loc) = parse_repo_and_archive(text) {
            return Ok(loc);
        }
        // borg's env_re: "::" alone, or an optional "::archive" (possibly empty text).
        let archive = if text == "::" || text.is_empty() {
            None
        } else if let Some(name) = text.strip_prefix("::") {
            if name.contains('/') {
                return Err(InvalidLocation(text.to_string()));
            }
            Some(name.to_string())
        } else {
            return Err(InvalidLocation(text.to_string()));
        };
        let repo = borg_repo.ok_or_else(|| InvalidLocation(text.to_string()))?;
        let mut loc =
            parse_repo_and_archive(repo).ok_or_else(|| InvalidLocation(repo.to_string()))?;
        if let Some(name) = archive {
            loc.processed = format!("{repo}::{name}");
            loc.archive = Some(name);
        }
        Ok(loc)
    }

    /// The location without its archive part, as a canonical string borg would accept.
    pub fn canonical_path(&self) -> String {
        match self.proto {
            Protocol::File => self.path.clone(),
            Protocol::Ssh => {
                let path = if self.path.starts_with('~') {
                    format!("/{}", self.path)
                } else if !self.path.starts_with('/') {
                    format!("/./{}", self.path)
                } else {
                    self.path.clone()
                };
                let host = self.host.as_deref().unwrap_or("");
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.to_string()
                };
                format!(
                    "ssh://{}{}{}{}",
                    self.user
                        .as_deref()
                        .map(|u| format!("{u}@"))
                        .unwrap_or_default(),
                    host,
                    self.port.map(|p| format!(":{p}")).unwrap_or_default(),
                    path
                )
            }
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.processed)
    }
}

/// Splits `text` into the part before `::` and the archive name after it, following borg's rule
/// that the path never contains `::` and the archive name never contains `/`.
fn split_archive(text: &str) -> Option<(&str, Option<&str>)> {
    // The first "::" outside an IPv6 host's brackets starts the archive name.
    let bytes = text.as_bytes();
    let mut in_brackets = false;
    let separator = (0..bytes.len()).find(|&i| {
        match bytes[i] {
            b'[' => in_brackets = true,
            b']' => in_brackets = false,
            _ => {}
        }
        !in_brackets && bytes[i] == b':' && bytes.get(i + 1) == Some(&b':')
    });
    match separator {
        None => Some((text, None)),
        Some(pos) => {
            let archive = &text[pos + 2..];
            if archive.is_empty() || archive.contains('/') {
                return None;
            }
            Some((&text[..pos], Some(archive)))
        }
    }
}

fn parse_repo_and_archive(text: &str) -> Option<Location> {
    let (repo, archive) = split_archive(text)?;
    if repo.is_empty() {
        return None;
    }
    let mut loc = if let Some(rest) = repo.strip_prefix("ssh://") {
        parse_ssh_url(rest)?
    } else if let Some(rest) = repo.strip_prefix("file://") {
        // file_path_re: an optional server name, then a slash; the whole is the path.
        if !rest.contains('/') {
            return None;
        }
        file_location(rest)
    } else {
        parse_scp_style(repo)?
    };
    loc.archive = archive.map(str::to_string);
    loc.processed = text.to_string();
    Some(loc)
}

fn file_location(path: &str) -> Location {
    Location {
        proto: Protocol::File,
        user: None,
        host: None,
        port: None,
        path: normpath_special(path),
        archive: None,
        processed: String::new(),
    }
}

/// `[user@]host` parsing shared by the URL and scp forms; returns (user, host-with-brackets, rest).
fn split_user_host(text: &str) -> Option<(Option<&str>, &str, &str)> {
    let (user, rest) = match text.find(['@', ':', '/']) {
        Some(i) if text.as_bytes()[i] == b'@' && i > 0 => (Some(&text[..i]), &text[i + 1..]),
        _ => (None, text),
    };
    let host_len = if rest.starts_with('[') {
        let end = rest.find(']')?;
        let inner = &rest[1..end];
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        end + 1
    } else {
        let end = rest.find([':', '/']).unwrap_or(rest.len());
        if end == 0 || rest[..end].ends_with(']') {
            return None;
        }
        end
    };
    Some((user, &rest[..host_len], &rest[host_len..]))
}

fn parse_ssh_url(text: &str) -> Option<Location> {
    let (user, host, rest) = split_user_host(text)?;
    let (port, path) = match rest.strip_prefix(':') {
        Some(after) => {
            let digits = after.find('/').unwrap_or(after.len());
            if digits == 0 {
                return None;
            }
            (Some(after[..digits].parse::<u16>().ok()?), &after[digits..])
        }
        None => (None, rest),
    };
    if !path.starts_with('/') || path.len() < 2 {
        return None;
    }
    Some(Location {
        proto: Protocol::Ssh,
        user: user.map(str::to_string),
        host: Some(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        ),
        port,
        path: normpath_special(path),
        archive: None,
        processed: String::new(),
    })
}

fn parse_scp_style(text: &str) -> Option<Location> {
    let path_ok = |p: &str| {
        !(p.is_empty() || p.starts_with(':') || p.starts_with("//") || p.starts_with("ssh://"))
    };
    if let Some((user, host, rest)) = split_user_host(text) {
        if let Some(path) = rest.strip_prefix(':') {
            if path_ok(path) {
                return Some(Location {
                    proto: Protocol::Ssh,
                    user: user.map(str::to_string),
                    host: Some(
                        host.trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string(),
                    ),
                    port: None,
                    path: normpath_special(path),
                    archive: None,
                    processed: String::new(),
                });
            }
        }
    }
    path_ok(text).then(|| file_location(text))
}

/// Python's `posixpath.normpath`, keeping borg's leading `/./` marker for relative remote paths.
fn normpath_special(path: &str) -> String {
    let relative_marker = path.starts_with("/./");
    let normalized = normpath(path);
    if relative_marker {
        format!("/.{normalized}")
    } else {
        normalized
    }
}

/// Python's `posixpath.normpath`.
fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let initial_slashes = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if initial_slashes == 0 && (parts.is_empty() || parts.last() == Some(&"..")) {
                    parts.push("..");
                } else if !parts.is_empty() {
                    parts.pop();
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    let result = format!("{}{}", "/".repeat(initial_slashes), joined);
    if result.is_empty() {
        ".".to_string()
    } else {
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Location {
        Location::parse_with_env(text, None).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn ssh_urls() {
        let l = p("ssh://user@host:1234/some/path::archive");
        assert_eq!(
            (
                l.proto,
                l.user.as_deref(),
                l.host.as_deref(),
                l.port,
                l.path.as_str(),
                l.archive.as_deref()
            ),
            (
                Protocol::Ssh,
                Some("user"),
                Some("host"),
                Some(1234),
                "/some/path",
                Some("archive")
            )
        );
        let l = p("ssh://user@[2001:db8::1]:1234/some/path");
        assert_eq!(l.host.as_deref(), Some("2001:db8::1"));
        assert_eq!(
            l.canonical_path(),
            "ssh://user@[2001:db8::1]:1234/some/path"
        );
        let l = p("ssh://host/./relative");
        assert_eq!(l.path, "/./relative");
        let l = p("ssh://host/~/repo");
        assert_eq!(l.path, "/~/repo");
    }

    #[test]
    fn scp_style_and_local() {
        let l = p("user@host:/some/path::archive");
        assert_eq!(
            (l.proto, l.host.as_deref(), l.path.as_str()),
            (Protocol::Ssh, Some("host"), "/some/path")
        );
        let l = p("host:relative/path");
        assert_eq!((l.proto, l.path.as_str()), (Protocol::Ssh, "relative/path"));
        assert_eq!(l.canonical_path(), "ssh://host/./relative/path");
        let l = p("/some/absolute/path::archive");
        assert_eq!(
            (l.proto, l.path.as_str(), l.archive.as_deref()),
            (Protocol::File, "/some/absolute/path", Some("archive"))
        );
        let l = p("some/relative/path");
        assert_eq!(
            (l.proto, l.path.as_str()),
            (Protocol::File, "some/relative/path")
        );
        let l = p("repo::arch");
        assert_eq!(
            (l.proto, l.path.as_str(), l.archive.as_deref()),
            (Protocol::File, "repo", Some("arch"))
        );
        let l = p("/tmp//a/./b/../c");
        assert_eq!(l.path, "/tmp/a/c");
        let l = p("file:///some/path::archive");
        assert_eq!((l.proto, l.path.as_str()), (Protocol::File, "/some/path"));
    }

    #[test]
    fn borg_repo_environment() {
        let l = Location::parse_with_env("::arch", Some("/srv/repo")).unwrap();
        assert_eq!(
            (l.path.as_str(), l.archive.as_deref()),
            ("/srv/repo", Some("arch"))
        );
        let l = Location::parse_with_env("", Some("ssh://h/r")).unwrap();
        assert_eq!((l.proto, l.archive), (Protocol::Ssh, None));
        assert!(Location::parse_with_env("::", None).is_err());
    }

    #[test]
    fn invalid() {
        for bad in [
            "ssh://host",
            "ssh://host:/x",
            "repo::a/b",
            "//x",
            ":x",
            "ssh://host:99999/x",
        ] {
            assert!(Location::parse_with_env(bad, None).is_err(), "{bad}");
        }
    }
}
