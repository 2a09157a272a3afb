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
}

impl SecurityDir {
    /// The directory for `repository_id` (created if missing, like borg's `get_security_dir`).
    pub fn open(env: Env, repository_id: &[u8; 32]) -> Result<SecurityDir> {
        let dir = paths::security_dir(env, Some(&hex::encode(repository_id)));
        paths::ensure_dir(&dir)?;
        Ok(SecurityDir { dir })
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
    pub fn assert_secure(
        &self,
        location: &str,
        manifest: &Manifest,
        key: &Key,
        warn_if_unencrypted: bool,
        confirm: Confirm<'_>,
    ) -> Result<()> {
        let timestamp = manifest.timestamp.as_deref().unwrap_or("");
        if !key.key_type().is_encrypted() && !self.known() {
            let question = "Warning: Attempting to access a previously unknown unencrypted repository!\nDo you want to continue? [yN] ";
            if warn_if_unencrypted
                && !confirm(question, "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK")
            {
                return Err(Error::AccessAborted("Cache initialization aborted".into()));
            }
            self.save(location, key.key_type(), timestamp)?;
        }
        if let Some(previous) = self.read("location") {
            if !previous.is_empty() && previous != location {
                let question = format!(
                    "Warning: The repository at location {location} was previously located at {previous}\nDo you want to continue? [yN] "
                );
                if !confirm(&question, "BORG_RELOCATED_REPO_ACCESS_IS_OK") {
                    return Err(Error::AccessAborted("Repository access aborted".into()));
                }
                self.write("location", location)?;
            }
        }
        if self.known()
            && self.read("key-type").as_deref()
                != Some(key.key_type().type_byte().to_string().as_str())
        {
            return Err(Error::EncryptionMethodMismatch);
        }
        let seen = self.read("manifest-timestamp").unwrap_or_default();
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
