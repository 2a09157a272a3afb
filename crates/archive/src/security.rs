//! The client-side security database (borg 1.2 `cache.SecurityManager`; `internals/security.rst`,
//! "Offline authentication" and "Replay attacks").
//!
//! For every repository ID, `<security dir>/<id hex>/` holds `location` (the canonical
//! location last used), `key-type` (the envelope type byte, decimal), `manifest-timestamp`
//! (the newest manifest timestamp seen), `nonce` (see `rborg_crypto::nonces`) and, for
//! repositories that require TAMs, an empty `tam_required` file. borg and rborg share it, so
//! either notices when the other saw a newer manifest (a replay), another key type (a swapped
//! repository) or another location (a moved repository).

use std::path::{Path, PathBuf};

use rborg_crypto::paths::{self, Env};
use rborg_crypto::{Key, KeyType};

use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// Asks the user a yes/no question; `env_override` names borg's environment variable that
/// answers it non-interactively. The library never prompts itself.
pub type Confirm<'a> = &'a mut dyn FnMut(&str, &str) -> bool;

/// The security directory of one repository.
#[derive(Debug, Clone)]
pub struct SecurityDir {
    dir: PathBuf,
    /// The repository's cache `config`: borg's `_assert_secure(cache_config=...)` also
    /// consults the location, key type and manifest timestamp recorded there.
    cache_config: PathBuf,
}

impl SecurityDir {
    /// The directory for `repository_id` (created if missing, like borg's `get_security_dir`).
    pub fn open(env: Env, repository_id: &[u8; 32]) -> Result<SecurityDir> {
        let dir = paths::security_dir(env, Some(&hex::encode(repository_id)));
        paths::ensure_dir(&dir)?;
        let cache_config = crate::cache::repository_cache_dir(env, repository_id).join("config");
        Ok(SecurityDir { dir, cache_config })
    }

