//! Borg's local directories and key-file naming (borg 1.2.4 `borg/helpers/fs.py`
//! `get_base_dir`, `get_config_dir`, `get_keys_dir`, `get_security_dir`;
//! `Location.to_key_filename` in `borg/helpers/parseformat.py`; `KeyfileKey.find_key` /
//! `_get_new_target_in_keys_dir` in `borg/crypto/key.py`).
//!
//! All functions take an environment lookup so callers and tests can inject one;
//! [`std_env`] reads the process environment. Nothing here creates directories (borg's
//! `ensure_dir` is the caller's business, see [`ensure_dir`]).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::keyblob::FILE_ID;

/// Environment lookup function type.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Process environment lookup.
pub fn std_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// `BORG_BASE_DIR`, else `HOME`, else the home of `USER` (from `/etc/passwd`), else `~`.
pub fn base_dir(env: Env) -> PathBuf {
    if let Some(d) = non_empty(env("BORG_BASE_DIR")).or_else(|| non_empty(env("HOME"))) {
        return PathBuf::from(d);
    }
    if let Some(user) = env("USER") {
        if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
            for line in passwd.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() >= 6 && f[0] == user {
                    return PathBuf::from(f[5]);
                }
            }
        }
    }
    PathBuf::from("~")
}

/// `BORG_CONFIG_DIR`, else `$XDG_CONFIG_HOME/borg` (only if `BORG_BASE_DIR` is unset), else
/// `<base>/.config/borg`.
pub fn config_dir(env: Env) -> PathBuf {
    if let Some(d) = env("BORG_CONFIG_DIR") {
        return PathBuf::from(d);
    }
    let mut home = base_dir(env).join(".config");
    if non_empty(env("BORG_BASE_DIR")).is_none() {
        if let Some(x) = env("XDG_CONFIG_HOME") {
            home = PathBuf::from(x);
        }
    }
    home.join("borg")
}

/// `BORG_KEYS_DIR`, else `<config>/keys`.
pub fn keys_dir(env: Env) -> PathBuf {
    match env("BORG_KEYS_DIR") {
        Some(d) => PathBuf::from(d),
        None => config_dir(env).join("keys"),
    }
}

/// `BORG_SECURITY_DIR`, else `<config>/security`; plus `/<repo id hex>` if given.
pub fn security_dir(env: Env, repository_id_hex: Option<&str>) -> PathBuf {
    let base = match env("BORG_SECURITY_DIR") {
        Some(d) => PathBuf::from(d),
        None => config_dir(env).join("security"),
    };
    match repository_id_hex {
        Some(id) if !id.is_empty() => base.join(id),
        _ => base,
    }
}

/// Path of the local nonce file of a repository.
pub fn nonce_file(env: Env, repository_id: &[u8]) -> PathBuf {
    security_dir(env, Some(&hex::encode(repository_id))).join("nonce")
}

/// Path of the `tam_required` marker file of a repository (borg `tam_required_file`).
pub fn tam_required_file(env: Env, repository_id: &[u8]) -> PathBuf {
    security_dir(env, Some(&hex::encode(repository_id))).join("tam_required")
}

/// borg's fallback for key blobs without a `tam_required` field (`key.py` `tam_required()`):
/// true iff the security dir's `tam_required` file exists. Pass the result as
/// `tam_required_default` to [`crate::Key::from_key_text`].
pub fn tam_required_default(env: Env, repository_id: &[u8]) -> bool {
    tam_required_file(env, repository_id).is_file()
}

/// Create a directory (and parents) with mode 0700 like borg's `ensure_dir`.
pub fn ensure_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

/// borg's `re.sub(r'[^\w]', '_', s)`: keep Unicode word characters, replace the rest.
fn word_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Base file name borg gives a new key file (`Location.to_key_filename`): the repository
/// path with non-word characters replaced by `_` and `_` stripped at both ends; for remote
/// repositories (`host = Some(..)`) prefixed by `<host>__`; truncated to 100 characters.
pub fn key_filename(path: &str, host: Option<&str>) -> String {
    let mut name = word_chars(path).trim_matches('_').to_string();
    if let Some(h) = host {
        name = format!("{}__{}", word_chars(h), name);
    }
    if name.chars().count() > 100 {
        name = name.chars().take(100).collect();
    }
    name
}

/// Path for a new key file (`_get_new_target_in_keys_dir`): `<keys_dir>/<name>`, or the first
/// free `<name>.2`, `<name>.3`, ... if taken.
pub fn new_keyfile_target(keys_dir: &Path, name: &str) -> PathBuf {
    let first = keys_dir.join(name);
    let mut path = first.clone();
    let mut i = 1;
    while path.exists() {
        i += 1;
        path = keys_dir.join(format!("{name}.{i}"));
    }
    path
}

/// Check that `path` is a key file for `repository_id` (borg `sanity_check`):
/// `Ok(true)` if it is, `Ok(false)` if it is a key file of another repository or not a key
/// file at all.
pub fn keyfile_matches(path: &Path, repository_id: &[u8]) -> Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let want = format!("{FILE_ID} {}", hex::encode(repository_id));
    let mut buf = vec![0u8; want.len()];
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }
    Ok(got == buf.len() && buf == want.as_bytes())
}

/// Find an existing key file for `repository_id`: `BORG_KEY_FILE` if set (must match, else
/// [`Error::KeyfileMismatch`]/[`Error::InvalidKey`]), otherwise the first matching file in the
/// keys directory (directory order, like `os.listdir`). `Ok(None)` if none found.
pub fn find_keyfile(env: Env, repository_id: &[u8]) -> Result<Option<PathBuf>> {
    if let Some(p) = non_empty(env("BORG_KEY_FILE")) {
        let p = std::path::absolute(&p).unwrap_or_else(|_| PathBuf::from(&p));
        if keyfile_matches(&p, repository_id)? {
            return Ok(Some(p));
        }
        return Err(Error::KeyfileMismatch {
            repository: hex::encode(repository_id),
            path: p.display().to_string(),
        });
    }
    let dir = keys_dir(env);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in rd.flatten() {
        let p = entry.path();
        if p.is_file() && keyfile_matches(&p, repository_id).unwrap_or(false) {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_follow_borg_precedence() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/u".to_string()),
            "XDG_CONFIG_HOME" => Some("/xdg".to_string()),
            _ => None,
        };
        assert_eq!(config_dir(&env), PathBuf::from("/xdg/borg"));
        assert_eq!(
            security_dir(&env, Some("ab")),
            PathBuf::from("/xdg/borg/security/ab")
        );
        let env2 = |k: &str| match k {
            "BORG_BASE_DIR" => Some("/b".to_string()),
            "XDG_CONFIG_HOME" => Some("/xdg".to_string()),
            _ => None,
        };
        assert_eq!(keys_dir(&env2), PathBuf::from("/b/.config/borg/keys"));
        let env3 = |k: &str| match k {
            "BORG_SECURITY_DIR" => Some("/s".to_string()),
            "BORG_KEYS_DIR" => Some("/k".to_string()),
            _ => None,
        };
        assert_eq!(nonce_file(&env3, &[1, 2]), PathBuf::from("/s/0102/nonce"));
        assert_eq!(keys_dir(&env3), PathBuf::from("/k"));
    }

    #[test]
    fn key_file_names() {
        assert_eq!(
            key_filename("/home/user/repo.borg", None),
            "home_user_repo_borg"
        );
        assert_eq!(
            key_filename("/srv/b", Some("host.example")),
            "host_example__srv_b"
        );
        assert_eq!(key_filename(&"x".repeat(150), None).len(), 100);
    }
}
