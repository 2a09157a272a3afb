//! Initializing a repository: a new key and an empty, authenticated manifest (borg 1.2
//! `Archiver.do_init` and `key_creator`).

use rborg_crypto::paths::Env;
use rborg_crypto::{Key, KeyType, Passphrase};
use rborg_repository::{Repository, DEFAULT_COMPACT_THRESHOLD};

use crate::error::Result;
use crate::keys::{store_key, KeyLocation, PassphraseProvider};
use crate::manifest::Manifest;
use crate::security::SecurityDir;

/// What `init` made.
#[derive(Debug)]
pub struct Initialized {
    /// Where the new key was stored.
    pub key_location: KeyLocation,
    /// Whether the new key requires TAMs (borg then warns about pre-1.0.9 clients).
    pub tam_required: bool,
}

/// Puts a new key of `key_type` and an empty manifest into the freshly created, empty
/// `repository`, commits, and records the repository in the security database.
///
/// `location` is the canonical location (stored in the security database), `key_file_name`
/// the name a keyfile-mode key gets in the keys directory (borg's `Location.to_key_filename`).
/// When this fails, the caller should destroy the half-made repository, as borg does.
pub fn init_repository(
    repository: &mut dyn Repository,
    key_type: KeyType,
    location: &str,
    key_file_name: &str,
    provider: &mut dyn PassphraseProvider,
    env: Env,
) -> Result<Initialized> {
    let repo_id = repository.id();
    let key = Key::create(key_type, repo_id);
    let passphrase = if key_type == KeyType::Plaintext {
        Passphrase::new("")
    } else {
        provider.new_passphrase()?
    };
    let key_location = store_key(
        repository,
        &key,
        &passphrase,
        &KeyLocation::None,
        key_file_name,
        env,
    )?;
    let security = SecurityDir::open(env, &repo_id)?;
    let mut manifest = Manifest::new();
    manifest.write(repository, &key, security.nonce_file())?;
    repository.commit(false, DEFAULT_COMPACT_THRESHOLD)?;
    security.remember_manifest(location, key_type, &manifest)?;
    if key.tam_required() {
        security.set_tam_required(true)?;
    }
    // borg's `with Cache(repository, key, manifest, warn_if_unencrypted=False): pass`:
    // the client cache exists (and knows the location) from the start
    let cache_opts = crate::cache::CacheOptions {
        env,
        files_cache_mode: "d".into(),
        location: location.to_string(),
        lock_wait: Some(std::time::Duration::from_secs(1)),
        sync: true,
    };
    crate::cache::LocalCache::open(repository, &key, &manifest, &cache_opts).map_err(|e| {
        crate::Error::io("creating the cache", std::io::Error::other(e.to_string()))
    })?;
    Ok(Initialized {
        key_location,
        tam_required: key.tam_required(),
    })
}