    /// Path of the directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The file holding the local nonce reservation.
    pub fn nonce_file(&self) -> PathBuf {
        self.dir.join("nonce")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.file(name)).ok()
    }

    /// The location this client last used the repository at (the `location` file), for
    /// borg's `security: read previous location` debug line.
    pub fn previous_location(&self) -> Option<String> {
        self.read("location")
    }

    /// The `location` file's path (named in borg's "not found" debug line).
    pub fn location_file(&self) -> PathBuf {
        self.file("location")
    }

    /// Records `location` as the cache config's `previous_location` (if there is a cache).
    fn set_cache_location(&self, location: &str) -> Result<()> {
        let Ok(text) = std::fs::read_to_string(&self.cache_config) else {
            return Ok(());
        };
        let Ok(mut ini) = crate::cache::config::Ini::parse(&text) else {
            return Ok(());
        };
        ini.set("cache", "previous_location", location);
        let tmp = self.cache_config.with_extension("tmp");
        std::fs::write(&tmp, ini.to_text())
            .and_then(|()| std::fs::rename(&tmp, &self.cache_config))
            .map_err(|e| Error::io(format!("writing {}", self.cache_config.display()), e))
    }

    /// A `[cache]` value of the cache config (`previous_location`, `key_type`,
    /// `timestamp`), if the cache exists and has it non-empty.
    fn cache_value(&self, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(&self.cache_config).ok()?;
        let ini = crate::cache::config::Ini::parse(&text).ok()?;
        ini.get("cache", key)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    fn write(&self, name: &str, content: &str) -> Result<()> {
        let target = self.file(name);
        let tmp = self.file(&format!("{name}.tmp"));
        std::fs::write(&tmp, content)
            .and_then(|()| std::fs::rename(&tmp, &target))
            .map_err(|e| Error::io(format!("writing {}", target.display()), e))
    }

    /// Whether all three state files exist (borg's `known`).
    pub fn known(&self) -> bool {
        ["key-type", "location", "manifest-timestamp"]
            .iter()
            .all(|f| self.file(f).exists())
    }

    /// Remembers location, key type and manifest timestamp (borg's `save`).
    pub fn save(&self, location: &str, key_type: KeyType, manifest_timestamp: &str) -> Result<()> {
        self.write("location", location)?;
        self.write("key-type", &key_type.type_byte().to_string())?;
        self.write("manifest-timestamp", manifest_timestamp)
    }

    /// Whether the `tam_required` marker exists.
    pub fn tam_required(&self) -> bool {
        self.file("tam_required").exists()
    }

    /// Creates or removes the `tam_required` marker.
    pub fn set_tam_required(&self, required: bool) -> Result<()> {
        let f = self.file("tam_required");
        let res = if required {
            std::fs::write(&f, b"")
        } else {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        res.map_err(|e| Error::io(format!("updating {}", f.display()), e))
    }

    /// borg's `assert_secure`: refuses a swapped key type or a replayed manifest, asks before
    /// using a relocated repository or an unknown unencrypted one, and remembers the repository
    /// when it was unknown. `warn_if_unencrypted` is false only while initializing.
    /// `logically_encrypted` is borg's `key.logically_encrypted`
    /// ([`crate::keys::UnlockedKey::logically_encrypted`]): a repokey with an empty passphrase
    /// protects nothing, so it is asked about like an unencrypted repository.
    pub fn assert_secure(
        &self,
        location: &str,
        manifest: &Manifest,
        key: &Key,
        logically_encrypted: bool,
        warn_if_unencrypted: bool,
        confirm: Confirm<'_>,
    ) -> Result<()> {
        let timestamp = manifest.timestamp.as_deref().unwrap_or("");
        if !logically_encrypted && !self.known() {
            let question = "Warning: Attempting to access a previously unknown unencrypted repository!\nDo you want to continue? [yN] ";
            if warn_if_unencrypted
                && !confirm(question, "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK")
            {
                return Err(Error::AccessAborted("Cache initialization aborted".into()));
            }
            self.save(location, key.key_type(), timestamp)?;
        }
        // borg reconciles a disagreeing security dir and cache by taking the cache's location
        let previous = match (self.read("location"), self.cache_value("previous_location")) {
            (p, Some(c)) if p.as_deref() != Some(c.as_str()) => Some(c),
            (p, _) => p,
        };
        if let Some(previous) = previous {
            if !previous.is_empty() && previous != location {
                let question = format!(
                    "Warning: The repository at location {location} was previously located at {previous}\nDo you want to continue? [yN] "
                );
                if !confirm(&question, "BORG_RELOCATED_REPO_ACCESS_IS_OK") {
                    return Err(Error::AccessAborted("Repository access aborted".into()));
                }
                // borg adapts the security dir and the cache config immediately
                self.write("location", location)?;
                self.set_cache_location(location)?;
            }
        }
        let my_type = key.key_type().type_byte().to_string();
        if self.known() && self.read("key-type").as_deref() != Some(my_type.as_str()) {
            return Err(Error::EncryptionMethodMismatch);
        }
        if self.cache_value("key_type").is_some_and(|t| t != my_type) {
            return Err(Error::EncryptionMethodMismatch);
        }
        let seen = self.read("manifest-timestamp").unwrap_or_default();
        let seen = match self.cache_value("timestamp") {
            Some(c) if c > seen => c,
            _ => seen,
        };
        if !seen.is_empty() && seen.as_str() > timestamp {
            return Err(if key.key_type() == KeyType::Plaintext {
                Error::RepositoryIdNotUnique
            } else {
                Error::RepositoryReplay
            });
        }
        if !self.known() {
            self.save(location, key.key_type(), timestamp)?;
        }
        Ok(())
    }

    /// Records a manifest this client wrote or verified, so an older one is detected later.
    pub fn remember_manifest(
        &self,
        location: &str,
        key_type: KeyType,
        manifest: &Manifest,
    ) -> Result<()> {
        self.save(
            location,
            key_type,
            manifest.timestamp.as_deref().unwrap_or(""),
        )
    }
}
