//! borgmatic-compatible configuration for rborg's orchestrator (issue 6).
//!
//! A configuration file is processed the way borgmatic 2.x does it
//! (`borgmatic/config/validate.py::parse_configuration`):
//!
//! 1. [`load`]: YAML parsed with positions, `!include` / `<<: !include` resolved and deep
//!    merged (`!retain`, `!omit`);
//! 2. [`interpolate`]: `{constant}` from `constants:`, then `${VAR}` from the environment;
//! 3. [`normalize`]: the sectioned 1.7 form and other deprecated forms rewritten into the
//!    flat 2.x form, with deprecation warnings;
//! 4. [`schema`]: validation against borgmatic's own schema, every error with file, line,
//!    column and a "did you mean" suggestion; options given under one repository are
//!    validated as top-level options; `check_repositories` must name configured repositories;
//! 5. [`model`]: the result as a typed [`Config`].
//!
//! [`discover`] finds the files of a run, [`generate_template`] writes a commented template of
//! every option. See docs/config.md.

#![forbid(unsafe_code)]

pub mod discover;
pub mod error;
pub mod interpolate;
pub mod load;
pub mod model;
pub mod node;
pub mod normalize;
pub mod schema;
mod template;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use discover::{collect_config_files, config_files, default_config_paths};
pub use error::{ConfigError, Diagnostic};
pub use interpolate::{resolve_credential, CredentialError};
pub use model::{Check, CommandHook, Config, Database, Repository};
pub use node::{Key, Mark, Node, Value};
pub use template::generate_template;

/// Options of a `repositories:` entry that describe the repository itself; any other option
/// there overrides the top-level one for that repository (borgmatic's
/// `REPOSITORY_SPECIFIC_OPTION_NAMES`).
pub const REPOSITORY_OPTIONS: [&str; 8] = [
    "append_only",
    "encryption",
    "id_hash",
    "key_location",
    "label",
    "make_parent_directories",
    "path",
    "storage_quota",
];

/// A configuration file, loaded, validated and normalised.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The configuration file.
    pub path: PathBuf,
    /// The typed configuration.
    pub config: Config,
    /// The normalised configuration tree (what `borgmatic config validate --show` prints).
    pub tree: Node,
    /// Deprecation warnings, each prefixed with the file name as borgmatic prints them.
    pub warnings: Vec<String>,
    /// Every file read: the configuration and its includes.
    pub files: BTreeSet<PathBuf>,
}

/// The environment lookup `${VAR}` interpolation uses (`std::env::var` normally).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl LoadedConfig {
    /// The configuration as it applies to repository `index`: the options written under that
    /// repository (other than its own `path`, `label`, ...) replace the top-level ones, a
    /// shallow override as borgmatic's `merge_repository_configuration` does. `None` if there
    /// is no such repository.
    pub fn for_repository(&self, index: usize) -> Option<Config> {
        let mut top = self.tree.to_json();
        let repository = top.get("repositories")?.get(index)?.as_object()?.clone();
        let map = top.as_object_mut()?;
        for (name, value) in repository {
            if !REPOSITORY_OPTIONS.contains(&name.as_str()) {
                map.insert(name, value);
            }
        }
        let mut config: Config = serde_json::from_value(top).ok()?;
        mark_legacy_after_hooks(&self.tree, &mut config);
        Some(config)
    }

    /// Applies a `--override OPTION=VALUE` (borgmatic's `config/override.py`): `OPTION` is a
    /// dotted path (`keep_daily`, `healthchecks.ping_url`; a leading 1.7 section name such as
    /// `retention.` is dropped), `VALUE` is parsed as YAML (`[a, b]`, `3`, `true`). The result
    /// is validated again.
    pub fn apply_override(&mut self, text: &str) -> Result<(), ConfigError> {
        let origin = Mark {
            file: std::sync::Arc::new(PathBuf::from("<--override>")),
            line: 1,
            column: 1,
        };
        let invalid = |message: String| ConfigError::at(&origin, "", message);
        let (option, value) = text
            .split_once('=')
            .ok_or_else(|| invalid(format!("{text:?} is not OPTION=VALUE")))?;
        let mut parts: Vec<&str> = option.trim().split('.').collect();
        const SECTIONS: [&str; 6] = [
            "location",
            "storage",
            "retention",
            "consistency",
            "output",
            "hooks",
        ];
        if parts.len() > 1 && SECTIONS.contains(&parts[0]) {
            parts.remove(0);
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(invalid(format!("{option:?} is not an option name")));
        }
        let value = node::parse(value, Path::new("<--override>"))?;
        let mut target = &mut self.tree;
        for (i, part) in parts.iter().enumerate() {
            let key = Key {
                name: part.to_string(),
                mark: origin.clone(),
                merge: false,
            };
            if i + 1 == parts.len() {
                target.insert(key, value);
                break;
            }
            if !matches!(target.get(part).map(|n| &n.value), Some(Value::Map(_))) {
                target.insert(key, Node::new(Value::Map(Vec::new()), origin.clone()));
            }
            target = target.get_mut(part).expect("inserted above");
        }
        let mut errors = Vec::new();
        schema::validate(schema::schema(), &self.tree, "", &mut errors);
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        let mut config: Config = serde_json::from_value(self.tree.to_json())
            .map_err(|e| invalid(format!("cannot read the configuration: {e}")))?;
        mark_legacy_after_hooks(&self.tree, &mut config);
        self.config = config;
        Ok(())
    }

    /// The indexes of the repositories that `wanted` (a `--repository` argument: a label or a
    /// path, globs allowed) selects, matched as borgmatic's `repositories_match` does.
    pub fn select_repositories(&self, wanted: &str) -> Vec<usize> {
        self.config
            .repositories
            .iter()
            .enumerate()
            .filter(|(_, r)| repository_matches(wanted, r.label.as_deref(), &r.path))
            .map(|(i, _)| i)
            .collect()
    }
}

