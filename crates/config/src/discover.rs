//! Which configuration files a run uses, as borgmatic finds them
//! (`borgmatic/config/collect.py`): by default `/etc/borgmatic/config.yaml`, the `*.yaml` and
//! `*.yml` files of `/etc/borgmatic.d/`, `$XDG_CONFIG_HOME/borgmatic/config.yaml` (or
//! `~/.config/...`) and the files of `~/.config/borgmatic.d/`; with `-c`, the given paths,
//! where a directory stands for the YAML files directly in it (sorted by name). Missing
//! default paths are skipped; every file found is its own run.

use std::path::{Path, PathBuf};

/// The default configuration paths for a user whose environment is `env` (`HOME`,
/// `XDG_CONFIG_HOME`), in borgmatic's order. Root's `~/.config` paths are left out, as
/// borgmatic does when `HOME` is not set.
pub fn default_config_paths(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut paths = vec![
        PathBuf::from("/etc/borgmatic/config.yaml"),
        PathBuf::from("/etc/borgmatic.d"),
    ];
    let home = env("HOME").filter(|h| !h.is_empty());
    let config_home = env("XDG_CONFIG_HOME")
        .filter(|x| !x.is_empty())
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| Path::new(h).join(".config")));
    if let Some(config_home) = config_home {
        paths.push(config_home.join("borgmatic/config.yaml"));
        paths.push(config_home.join("borgmatic.d"));
    }
    paths
}

/// The configuration files named by `paths`: files as they are (even missing ones, when
/// `keep_missing`, so that an explicit `-c nothing.yaml` reports the error), directories
/// expanded to their `*.yaml`/`*.yml` files sorted by name.
pub fn collect_config_files(paths: &[PathBuf], keep_missing: bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if keep_missing || path.exists() {
            files.push(path.clone());
        }
    }
    files
}

/// The files of a run: `explicit` paths (from `-c`) if any, else the defaults that exist.
pub fn config_files(explicit: &[PathBuf], env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    if explicit.is_empty() {
        collect_config_files(&default_config_paths(env), false)
    } else {
        collect_config_files(explicit, true)
    }
}
