//! Finding and unlocking a repository's key (borg 1.2 `crypto/key.py`: `key_factory`,
//! `detect`, `find_key`, `key_creator`), for all seven modes.
//!
//! The key type comes from the first byte of the manifest envelope. `repokey` and the
//! `authenticated` modes keep their passphrase-protected key blob in the repository config,
//! `keyfile` modes in a `BORG_KEY` file in the keys directory, `none` has no key at all.
//! Passphrases come from a [`PassphraseProvider`] so the library never needs a terminal; the
//! binary supplies one that reads borg's environment variables and prompts like borg.

use std::path::PathBuf;

use rborg_crypto::paths::{self, Env};
use rborg_crypto::{Key, KeyStorage, KeyType, Passphrase};
use rborg_repository::Repository;

use crate::error::{Error, Result};

/// How many times borg asks again after a wrong interactive passphrase.
const PASSPHRASE_RETRIES: usize = 3;

/// Where passphrases come from.
pub trait PassphraseProvider {
    /// A passphrase given non-interactively (`BORG_PASSPHRASE`, `BORG_PASSCOMMAND`,
    /// `BORG_PASSPHRASE_FD`), if any. A wrong one is final (borg's `PassphraseWrong`).
    fn environment_passphrase(&mut self) -> Result<Option<Passphrase>>;
    /// Asks the user with `prompt`; fails with `NoPassphrase` when nobody can answer.
    fn ask(&mut self, prompt: &str) -> Result<Passphrase>;
    /// A passphrase for a new key (`BORG_NEW_PASSPHRASE`, the environment, or asking twice).
    fn new_passphrase(&mut self) -> Result<Passphrase>;
}

/// A provider that only reads borg's environment variables and never asks.
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvironmentPassphrase;

impl PassphraseProvider for EnvironmentPassphrase {
    fn environment_passphrase(&mut self) -> Result<Option<Passphrase>> {
        Ok(Passphrase::from_env()?)
    }
    fn ask(&mut self, _prompt: &str) -> Result<Passphrase> {
        let set = |v: &str| {
            if std::env::var_os(v).is_some() {
                "set"
            } else {
                "not set"
            }
        };
        Err(rborg_crypto::Error::NoPassphrase(format!(
            "BORG_PASSPHRASE is {}. BORG_PASSCOMMAND is {}. Interactive password query failed.",
            set("BORG_PASSPHRASE"),
            set("BORG_PASSCOMMAND")
        ))
        .into())
    }
    fn new_passphrase(&mut self) -> Result<Passphrase> {
        match Passphrase::new_from_env()? {
            Some(p) => Ok(p),
            None => self.ask("Enter new passphrase: "),
        }
    }
}

/// Where a repository's key blob was found, so commands like `key export` and
/// `key change-passphrase` can rewrite it in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// No key (mode `none`).
    None,
    /// The repository config's `key` entry.
    Repository,
    /// A key file.
    File(PathBuf),
}

/// An unlocked key with the passphrase that opened it and where it lives.
pub struct UnlockedKey {
    /// The key material.
    pub key: Key,
    /// The passphrase that opened it (empty for `none`).
    pub passphrase: Passphrase,
    /// Where the key blob is stored.
    pub location: KeyLocation,
    /// The stored key text (base64 of the encrypted blob), if any.
    pub text: Option<String>,
}

/// Finds and unlocks the key of `repository`, whose manifest envelope is `manifest_cdata`
/// (borg's `key_factory` + `detect`). `env` is the environment lookup used for the keys directory.
pub fn load_key(
    repository: &mut dyn Repository,
    manifest_cdata: &[u8],
    provider: &mut dyn PassphraseProvider,
    env: Env,
) -> Result<UnlockedKey> {
    let key_type = KeyType::from_manifest(manifest_cdata)?;
    let repo_id = repository.id();
    let (location, text) = match key_type.storage() {
        KeyStorage::None => {
            return Ok(UnlockedKey {
                key: Key::plaintext(repo_id),
                passphrase: Passphrase::new(""),
                location: KeyLocation::None,
                text: None,
            })
        }
        KeyStorage::Repository => {
            let text = String::from_utf8_lossy(&repository.load_key()?).into_owned();
            (KeyLocation::Repository, text)
        }
        KeyStorage::Keyfile => {
            let path = paths::find_keyfile(env, &repo_id)?.ok_or_else(|| {
                rborg_crypto::Error::KeyfileNotFound {
                    repository: hex::encode(repo_id),
                    keys_dir: paths::keys_dir(env).display().to_string(),
                }
            })?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?;
            (KeyLocation::File(path), text)
        }
    };
    let open = |pp: &Passphrase| -> rborg_crypto::Result<Key> {
        match &location {
            KeyLocation::File(_) => Key::from_keyfile_str(key_type, &text, pp),
            _ => Key::from_repokey_string(key_type, &text, pp),
        }
    };
    let prompt = match &location {
        KeyLocation::File(path) => format!("Enter passphrase for key {}: ", path.display()),
        _ => format!(
            "Enter passphrase for key {}: ",
            repository_description(repository)
        ),
    };
    let (key, passphrase) = match provider.environment_passphrase()? {
        Some(pp) => (open(&pp)?, pp),
        None => unlock_interactively(&open, provider, &prompt)?,
    };
    let _ = key.nonce_after_manifest(manifest_cdata)?;
    let text = match &location {
        KeyLocation::File(_) => rborg_crypto::keyblob::split_keyfile(&text)?.1.to_string(),
        _ => text,
    };
    Ok(UnlockedKey {
        key,
        passphrase,
        location,
        text: Some(text),
    })
}

