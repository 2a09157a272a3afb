//! Loading a configuration file: `!include`, `<<:` merges, and borgmatic's deep merge with
//! the `!retain` and `!omit` tags.
//!
//! The rules are those of borgmatic 2.x `borgmatic/config/load.py` (documented in borgmatic's
//! "Include merging" how-to):
//!
//! * `option: !include FILE` replaces the value with the loaded file; a list of files gives a
//!   list of loaded files (in reverse order, as borgmatic builds it for merging).
//! * `<<: !include FILE` (or a list of files) merges the loaded mapping(s) into the including
//!   mapping; with several files the later ones win; the including file's own options win over
//!   everything merged. A plain YAML `<<: *anchor` merge works as in YAML 1.1 (earlier
//!   mappings in a merged list win).
//! * In every mapping, options that occur more than once are *deep merged*: mappings merge
//!   recursively, lists are concatenated, scalars take the last value; mixing kinds is an error.
//! * `!retain` on a mapping or list stops the deep merge: its value replaces the merged ones.
//!   `!omit` on a list element removes that element (and equal elements) from the merged list.
//!   Both are errors where no merge happens.
//! * A relative include is looked for next to the including file, then in the current
//!   directory; `~` is expanded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::node::{self, Key, Node, Value};

/// How deep includes may nest before a cycle is assumed (borgmatic relies on Python's
/// recursion limit and reports a RecursionError).
const MAX_INCLUDE_DEPTH: usize = 32;

/// Loads `path`, resolving includes and merges. Every file read (the configuration and its
/// includes) is added to `paths`.
pub fn load_file(path: &Path, paths: &mut BTreeSet<PathBuf>) -> Result<Node, ConfigError> {
    load_nested(path, paths, 0)
}

/// Loads YAML text as if read from `path` (includes are resolved relative to `path`).
pub fn load_str(
    text: &str,
    path: &Path,
    paths: &mut BTreeSet<PathBuf>,
) -> Result<Node, ConfigError> {
    let raw = node::parse(text, path)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Loader {
        dir,
        paths,
        depth: 0,
    }
    .construct(raw)
}

fn load_nested(
    path: &Path,
    paths: &mut BTreeSet<PathBuf>,
    depth: usize,
) -> Result<Node, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    paths.insert(path.to_path_buf());
    let raw = node::parse(&text, path)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Loader { dir, paths, depth }.construct(raw)
}

struct Loader<'a> {
    /// Directory of the file being loaded, for relative includes.
    dir: PathBuf,
    paths: &'a mut BTreeSet<PathBuf>,
    depth: usize,
}

impl Loader<'_> {
    /// Turns a raw parsed node into its final value: includes loaded, merges applied, and
    /// no `!retain`/`!omit` tag left.
    fn construct(&mut self, node: Node) -> Result<Node, ConfigError> {
        match node.tag.as_deref() {
            Some("!include") => return self.include(&node),
            Some("!retain") => {
                let message = match node.value {
                    Value::Map(_) | Value::Seq(_) => "The !retain tag may only be used within a configuration file containing a merged !include tag.",
                    _ => "The !retain tag may only be used on a mapping or list.",
                };
                return Err(ConfigError::at(&node.mark, "", message));
            }
            Some("!omit") => {
                return Err(ConfigError::at(
                    &node.mark,
                    "",
                    "The !omit tag may only be used on a scalar (e.g., string) or list element within a configuration file containing a merged !include tag.",
                ))
            }
            Some(other) => {
                return Err(ConfigError::at(
                    &node.mark,
                    "",
                    format!("could not determine a constructor for the tag '{other}'"),
                ))
            }
            None => {}
        }
        let Node { value, mark, .. } = node;
        let value = match value {
            Value::Seq(items) => Value::Seq(
                items
                    .into_iter()
                    .map(|item| self.construct(item))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Map(entries) => {
                let mut merged = Vec::new();
                let mut own = Vec::new();
                for (key, value) in entries {
                    if key.merge {
                        merged.extend(self.merge_sources(value)?);
                    } else {
                        own.push((key, value));
                    }
                }
                merged.extend(own);
                let entries = deep_merge(merged)?;
                Value::Map(
                    entries
                        .into_iter()
                        .map(|(k, v)| Ok((k, self.construct(v)?)))
                        .collect::<Result<_, ConfigError>>()?,
                )
            }
            scalar => scalar,
        };
        Ok(Node::new(value, mark))
    }

    /// The entries a `<<` key merges in, lowest precedence first.
    fn merge_sources(&mut self, value: Node) -> Result<Vec<(Key, Node)>, ConfigError> {
        let is_include = value.tag.as_deref() == Some("!include");
        let mark = value.mark.clone();
        let mappings: Vec<Node> = if is_include {
            match self.include(&value)? {
                // Several included files: borgmatic reverses the list, and the merge reverses
                // it back, so later files win.
                Node {
                    value: Value::Seq(items),
                    ..
                } => items.into_iter().rev().collect(),
                single => vec![single],
            }
        } else {
            match self.construct(value)? {
                // YAML merge of a list of mappings: earlier mappings win.
                Node {
                    value: Value::Seq(items),
                    ..
                } => items.into_iter().rev().collect(),
                single => vec![single],
            }
        };
        let mut entries = Vec::new();
        for mapping in mappings {
            match mapping.value {
                Value::Map(e) => entries.extend(e),
                Value::Null if is_include => {}
                _ => {
                    return Err(ConfigError::at(
                        &mark,
                        "",
                        "expected a mapping (or a list of mappings) for merging",
                    ))
                }
            }
        }
        Ok(entries)
    }

    /// Loads the file(s) named by an `!include` node.
    fn include(&mut self, node: &Node) -> Result<Node, ConfigError> {
        match &node.value {
            Value::Str(name) => self.include_one(name, node),
            Value::Seq(items) if items.first().is_some_and(|i| i.as_str().is_some()) => {
                let mut loaded = Vec::new();
                for item in items.iter().rev() {
                    let name = item.as_str().ok_or_else(|| {
                        ConfigError::at(&item.mark, "", "an !include list must contain file names")
                    })?;
                    loaded.push(self.include_one(name, item)?);
                }
                Ok(Node::new(Value::Seq(loaded), node.mark.clone()))
            }
            _ => Err(ConfigError::at(
                &node.mark,
                "",
                "The value given for the !include tag is invalid; use a single filename or a list of filenames instead",
            )),
        }
    }

    fn include_one(&mut self, name: &str, node: &Node) -> Result<Node, ConfigError> {
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::at(
                &node.mark,
                "",
                format!("includes nested more than {MAX_INCLUDE_DEPTH} deep (an include cycle?) at {name}"),
            ));
        }
        let expanded = expand_user(name);
        let path = if expanded.is_absolute() {
            expanded
        } else {
            let candidates = [
                self.dir.join(&expanded),
                std::env::current_dir().unwrap_or_default().join(&expanded),
            ];
            match candidates.iter().find(|c| c.exists()) {
                Some(found) => found.clone(),
                None => {
                    return Err(ConfigError::at(
                        &node.mark,
                        "",
                        format!(
                            "Could not find include {name} at {} or {}",
                            candidates[0].display(),
                            candidates[1].display()
                        ),
                    ))
                }
            }
        };
        let result = load_nested(&path, self.paths, self.depth + 1);
        match result {
            Err(ConfigError::Io { path, source }) => Err(ConfigError::at(
                &node.mark,
                "",
                format!("cannot read include {}: {source}", path.display()),
            )),
            other => other,
        }
    }
}

