//! Normalisation of older configuration forms into borgmatic 2.x's flat form, with the
//! deprecation warnings borgmatic prints (`borgmatic/config/normalize.py`):
//!
//! * the 1.7 sections (`location`, `storage`, `retention`, `consistency`, `output`, `hooks`)
//!   are lifted to the top level;
//! * `before_backup`/`after_*`/`on_error`/`before_everything`... become `commands:` entries;
//! * string forms become mappings: `repositories: [path]`, `checks: [name]`,
//!   `healthchecks: URL`, `cronitor: URL`, `pagerduty: KEY`, `exclude_if_present: name`;
//! * renamed options (`numeric_owner`, `bsd_flags`, `remote_rate_limit`, boolean
//!   `statistics`, `quick_statistics`, top-level `store_config_files`) move to their new names;
//! * `host:path` repositories become `ssh://host/./path`, `file://` ones absolute paths.
//!
//! Moved values keep their source position, so validation errors still point at them.

use crate::error::ConfigError;
use crate::node::{Key, Mark, Node, Value};

const SECTIONS: [&str; 6] = [
    "location",
    "storage",
    "retention",
    "consistency",
    "output",
    "hooks",
];

fn key(name: &str, mark: &Mark) -> Key {
    Key {
        name: name.to_string(),
        mark: mark.clone(),
        merge: false,
    }
}

fn str_node(s: &str, mark: &Mark) -> Node {
    Node::new(Value::Str(s.to_string()), mark.clone())
}

fn map_node(entries: Vec<(&str, Node)>, mark: &Mark) -> Node {
    Node::new(
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (key(k, mark), v))
                .collect(),
        ),
        mark.clone(),
    )
}

