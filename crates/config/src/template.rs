//! A commented configuration template with every option, like `borgmatic config generate`
//! (`borgmatic/config/generate.py`): each option is preceded by its schema description as
//! comments and shown with its schema example; required options (and `source_directories`)
//! are active, all others commented out. It is generated from the same embedded schema the
//! validator uses, so it always lists exactly the options that validate.

use crate::node::{resolve_plain, Node, Value};
use crate::schema::schema;

const INDENT: usize = 4;

struct Line {
    indent: usize,
    text: String,
    comment: bool,
}

/// The template text (see the module docs). It parses and validates as a configuration.
pub fn generate_template() -> String {
    let mut lines = Vec::new();
    object_body(schema(), 0, true, true, false, &mut lines);
    let mut out = String::new();
    for line in lines {
        if line.text.is_empty() {
            out.push('\n');
        } else {
            out.push_str(&" ".repeat(line.indent));
            out.push_str(&line.text);
            out.push('\n');
        }
    }
    out
}

fn required(schema: &Node) -> Vec<String> {
    match schema.get("required").map(|r| &r.value) {
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn properties(schema: &Node) -> Vec<(&str, &Node)> {
    match schema.get("properties").map(|p| &p.value) {
        Some(Value::Map(entries)) => entries.iter().map(|(k, v)| (k.name.as_str(), v)).collect(),
        _ => Vec::new(),
    }
}

/// The options of an object schema, each with its description; `active` says whether the
/// object itself is active (so its required options can be too).
fn object_body(
    schema: &Node,
    indent: usize,
    active: bool,
    top: bool,
    list_item: bool,
    lines: &mut Vec<Line>,
) {
    let required = required(schema);
    let mut props = properties(schema);
    if list_item {
        // Required options first, so that a list item starts with an active line.
        props.sort_by_key(|(name, _)| !required.iter().any(|r| r == name));
    }
    for (i, (name, prop)) in props.into_iter().enumerate() {
        if i > 0 {
            lines.push(Line {
                indent: 0,
                text: String::new(),
                comment: true,
            });
        }
        if let Some(description) = prop.get("description").and_then(Node::as_str) {
            for text in description.trim_end().lines() {
                lines.push(Line {
                    indent,
                    text: format!("# {text}").trim_end().to_string(),
                    comment: true,
                });
            }
        }
        let on =
            active && (required.iter().any(|r| r == name) || (top && name == "source_directories"));
        let mut option = option_lines(name, prop, indent, on);
        if !on {
            for line in &mut option {
                if !line.comment && !line.text.starts_with('#') {
                    line.text = format!("# {}", line.text);
                }
            }
        }
        lines.extend(option);
    }
}

fn is_type(schema: &Node, ty: &str) -> bool {
    match schema.get("type").map(|t| &t.value) {
        Some(Value::Str(s)) => s == ty,
        Some(Value::Seq(items)) => items.iter().any(|i| i.as_str() == Some(ty)),
        _ => false,
    }
}

fn option_lines(name: &str, prop: &Node, indent: usize, active: bool) -> Vec<Line> {
    let mut lines = Vec::new();
    let header = |lines: &mut Vec<Line>| {
        lines.push(Line {
            indent,
            text: format!("{name}:"),
            comment: false,
        })
    };
    let items = prop.get("items");
    if is_type(prop, "object") && !properties(prop).is_empty() {
        header(&mut lines);
        object_body(prop, indent + INDENT, active, false, false, &mut lines);
    } else if let Some(item) = items.filter(|i| is_type(prop, "array") && !properties(i).is_empty())
    {
        header(&mut lines);
        let mut body = Vec::new();
        object_body(item, indent + INDENT + 2, active, false, true, &mut body);
        let mut dashed = false;
        for mut line in body {
            if !dashed && !line.comment {
                line.indent -= 2;
                line.text = match line.text.strip_prefix("# ") {
                    Some(rest) => format!("# - {rest}"),
                    None => format!("- {}", line.text),
                };
                dashed = true;
            } else if !dashed && line.comment && !line.text.is_empty() {
                line.indent -= 2;
            }
            lines.push(line);
        }
    } else {
        match prop.get("example") {
            Some(example) => value_lines(Some(name), example, indent, &mut lines),
            None => lines.push(Line {
                indent,
                text: format!("{name}:"),
                comment: false,
            }),
        }
    }
    lines
}

/// YAML for `value` under `key` (or as a bare value when `key` is None).
fn value_lines(key: Option<&str>, value: &Node, indent: usize, lines: &mut Vec<Line>) {
    let prefix = key.map(|k| format!("{k}:")).unwrap_or_default();
    match &value.value {
        Value::Seq(items) if !items.is_empty() => {
            if key.is_some() {
                lines.push(line(indent, prefix));
            }
            let item_indent = if key.is_some() {
                indent + INDENT
            } else {
                indent
            };
            for item in items {
                let mut sub = Vec::new();
                value_lines(None, item, item_indent + 2, &mut sub);
                if let Some(first) = sub.first_mut() {
                    first.indent = item_indent;
                    first.text = format!("- {}", first.text);
                }
                lines.extend(sub);
            }
        }
        Value::Map(entries) if !entries.is_empty() => {
            let entry_indent = if key.is_some() {
                lines.push(line(indent, prefix));
                indent + INDENT
            } else {
                indent
            };
            for (k, v) in entries {
                value_lines(
                    Some(&scalar(&Node::new(
                        Value::Str(k.name.clone()),
                        v.mark.clone(),
                    ))),
                    v,
                    entry_indent,
                    lines,
                );
            }
        }
        _ => {
            let text = scalar(value);
            lines.push(line(
                indent,
                if key.is_some() {
                    format!("{prefix} {text}")
                } else {
                    text
                },
            ));
        }
    }
}

fn line(indent: usize, text: String) -> Line {
    Line {
        indent,
        text,
        comment: false,
    }
}

/// A scalar in YAML: plain when it reads back as the same string, double-quoted otherwise.
fn scalar(node: &Node) -> String {
    match &node.value {
        Value::Str(s) => {
            let plain_safe = !s.is_empty()
                && resolve_plain(s) == Value::Str(s.clone())
                && !s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c))
                && !s.ends_with([' ', ':'])
                && !s.contains(": ")
                && !s.contains(" #")
                && !s.contains('\n');
            if plain_safe {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap_or_default()
            }
        }
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Seq(_) => "[]".into(),
        Value::Map(_) => "{}".into(),
    }
}