/// `~` and `~/...` expanded with `$HOME`, as Python's `os.path.expanduser` does for the
/// current user.
pub(crate) fn expand_user(name: &str) -> PathBuf {
    if name == "~" || name.starts_with("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(name.trim_start_matches('~').trim_start_matches('/'));
        }
    }
    PathBuf::from(name)
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Map,
    Seq,
    Scalar,
}

fn kind(node: &Node) -> Kind {
    match node.value {
        Value::Map(_) => Kind::Map,
        Value::Seq(_) => Kind::Seq,
        _ => Kind::Scalar,
    }
}

/// Deep merges the entries of one mapping whose keys may repeat (see the module docs); keys
/// keep the order of their first occurrence.
fn deep_merge(entries: Vec<(Key, Node)>) -> Result<Vec<(Key, Node)>, ConfigError> {
    let mut groups: Vec<(Key, Vec<Node>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (key, value) in entries {
        match index.get(&key.name) {
            Some(&i) => {
                groups[i].0 = key;
                groups[i].1.push(value);
            }
            None => {
                index.insert(key.name.clone(), groups.len());
                groups.push((key, vec![value]));
            }
        }
    }
    let mut merged = Vec::with_capacity(groups.len());
    for (key, mut values) in groups {
        let count = values.len();
        let first_kind = kind(&values[0]);
        if values.iter().any(|v| kind(v) != first_kind) {
            let last = values
                .last()
                .map(|v| v.mark.clone())
                .unwrap_or_else(node::Mark::synthetic);
            return Err(ConfigError::at(
                &last,
                "",
                format!(
                    "Incompatible types found when trying to merge \"{}:\" values across configuration files",
                    key.name
                ),
            ));
        }
        let Some(mut last) = values.pop() else {
            continue;
        };
        if count == 1 || first_kind == Kind::Scalar {
            merged.push((key, last));
            continue;
        }
        if last.tag.as_deref() == Some("!retain") {
            last.tag = None;
            merged.push((key, last));
            continue;
        }
        values.push(last);
        let tag = values.last().and_then(|v| v.tag.clone());
        let mark = values
            .last()
            .map(|v| v.mark.clone())
            .unwrap_or_else(node::Mark::synthetic);
        let value = match first_kind {
            Kind::Map => {
                let all = values
                    .into_iter()
                    .flat_map(|v| match v.value {
                        Value::Map(e) => e,
                        _ => Vec::new(),
                    })
                    .collect();
                Value::Map(deep_merge(all)?)
            }
            _ => {
                let all: Vec<Node> = values
                    .into_iter()
                    .flat_map(|v| match v.value {
                        Value::Seq(items) => items,
                        _ => Vec::new(),
                    })
                    .collect();
                let omitted: Vec<Value> = all
                    .iter()
                    .filter(|n| n.tag.as_deref() == Some("!omit"))
                    .map(|n| n.value.clone())
                    .collect();
                Value::Seq(
                    all.into_iter()
                        .filter(|n| !omitted.contains(&n.value))
                        .collect(),
                )
            }
        };
        merged.push((key, Node { value, tag, mark }));
    }
    Ok(merged)
}
