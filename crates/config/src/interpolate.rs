//! Value interpolation: `{constant}`, `${VAR}` / `${VAR:-default}`, and
//! `{credential file PATH}` / `{credential systemd NAME}`.
//!
//! The rules follow borgmatic 2.x:
//!
//! * constants (`borgmatic/config/constants.py`): every `{name}` in a string value whose name
//!   is a key of the top-level `constants:` mapping is replaced by the constant (formatted as
//!   Python's `str()` would); `\{name\}` stays as the literal `{name}` (kept escaped inside
//!   command hooks, whose later `{variable}` interpolation handles it). Inside command hooks
//!   (options named `before_*`, `after_*`, `on_error`, and `run` under `commands:`) the value
//!   is shell-quoted. When there are constants, every string that then reads as an integer
//!   or `true`/`false` becomes one, which lets constants fill integer or boolean options.
//! * environment (`borgmatic/config/environment.py`): `${NAME}` is the variable's value, an
//!   error if unset; `${NAME:-default}` and `${NAME-default}` fall back to `default`;
//!   `\${NAME}` is the literal `${NAME}`.
//! * credentials (`borgmatic/hooks/credential/`): resolved only when an option is used, not
//!   while loading, by [`resolve_credential`].

use std::path::Path;

use crate::error::ConfigError;
use crate::node::{Node, Value};

/// Applies `constants` to every string value under `node` (see the module docs).
pub fn apply_constants(node: &mut Node, constants: &[(String, Node)]) {
    if constants.is_empty() {
        return;
    }
    apply_constants_inner(node, constants, false);
}

fn apply_constants_inner(node: &mut Node, constants: &[(String, Node)], command_hook: bool) {
    match &mut node.value {
        Value::Str(s) => {
            let replaced = substitute_constants(s, constants, command_hook);
            node.value = coerce_scalar(replaced);
        }
        Value::Seq(items) => {
            for item in items {
                apply_constants_inner(item, constants, command_hook);
            }
        }
        Value::Map(entries) => {
            for (key, value) in entries {
                let hook = command_hook
                    || key.name.starts_with("before_")
                    || key.name.starts_with("after_")
                    || key.name == "on_error"
                    || key.name == "run";
                apply_constants_inner(value, constants, hook);
            }
        }
        _ => {}
    }
}

/// Python's `int(text)` / `{'true': True, ...}` coercion borgmatic applies after constant
/// substitution.
fn coerce_scalar(text: String) -> Value {
    if let Some(i) = python_int(&text) {
        return Value::Int(i);
    }
    match text.as_str() {
        "true" | "True" => Value::Bool(true),
        "false" | "False" => Value::Bool(false),
        _ => Value::Str(text),
    }
}

