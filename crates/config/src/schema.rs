//! borgmatic's configuration schema and a validator for it.
//!
//! The schema is borgmatic 2.x's own (`borgmatic/config/schema.yaml`, a JSON Schema written in
//! YAML), converted to `schema.json` by `testdata/gen/config_schema.py` and embedded here. It
//! is the single source of option names, types, enums, required options, descriptions and
//! examples: the validator below and [`crate::generate_template`] both read it.
//!
//! The validator implements the JSON Schema (draft 7) keywords the schema uses: `type`,
//! `properties`, `additionalProperties`, `required`, `items`, `enum`, `uniqueItems`, `not`
//! and `oneOf`. Messages follow the `jsonschema` package borgmatic uses; unknown options get
//! a "did you mean" suggestion, and each error carries the file, line and column.

use std::path::Path;
use std::sync::OnceLock;

use crate::error::Diagnostic;
use crate::node::{self, Node, Value};

const SCHEMA_JSON: &str = include_str!("schema.json");

/// The parsed schema (parsed once, with its key order kept for the template).
pub fn schema() -> &'static Node {
    static SCHEMA: OnceLock<Node> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // The embedded schema is generated, checked by this crate's tests, and cannot fail to
        // parse; fall back to an empty schema rather than panicking if it ever did.
        node::parse(SCHEMA_JSON, Path::new("schema.json"))
            .unwrap_or_else(|_| Node::new(Value::Map(Vec::new()), node::Mark::synthetic()))
    })
}