/// Whether `wanted` (label or path, globs allowed either way) names the repository with
/// `label` and `path`; a string matches a label or a path (local paths compared absolute).
pub fn repository_matches(wanted: &str, label: Option<&str>, path: &str) -> bool {
    let label_hit = label.is_some_and(|l| glob_match(wanted, l) || glob_match(l, wanted));
    let (a, b) = (repository_path(wanted), repository_path(path));
    label_hit || glob_match(&a, &b) || glob_match(&b, &a)
}

/// Loads the configuration file `path` for a run, taking `${VAR}` values from the process
/// environment.
pub fn load_config(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_config_with_env(path, Some(&|name| std::env::var(name).ok()))
}

/// Loads `path` with `env` as the environment for `${VAR}` interpolation; `None` leaves
/// `${VAR}` references as they are, as `borgmatic config validate` and
/// `--no-environment-interpolation` do.
pub fn load_config_with_env(
    path: &Path,
    env: Option<Env<'_>>,
) -> Result<LoadedConfig, ConfigError> {
    let mut files = BTreeSet::new();
    let tree = load::load_file(path, &mut files)?;
    finish(path, tree, files, env)
}

/// Loads configuration `text` as if read from `path` (includes are relative to `path`).
pub fn load_config_str(
    text: &str,
    path: &Path,
    env: Option<Env<'_>>,
) -> Result<LoadedConfig, ConfigError> {
    let mut files = BTreeSet::new();
    let tree = load::load_str(text, path, &mut files)?;
    finish(path, tree, files, env)
}

/// Validates the configuration files named by `paths` (files or directories, as `-c`
/// takes them; the defaults when empty) and returns each file's result; one file's errors do
/// not stop the others. Like `borgmatic config validate`, it does not interpolate `${VAR}`.
pub fn validate(paths: &[PathBuf]) -> Vec<(PathBuf, Result<LoadedConfig, ConfigError>)> {
    config_files(paths, &|name| std::env::var(name).ok())
        .into_iter()
        .map(|file| {
            let result = load_config_with_env(&file, None);
            (file, result)
        })
        .collect()
}

fn finish(
    path: &Path,
    mut tree: Node,
    files: BTreeSet<PathBuf>,
    env: Option<Env<'_>>,
) -> Result<LoadedConfig, ConfigError> {
    let constants: Vec<(String, Node)> = match tree.get("constants").map(|c| &c.value) {
        Some(Value::Map(entries)) => entries
            .iter()
            .map(|(k, v)| (k.name.clone(), v.clone()))
            .collect(),
        _ => Vec::new(),
    };
    let readable_secret = readable_passphrase_warning(&tree);
    interpolate::apply_constants(&mut tree, &constants);
    if let Some(env) = env {
        interpolate::resolve_env(&mut tree, "", env)?;
    }
    let mut warnings = normalize::normalize(&path.display().to_string(), &mut tree)?;
    warnings.extend(readable_secret);

    let mut errors = Vec::new();
    let top = schema::schema();
    schema::validate(top, &tree, "", &mut errors);
    validate_repository_overrides(top, &tree, &mut errors);
    if errors.is_empty() {
        check_repositories(&tree, &mut errors);
    }
    if !errors.is_empty() {
        return Err(ConfigError::Invalid(errors));
    }
    let mut config: Config = serde_json::from_value(tree.to_json()).map_err(|e| {
        ConfigError::at(
            &tree.mark,
            "",
            format!("cannot read the configuration: {e}"),
        )
    })?;
    mark_legacy_after_hooks(&tree, &mut config);
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        config,
        tree,
        warnings,
        files,
    })
}

/// A warning when the file that holds a literal `encryption_passphrase` (top level or 1.7's
/// `storage:` section, before `${VAR}`/`{credential ...}` resolution) can be read by other users:
/// anyone who can read it can decrypt the repository. borgmatic does not check this; ssh does
/// the same for private keys.
fn readable_passphrase_warning(tree: &Node) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let node = tree.get("encryption_passphrase").or_else(|| {
        tree.get("storage")
            .and_then(|s| s.get("encryption_passphrase"))
    })?;
    let Value::Str(text) = &node.value else {
        return None;
    };
    if text.is_empty() || text.contains("${") || text.trim_start().starts_with("{credential") {
        return None;
    }
    let file = node.mark.file.as_path();
    let mode = std::fs::metadata(file).ok()?.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "{}: holds an encryption passphrase and other users can read it (mode {:04o}): \
             run `chmod 600 {}`, or move the passphrase to a credential or environment variable",
            file.display(),
            mode & 0o7777,
            file.display()
        )
    })
}