/// What Python's `int(str)` accepts: surrounding whitespace, a sign, ASCII digits with single
/// underscores between them.
fn python_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body.is_empty()
        || body.starts_with('_')
        || body.ends_with('_')
        || body.contains("__")
        || !body.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    t.replace('_', "").parse().ok()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn substitute_constants(s: &str, constants: &[(String, Node)], command_hook: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        // A `\` right before `{` belongs to the match.
        let left_escape = rest[..open].ends_with('\\');
        let after = &rest[open + 1..];
        let name_len: usize = after
            .chars()
            .take_while(|c| is_word(*c))
            .map(char::len_utf8)
            .sum();
        let name = &after[..name_len];
        let tail = &after[name_len..];
        let (right_escape, close_len) = if tail.starts_with("\\}") {
            (true, 2)
        } else if tail.starts_with('}') {
            (false, 1)
        } else {
            (false, 0)
        };
        if name.is_empty() || close_len == 0 {
            out.push_str(&rest[..open + 1]);
            rest = after;
            continue;
        }
        let start = if left_escape { open - 1 } else { open };
        let end = open + 1 + name_len + close_len;
        let whole = &rest[start..end];
        out.push_str(&rest[..start]);
        if left_escape && right_escape {
            if command_hook {
                out.push_str(whole);
            } else {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        } else {
            match constants.iter().rev().find(|(n, _)| n == name) {
                Some((_, value)) if value.value != Value::Null => {
                    let text = value.python_str();
                    if command_hook {
                        out.push_str(&shell_quote(&text));
                    } else {
                        out.push_str(&text);
                    }
                }
                _ => out.push_str(whole),
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Quotes `s` for a POSIX shell the way Python's `shlex.quote` does.
pub fn shell_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// Replaces `${VAR}` references in every string value under `node` using `lookup`
/// (normally `std::env::var`); errors name the first unset variable without a default.
pub fn resolve_env(
    node: &mut Node,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match &mut node.value {
        Value::Str(s) => match substitute_env(s, lookup) {
            Ok(new) => *s = new,
            Err(name) => {
                return Err(ConfigError::at(
                    &node.mark,
                    path,
                    format!("Cannot find variable {name} in environment"),
                ))
            }
        },
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve_env(item, &format!("{path}[{i}]"), lookup)?;
            }
        }
        Value::Map(entries) => {
            for (key, value) in entries {
                let child = if path.is_empty() {
                    key.name.clone()
                } else {
                    format!("{path}.{}", key.name)
                };
                resolve_env(value, &child, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Substitutes `${NAME}`, `${NAME:-default}`, `${NAME-default}` and `\${...}` in `s`;
/// returns the name of an unset variable without default as the error.
pub fn substitute_env(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(dollar) = rest.find("${") {
        let after = &rest[dollar + 2..];
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let name = &after[..name_len];
        let tail = &after[name_len..];
        // The optional default: `:-text` or `-text`, text non-empty and without `}`.
        let (default, body_len) = {
            let marker = if tail.starts_with(":-") {
                2
            } else if tail.starts_with('-') {
                1
            } else {
                0
            };
            let text_len = tail[marker..].find('}').unwrap_or(0);
            if marker > 0 && text_len > 0 {
                (Some(&tail[marker..marker + text_len]), marker + text_len)
            } else {
                (None, 0)
            }
        };
        if name.is_empty() || !tail[body_len..].starts_with('}') {
            out.push_str(&rest[..dollar + 2]);
            rest = after;
            continue;
        }
        let end = dollar + 2 + name_len + body_len + 1;
        let escaped = rest[..dollar].ends_with('\\');
        let start = if escaped { dollar - 1 } else { dollar };
        out.push_str(&rest[..start]);
        if escaped {
            out.push_str(&rest[dollar..end]);
        } else {
            match lookup(name).or_else(|| default.map(str::to_string)) {
                Some(value) => out.push_str(&value),
                None => return Err(name.to_string()),
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Why a `{credential ...}` value could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The value is not `{credential HOOK PARAMETER}`.
    #[error("Cannot load credential with invalid syntax \"{0}\"")]
    Syntax(String),
    /// A hook rborg does not implement (container, keepassxc, 1Password need external tools).
    #[error("credential hook \"{0}\" is not supported by rborg (supported: file, systemd)")]
    Unsupported(String),
    /// The systemd credential name has characters systemd does not allow.
    #[error("Cannot load invalid credential name \"{0}\"")]
    InvalidName(String),
    /// `$CREDENTIALS_DIRECTORY` is unset (borgmatic would run `systemd-creds decrypt`).
    #[error("Cannot load credential \"{0}\": the systemd CREDENTIALS_DIRECTORY environment variable is not set")]
    NoCredentialsDirectory(String),
    /// The credential file could not be read.
    #[error("Cannot load credential file: {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Resolves a value of the form `{credential file PATH}` or `{credential systemd NAME}`
/// (borgmatic 1.9.10+, `borgmatic/hooks/credential/{parse,file,systemd}.py`): the file's
/// content (a relative PATH is relative to `working_directory`; `~` is expanded) or
/// `$CREDENTIALS_DIRECTORY/NAME`, without trailing newlines. Any other value is returned
/// unchanged. Options that accept credentials include `encryption_passphrase` and the
/// database `password`s; callers resolve them when they use them, as borgmatic does.
pub fn resolve_credential(
    value: &str,
    working_directory: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, CredentialError> {
    let Some(inner) = value
        .strip_prefix("{credential")
        .and_then(|r| r.strip_suffix('}'))
    else {
        return Ok(value.to_string());
    };
    if !inner.is_empty() && !inner.starts_with(' ') {
        return Ok(value.to_string());
    }
    let words: Vec<&str> = inner.split_whitespace().collect();
    let [hook, parameter] = words.as_slice() else {
        return Err(CredentialError::Syntax(value.to_string()));
    };
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|source| CredentialError::Io {
                path: path.display().to_string(),
                source,
            })
    };
    match *hook {
        "file" => {
            let path = crate::load::expand_user(parameter);
            let full = match working_directory {
                Some(dir) => Path::new(dir).join(path),
                None => path,
            };
            read(&full)
        }
        "systemd" => {
            let valid = parameter
                .chars()
                .all(|c| c.is_alphanumeric() || "_.-".contains(c));
            if !valid {
                return Err(CredentialError::InvalidName(parameter.to_string()));
            }
            let dir = env("CREDENTIALS_DIRECTORY")
                .filter(|d| !d.is_empty())
                .ok_or_else(|| CredentialError::NoCredentialsDirectory(parameter.to_string()))?;
            read(&Path::new(&dir).join(parameter))
        }
        other => Err(CredentialError::Unsupported(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Mark;

    fn consts(pairs: &[(&str, Value)]) -> Vec<(String, Node)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Node::new(v.clone(), Mark::synthetic())))
            .collect()
    }

    #[test]
    fn constants_escape_and_quote() {
        let c = consts(&[("app", Value::Str("my app".into())), ("n", Value::Int(3))]);
        assert_eq!(
            substitute_constants("/srv/{app}/x", &c, false),
            "/srv/my app/x"
        );
        assert_eq!(
            substitute_constants("echo {app}", &c, true),
            "echo 'my app'"
        );
        assert_eq!(substitute_constants("\\{app\\}", &c, false), "{app}");
        assert_eq!(substitute_constants("\\{app\\}", &c, true), "\\{app\\}");
        assert_eq!(
            substitute_constants("{missing} {n}", &c, false),
            "{missing} 3"
        );
        assert_eq!(substitute_constants("{ app}{", &c, false), "{ app}{");
        assert_eq!(coerce_scalar("3".into()), Value::Int(3));
        assert_eq!(coerce_scalar("1_000".into()), Value::Int(1000));
        assert_eq!(coerce_scalar("True".into()), Value::Bool(true));
        assert_eq!(coerce_scalar("yes".into()), Value::Str("yes".into()));
    }

    #[test]
    fn env_forms() {
        let env = |n: &str| (n == "HOST").then(|| "web1".to_string());
        assert_eq!(substitute_env("a-${HOST}", &env).unwrap(), "a-web1");
        assert_eq!(substitute_env("${NOPE:-d}/${NOPE-e}", &env).unwrap(), "d/e");
        assert_eq!(substitute_env("\\${HOST}", &env).unwrap(), "${HOST}");
        assert_eq!(substitute_env("${NOPE}", &env).unwrap_err(), "NOPE");
        assert_eq!(
            substitute_env("$HOST ${ } ${HOST", &env).unwrap(),
            "$HOST ${ } ${HOST"
        );
        assert_eq!(shell_quote("it's"), "'it'\"'\"'s'");
    }
}