/// The names of the top-level options, in schema order.
pub fn top_level_options() -> Vec<&'static str> {
    match schema().get("properties").map(|p| &p.value) {
        Some(Value::Map(entries)) => entries.iter().map(|(k, _)| k.name.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// Validates `instance` against the (sub)schema `schema`; `path` is the option path of
/// `instance`. Errors are appended to `errors`.
pub fn validate(schema: &Node, instance: &Node, path: &str, errors: &mut Vec<Diagnostic>) {
    let err = |errors: &mut Vec<Diagnostic>, node: &Node, message: String| {
        errors.push(Diagnostic {
            mark: Some(node.mark.clone()),
            path: path.to_string(),
            message,
        })
    };
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match &types.value {
            Value::Str(s) => vec![s.as_str()],
            Value::Seq(items) => items.iter().filter_map(Node::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.iter().any(|t| is_type(instance, t)) {
            let names: Vec<String> = allowed.iter().map(|t| format!("'{t}'")).collect();
            err(
                errors,
                instance,
                format!("{} is not of type {}", repr(instance), names.join(", ")),
            );
        }
    }
    if let Some(Value::Seq(options)) = schema.get("enum").map(|e| &e.value) {
        if !options.iter().any(|o| same(o, instance)) {
            let names: Vec<String> = options.iter().map(repr).collect();
            err(
                errors,
                instance,
                format!("{} is not one of [{}]", repr(instance), names.join(", ")),
            );
        }
    }
    if let Some(not) = schema.get("not") {
        let mut sub = Vec::new();
        validate(not, instance, path, &mut sub);
        if sub.is_empty() {
            err(
                errors,
                instance,
                format!("{} is not allowed here", repr(instance)),
            );
        }
    }
    if let Some(Value::Seq(alternatives)) = schema.get("oneOf").map(|o| &o.value) {
        let results: Vec<Vec<Diagnostic>> = alternatives
            .iter()
            .map(|alt| {
                let mut sub = Vec::new();
                validate(alt, instance, path, &mut sub);
                sub
            })
            .collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid == 0 {
            // Report the alternative that got furthest (fewest errors), so the user sees
            // a concrete problem rather than only "not valid under any".
            let best = results
                .iter()
                .min_by_key(|r| r.len())
                .cloned()
                .unwrap_or_default();
            err(
                errors,
                instance,
                format!(
                    "{} is not valid under any of the given schemas",
                    repr(instance)
                ),
            );
            errors.extend(best);
        } else if valid > 1 {
            err(
                errors,
                instance,
                format!(
                    "{} is valid under each of the given schemas",
                    repr(instance)
                ),
            );
        }
    }
    match &instance.value {
        Value::Map(entries) => validate_object(schema, instance, entries, path, errors),
        Value::Seq(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
            if matches!(
                schema.get("uniqueItems").map(|u| &u.value),
                Some(Value::Bool(true))
            ) {
                let duplicate = items
                    .iter()
                    .enumerate()
                    .any(|(i, a)| items[..i].iter().any(|b| same(a, b)));
                if duplicate {
                    err(
                        errors,
                        instance,
                        format!("{} has non-unique elements", repr(instance)),
                    );
                }
            }
        }
        _ => {}
    }
}

fn validate_object(
    schema: &Node,
    instance: &Node,
    entries: &[(node::Key, Node)],
    path: &str,
    errors: &mut Vec<Diagnostic>,
) {
    let properties: &[(node::Key, Node)] = match schema.get("properties").map(|p| &p.value) {
        Some(Value::Map(p)) => p,
        _ => &[],
    };
    if let Some(Value::Seq(required)) = schema.get("required").map(|r| &r.value) {
        for name in required.iter().filter_map(Node::as_str) {
            if !entries.iter().any(|(k, _)| k.name == name) {
                errors.push(Diagnostic {
                    mark: Some(instance.mark.clone()),
                    path: path.to_string(),
                    message: format!("'{name}' is a required property"),
                });
            }
        }
    }
    let closed = matches!(
        schema.get("additionalProperties").map(|a| &a.value),
        Some(Value::Bool(false))
    );
    for (key, value) in entries {
        let child = child_path(path, &key.name);
        match properties.iter().find(|(k, _)| k.name == key.name) {
            Some((_, sub)) => validate(sub, value, &child, errors),
            None if closed => {
                let known: Vec<&str> = properties.iter().map(|(k, _)| k.name.as_str()).collect();
                let mut message = format!(
                    "Additional properties are not allowed ('{}' was unexpected)",
                    key.name
                );
                if let Some(suggestion) = nearest(&key.name, &known) {
                    message.push_str(&format!("; did you mean '{suggestion}'?"));
                }
                errors.push(Diagnostic {
                    mark: Some(key.mark.clone()),
                    path: path.to_string(),
                    message,
                });
            }
            None => {}
        }
    }
}

/// `parent.child`, or `child` at the top level.
pub fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn is_type(node: &Node, ty: &str) -> bool {
    match (ty, &node.value) {
        ("null", Value::Null) | ("boolean", Value::Bool(_)) | ("string", Value::Str(_)) => true,
        ("array", Value::Seq(_)) | ("object", Value::Map(_)) => true,
        ("integer", Value::Int(_)) | ("number", Value::Int(_) | Value::Float(_)) => true,
        ("integer", Value::Float(f)) => f.fract() == 0.0,
        _ => false,
    }
}

/// JSON equality (as `enum` and `uniqueItems` compare): numbers by value, booleans are not
/// numbers.
fn same(a: &Node, b: &Node) -> bool {
    a.to_json() == b.to_json()
}

/// The value as Python's `repr()` shows it in jsonschema messages.
pub fn repr(node: &Node) -> String {
    match &node.value {
        Value::Str(s) => format!("'{s}'"),
        Value::Seq(items) => format!(
            "[{}]",
            items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("'{}': {}", k.name, repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => node.python_str(),
    }
}

/// The known name closest to `name` by edit distance, if close enough to be a likely typo
/// (distance at most a third of the length, and at least 1 allowed; or one contains the
/// other's word parts, e.g. `keepdaily` / `keep_daily`).
pub fn nearest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let squash = |s: &str| s.replace(['_', '-'], "").to_lowercase();
    let (best, distance) = known
        .iter()
        .map(|k| {
            (
                *k,
                levenshtein(name, k).min(levenshtein(&squash(name), &squash(k))),
            )
        })
        .min_by_key(|(_, d)| *d)?;
    let limit = (name.chars().count() / 3).max(1);
    (distance <= limit).then_some(best)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_borgmatics() {
        let options = top_level_options();
        assert!(options.len() > 100, "{}", options.len());
        for name in [
            "source_directories",
            "repositories",
            "keep_daily",
            "commands",
            "healthchecks",
        ] {
            assert!(options.contains(&name), "{name}");
        }
    }

    #[test]
    fn suggestions() {
        let known = [
            "keep_daily",
            "keep_weekly",
            "compression",
            "source_directories",
        ];
        assert_eq!(nearest("keep_dialy", &known), Some("keep_daily"));
        assert_eq!(nearest("keepdaily", &known), Some("keep_daily"));
        assert_eq!(nearest("compresion", &known), Some("compression"));
        assert_eq!(nearest("zzz", &known), None);
    }
}