/// borgmatic 1.7 ran `after_backup`, `after_prune`... only when the action succeeded (errors
/// ran `on_error` instead); 2.x runs an `after` hook without `states` either way. Hooks that
/// came from the 1.7 options keep their 1.7 meaning: `states: [finish]`.
fn mark_legacy_after_hooks(tree: &Node, config: &mut Config) {
    let Some(Value::Seq(commands)) = tree.get("commands").map(|c| &c.value) else {
        return;
    };
    for (node, hook) in commands.iter().zip(config.commands.iter_mut()) {
        let legacy = node.tag.as_deref() == Some(normalize::LEGACY_HOOK_TAG);
        let after_point = matches!(hook.after.as_deref(), Some("action" | "repository"));
        if legacy && after_point && hook.states.is_empty() {
            hook.states = vec!["finish".to_string()];
        }
    }
}

/// Options written under a repository are validated as top-level options (borgmatic
/// validates a copy of the configuration with them hoisted).
fn validate_repository_overrides(top: &Node, tree: &Node, errors: &mut Vec<Diagnostic>) {
    let Some(Value::Seq(repositories)) = tree.get("repositories").map(|r| &r.value) else {
        return;
    };
    let Some(Value::Map(properties)) = top.get("properties").map(|p| &p.value) else {
        return;
    };
    let known: Vec<&str> = properties.iter().map(|(k, _)| k.name.as_str()).collect();
    for (index, repository) in repositories.iter().enumerate() {
        let Value::Map(entries) = &repository.value else {
            continue;
        };
        let path = format!("repositories[{index}]");
        for (key, value) in entries {
            if REPOSITORY_OPTIONS.contains(&key.name.as_str()) {
                continue;
            }
            match properties.iter().find(|(k, _)| k.name == key.name) {
                Some((_, sub)) => {
                    schema::validate(sub, value, &schema::child_path(&path, &key.name), errors)
                }
                None => {
                    let mut candidates = known.clone();
                    candidates.extend(REPOSITORY_OPTIONS);
                    let mut message = format!(
                        "Additional properties are not allowed ('{}' was unexpected)",
                        key.name
                    );
                    if let Some(s) = schema::nearest(&key.name, &candidates) {
                        message.push_str(&format!("; did you mean '{s}'?"));
                    }
                    errors.push(Diagnostic {
                        mark: Some(key.mark.clone()),
                        path: path.clone(),
                        message,
                    });
                }
            }
        }
    }
}

/// Every `check_repositories` entry must match a configured repository by label or path
/// (globs allowed), as borgmatic's `apply_logical_validation` requires.
fn check_repositories(tree: &Node, errors: &mut Vec<Diagnostic>) {
    let Some(Value::Seq(wanted)) = tree.get("check_repositories").map(|c| &c.value) else {
        return;
    };
    let repositories: Vec<(Option<&str>, Option<&str>)> =
        match tree.get("repositories").map(|r| &r.value) {
            Some(Value::Seq(items)) => items
                .iter()
                .map(|r| {
                    (
                        r.get("label").and_then(Node::as_str),
                        r.get("path").and_then(Node::as_str),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
    for item in wanted {
        let Some(name) = item.as_str() else { continue };
        let found = repositories
            .iter()
            .any(|(label, path)| repository_matches(name, *label, path.unwrap_or_default()));
        if !found {
            errors.push(Diagnostic {
                mark: Some(item.mark.clone()),
                path: "check_repositories".into(),
                message: format!("Unknown repository in \"check_repositories\": {name}"),
            });
        }
    }
}

/// A local repository path made absolute (remote URLs unchanged), for comparing paths.
pub fn repository_path(path: &str) -> String {
    if let Some(local) = path.strip_prefix("file://") {
        normalize::absolute(local)
    } else if path.contains(':') {
        path.to_string()
    } else {
        normalize::absolute(path)
    }
}

/// Shell-style glob (`*`, `?`, `[...]`) as Python's `fnmatch` (case-sensitive on POSIX).
pub fn glob_match(text: &str, pattern: &str) -> bool {
    fn matches(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| matches(&t[i..], &p[1..])),
            Some('?') => !t.is_empty() && matches(&t[1..], &p[1..]),
            Some('[') => {
                let Some(close) = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2) else {
                    return t.first() == Some(&'[') && matches(&t[1..], &p[1..]);
                };
                let Some(c) = t.first() else { return false };
                let set = &p[1..close];
                let (negate, set) = match set.first() {
                    Some('!') => (true, &set[1..]),
                    _ => (false, set),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= *c && *c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == *c;
                        i += 1;
                    }
                }
                hit != negate && matches(&t[1..], &p[close + 1..])
            }
            Some(ch) => t.first() == Some(ch) && matches(&t[1..], &p[1..]),
        }
    }
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    matches(&t, &p)
}
