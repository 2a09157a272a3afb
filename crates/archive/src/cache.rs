//! The client-side cache directory (borg 1.2 `helpers/fs.py` `get_cache_dir`, `cache.py`).
//!
//! Each repository gets `<cache dir>/<repository id hex>/` with the chunks and files caches and
//! a lock; the caches themselves arrive with the archive operations.

use std::path::PathBuf;

use rborg_crypto::paths::{base_dir, Env};

/// `BORG_CACHE_DIR`, else `$XDG_CACHE_HOME/borg` (only when `BORG_BASE_DIR` is unset or
/// empty), else `<base dir>/.cache/borg`.
pub fn cache_dir(env: Env) -> PathBuf {
    if let Some(dir) = env("BORG_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base_dir_set = env("BORG_BASE_DIR").is_some_and(|d| !d.is_empty());
    let xdg = env("XDG_CACHE_HOME").filter(|_| !base_dir_set);
    let cache_home = xdg
        .map(PathBuf::from)
        .unwrap_or_else(|| base_dir(env).join(".cache"));
    cache_home.join("borg")
}

/// The cache directory of one repository.
pub fn repository_cache_dir(env: Env, repository_id: &[u8; 32]) -> PathBuf {
    cache_dir(env).join(hex::encode(repository_id))
}