impl UnlockedKey {
    /// borg's `key.logically_encrypted` (`crypto/key.py`): true for the AES modes, except a
    /// repokey unlocked with the empty passphrase, which anyone holding the repository can open.
    pub fn logically_encrypted(&self) -> bool {
        self.key.key_type().is_encrypted()
            && !(self.location == KeyLocation::Repository && self.passphrase.is_empty())
    }
}

/// borg's retry loop: the empty passphrase first, then up to three prompts.
fn unlock_interactively(
    open: &dyn Fn(&Passphrase) -> rborg_crypto::Result<Key>,
    provider: &mut dyn PassphraseProvider,
    prompt: &str,
) -> Result<(Key, Passphrase)> {
    let empty = Passphrase::new("");
    match open(&empty) {
        Ok(key) => return Ok((key, empty)),
        Err(rborg_crypto::Error::PassphraseWrong) => {}
        Err(e) => return Err(e.into()),
    }
    for _ in 0..PASSPHRASE_RETRIES {
        let pp = provider.ask(prompt)?;
        match open(&pp) {
            Ok(key) => return Ok((key, pp)),
            Err(rborg_crypto::Error::PassphraseWrong) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::PasswordRetriesExceeded)
}

fn repository_description(repository: &mut dyn Repository) -> String {
    hex::encode(repository.id())
}

/// Stores a new or changed key where its mode keeps it: the repository config for repokey and
/// authenticated modes, a key file for keyfile modes (a new file named after the repository
/// location unless `existing` names one). Returns where it went.
pub fn store_key(
    repository: &mut dyn Repository,
    key: &Key,
    passphrase: &Passphrase,
    existing: &KeyLocation,
    key_file_name: &str,
    env: Env,
) -> Result<KeyLocation> {
    match key.key_type().storage() {
        KeyStorage::None => Ok(KeyLocation::None),
        KeyStorage::Repository => {
            repository.save_key(key.to_repokey_string(passphrase).as_bytes())?;
            Ok(KeyLocation::Repository)
        }
        KeyStorage::Keyfile => {
            let path = match existing {
                KeyLocation::File(p) => p.clone(),
                _ => new_keyfile_target(key_file_name, env)?,
            };
            let tmp = path.with_extension("tmp");
            // borg's SaveFile creates the file with mkstemp, hence owner-only permissions.
            write_private(&tmp, key.to_keyfile_string(passphrase).as_bytes())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| Error::io(format!("writing key file {}", path.display()), e))?;
            Ok(KeyLocation::File(path))
        }
    }
}

fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Where a new key file goes (borg's `KeyfileKey.get_new_target`): `BORG_KEY_FILE` if set (made
/// absolute), else a free name in the keys directory. Refuses to overwrite an existing file, so a
/// careless `BORG_KEY_FILE` cannot destroy another repository's key (borg issue #6036).
fn new_keyfile_target(key_file_name: &str, env: Env) -> Result<PathBuf> {
    let target = match env("BORG_KEY_FILE").filter(|v| !v.is_empty()) {
        Some(file) => std::path::absolute(&file)
            .map_err(|e| Error::io(format!("resolving BORG_KEY_FILE {file}"), e))?,
        None => {
            let dir = paths::keys_dir(env);
            paths::ensure_dir(&dir)?;
            paths::new_keyfile_target(&dir, key_file_name)
        }
    };
    if target.is_file() {
        return Err(Error::KeyFileExists(target.display().to_string()));
    }
    Ok(target)
}