/// Normalises `config` (loaded from `file`) in place; returns the warnings.
pub fn normalize(file: &str, config: &mut Node) -> Result<Vec<String>, ConfigError> {
    if !matches!(config.value, Value::Map(_)) {
        return Err(ConfigError::at(
            &config.mark,
            "",
            "Configuration does not contain any options",
        ));
    }
    let mut warnings = Vec::new();
    let mut warn = |message: &str| warnings.push(format!("{file}: {message}"));

    let section_value = |config: &Node, section: &str, option: &str| -> Option<Node> {
        config
            .get(section)
            .and_then(|s| s.get(option))
            .filter(|v| !v.is_falsy())
            .cloned()
    };
    if let (Some(a), Some(b)) = (
        section_value(config, "location", "prefix"),
        section_value(config, "consistency", "prefix"),
    ) {
        if a.value != b.value {
            return Err(ConfigError::at(
                &b.mark,
                "consistency.prefix",
                "The retention prefix and the consistency prefix cannot have different values (unless one is not set).",
            ));
        }
    }
    if let (Some(a), Some(b)) = (
        section_value(config, "storage", "umask"),
        section_value(config, "hooks", "umask"),
    ) {
        if a.value != b.value {
            return Err(ConfigError::at(
                &b.mark,
                "hooks.umask",
                "The storage umask and the hooks umask cannot have different values (unless one is not set).",
            ));
        }
    }

    let mut upgraded = false;
    for section in SECTIONS {
        let Some((_, value)) = config.remove(section) else {
            continue;
        };
        match value.value {
            Value::Null => {
                // borgmatic only lifts sections that are not None; a `location:` with no
                // value stays, and schema validation then rejects it as unknown.
                config.insert(
                    key(section, &value.mark),
                    Node::new(Value::Null, value.mark.clone()),
                );
                continue;
            }
            Value::Map(entries) => {
                upgraded = true;
                for (k, v) in entries {
                    config.insert(k, v);
                }
            }
            _ => {
                return Err(ConfigError::at(
                    &value.mark,
                    section,
                    format!("{} is not of type 'object'", crate::schema::repr(&value)),
                ))
            }
        }
    }
    if upgraded {
        warn("Configuration sections (like location:, storage:, retention:, consistency:, and hooks:) are deprecated and support will be removed from a future release. To prepare for this, move your options out of sections to the global scope.");
    }

    normalize_commands(config, &mut warn);

    if config
        .get("borgmatic_source_directory")
        .is_some_and(|v| !v.is_falsy())
    {
        warn("The borgmatic_source_directory option is deprecated and will be removed from a future release. Use user_runtime_directory and user_state_directory instead.");
    }
    if let Some(v) = config.get_mut("exclude_if_present") {
        if let Value::Str(_) = v.value {
            let item = v.clone();
            v.value = Value::Seq(vec![item]);
            warn("The exclude_if_present option now expects a list value. String values for this option are deprecated and support will be removed from a future release.");
        }
    }
    if let Some(v) = config.get_mut("statistics") {
        if let Value::Bool(b) = v.value {
            v.value = Value::Str(if b { "standard" } else { "none" }.into());
            warn("The statistics option now expects a string value. True/false values for this option are deprecated and support will be removed from a future release.");
        }
    }
    if let Some(Value::Bool(b)) = config.get("quick_statistics").map(|v| v.value.clone()) {
        if let Some((k, v)) = config.remove("quick_statistics") {
            let value = str_node(if b { "quick" } else { "none" }, &v.mark);
            config.insert(key("statistics", &k.mark), value);
        }
        warn("The quick_statistics option has been deprecated and support will be removed from a future release. Use the statistics option instead.");
    }
    if config.get("bootstrap").is_none() {
        let mark = config.mark.clone();
        config.insert(key("bootstrap", &mark), map_node(Vec::new(), &mark));
    }
    if config
        .get("store_config_files")
        .is_some_and(|v| v.value != Value::Null)
    {
        warn("The store_config_files option has moved under the bootstrap hook. Specifying store_config_files at the global scope is deprecated and support will be removed from a future release.");
        if let Some((k, v)) = config.remove("store_config_files") {
            if let Some(bootstrap) = config.get_mut("bootstrap") {
                bootstrap.insert(k, v);
            }
        }
    }
    for (option, field, message) in [
        ("healthchecks", "ping_url", "The Healthchecks hook now expects a key/value pair with \"ping_url\" as a key. String values for this option are deprecated and support will be removed from a future release."),
        ("cronitor", "ping_url", "The Cronitor hook now expects key/value pairs. String values for this option are deprecated and support will be removed from a future release."),
        ("pagerduty", "integration_key", "The PagerDuty hook now expects key/value pairs. String values for this option are deprecated and support will be removed from a future release."),
    ] {
        if let Some(v) = config.get_mut(option) {
            if let Value::Str(_) = v.value {
                let inner = v.clone();
                *v = map_node(vec![(field, inner)], &v.mark);
                warn(message);
            }
        }
    }
    if let Some(v) = config.get_mut("checks") {
        if let Value::Seq(items) = &mut v.value {
            if items
                .first()
                .is_some_and(|i| matches!(i.value, Value::Str(_)))
            {
                for item in items.iter_mut() {
                    *item = map_node(vec![("name", item.clone())], &item.mark);
                }
                warn("The checks option now expects a list of key/value pairs. Lists of strings for this option are deprecated and support will be removed from a future release.");
            }
        }
    }
    for (old, new) in [
        ("numeric_owner", "numeric_ids"),
        ("bsd_flags", "flags"),
        ("remote_rate_limit", "upload_rate_limit"),
    ] {
        if let Some((k, v)) = config.remove(old) {
            if v.value != Value::Null {
                warn(&format!("The {old} option has been renamed to {new}. {old} is deprecated and support will be removed from a future release."));
                config.insert(key(new, &k.mark), v);
            }
        }
    }
    normalize_repositories(config, &mut warn)?;
    if config.get("prefix").is_some_and(|v| !v.is_falsy()) {
        warn("The prefix option is deprecated and support will be removed from a future release. Use archive_name_format or match_archives instead.");
    }
    Ok(warnings)
}

/// The tag put on `commands:` entries made from 1.7 hook options (`before_backup`, ...), so the
/// runner can give them their 1.7 meaning (`after_*` on success only). Tags are not part of the
/// configuration's JSON form, so `--show` output is unchanged.
pub const LEGACY_HOOK_TAG: &str = "!rborg/legacy-hook";

fn hook_deprecation(option: &str) -> String {
    format!("{option} is deprecated and support will be removed from a future release. Use commands: instead.")
}

fn normalize_commands(config: &mut Node, warn: &mut dyn FnMut(&str)) {
    let mut add = |config: &mut Node, option: &str, entries: Vec<(&str, Node)>, mark: &Mark| {
        warn(&hook_deprecation(option));
        let mut command = map_node(entries, mark);
        command.tag = Some(LEGACY_HOOK_TAG.to_string());
        match config.get_mut("commands") {
            Some(Node {
                value: Value::Seq(items),
                ..
            }) => items.push(command),
            _ => config.insert(
                key("commands", mark),
                Node::new(Value::Seq(vec![command]), mark.clone()),
            ),
        }
    };
    let when = |actions: &[&str], mark: &Mark| {
        Node::new(
            Value::Seq(actions.iter().map(|a| str_node(a, mark)).collect()),
            mark.clone(),
        )
    };
    for preposition in ["before", "after"] {
        let option = format!("{preposition}_actions");
        if let Some((k, run)) = config.remove(&option) {
            if !run.is_falsy() {
                let m = k.mark.clone();
                add(
                    config,
                    &option,
                    vec![(preposition, str_node("repository", &m)), ("run", run)],
                    &m,
                );
            }
        }
    }
    for action in ["create", "prune", "compact", "check", "extract"] {
        for preposition in ["before", "after"] {
            let noun = if action == "create" { "backup" } else { action };
            let option = format!("{preposition}_{noun}");
            if let Some((k, run)) = config.remove(&option) {
                if !run.is_falsy() {
                    let m = k.mark.clone();
                    let entries = vec![
                        (preposition, str_node("action", &m)),
                        ("when", when(&[action], &m)),
                        ("run", run),
                    ];
                    add(config, &option, entries, &m);
                }
            }
        }
    }
    if let Some((k, run)) = config.remove("on_error") {
        if !run.is_falsy() {
            let m = k.mark.clone();
            let entries = vec![
                ("after", str_node("error", &m)),
                ("when", when(&["create", "prune", "compact", "check"], &m)),
                ("run", run),
            ];
            add(config, "on_error", entries, &m);
        }
    }
    for preposition in ["before", "after"] {
        let option = format!("{preposition}_everything");
        if let Some((k, run)) = config.remove(&option) {
            if !run.is_falsy() {
                let m = k.mark.clone();
                let entries = vec![
                    (preposition, str_node("everything", &m)),
                    ("when", when(&["create"], &m)),
                    ("run", run),
                ];
                add(config, &option, entries, &m);
            }
        }
    }
}

fn normalize_repositories(
    config: &mut Node,
    warn: &mut dyn FnMut(&str),
) -> Result<(), ConfigError> {
    let Some(repositories) = config.get_mut("repositories") else {
        return Ok(());
    };
    if repositories.is_falsy() {
        return Ok(());
    }
    let Value::Seq(items) = &mut repositories.value else {
        return Ok(());
    };
    if items.iter().any(|i| matches!(i.value, Value::Str(_))) {
        warn("The repositories option now expects a list of key/value pairs. Lists of strings for this option are deprecated and support will be removed from a future release.");
        for item in items.iter_mut() {
            if let Value::Str(_) = item.value {
                *item = map_node(vec![("path", item.clone())], &item.mark);
            }
        }
    }
    let mut kept = Vec::with_capacity(items.len());
    for (index, mut item) in std::mem::take(items).into_iter().enumerate() {
        if !matches!(item.value, Value::Map(_)) {
            return Err(ConfigError::at(
                &item.mark,
                &format!("repositories[{index}]"),
                format!(
                    "{} is not a repository path or mapping",
                    crate::schema::repr(&item)
                ),
            ));
        }
        let Some(path_node) = item.get("path").filter(|p| p.value != Value::Null) else {
            continue;
        };
        let Some(path) = path_node.as_str().map(str::to_string) else {
            kept.push(item);
            continue;
        };
        if path.contains('~') {
            warn("Repository paths containing \"~\" are deprecated in borgmatic and support will be removed from a future release.");
        }
        if path.contains(':') {
            if let Some(local) = path.strip_prefix("file://") {
                set_path(&mut item, &absolute(local));
            } else if ["ssh://", "sftp://", "rclone:", "s3:", "b2:"]
                .iter()
                .any(|p| path.starts_with(p))
            {
            } else {
                let rewritten = format!(
                    "ssh://{}",
                    path.replace(":~", "/~")
                        .replace(":/", "/")
                        .replace(':', "/./")
                );
                warn(&format!("Remote repository paths without ssh://, sftp://, rclone:, s3:, or b2:, syntax are deprecated and support will be removed from a future release. Interpreting \"{path}\" as \"{rewritten}\""));
                set_path(&mut item, &rewritten);
            }
        }
        kept.push(item);
    }
    *items = kept;
    Ok(())
}

fn set_path(item: &mut Node, path: &str) {
    if let Some(p) = item.get_mut("path") {
        p.value = Value::Str(path.to_string());
    }
}

/// Python's `os.path.abspath`: joined to the current directory and lexically normalised.
pub(crate) fn absolute(path: &str) -> String {
    let joined = if path.starts_with('/') {
        std::path::PathBuf::from(path)
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut parts: Vec<String> = Vec::new();
    for component in joined.components() {
        match component {
            std::path::Component::Normal(c) => parts.push(c.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}
