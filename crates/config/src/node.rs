//! A YAML document as a tree of nodes that remember where they came from.
//!
//! borgmatic loads its configuration with ruamel.yaml's safe loader (YAML 1.2 core schema),
//! resolves the `!include`, `!retain` and `!omit` tags while building the document
//! (`borgmatic/config/load.py`), and validates the result with JSON Schema. Validation errors
//! only make sense to a user when they name the file, line and column of the offending value,
//! and an included file's values must keep *its* position, so every [`Node`] carries a
//! [`Mark`] through loading, merging, interpolation and normalisation.
//!
//! The tree is built from the event stream of the parser that serde-saphyr uses
//! ([`serde_saphyr::granit_parser`]); see docs/config.md for why that crate was chosen.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span};

use crate::error::{ConfigError, Diagnostic};

/// Where a node starts: file, 1-based line and 1-based column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The file the node was read from (an included file for included values).
    pub file: Arc<PathBuf>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Mark {
    /// A mark for values that come from no file (built-in defaults, normalisation).
    pub fn synthetic() -> Self {
        Mark {
            file: Arc::new(PathBuf::from("<generated>")),
            line: 0,
            column: 0,
        }
    }

    /// The node's start, or its tag's when it has one (so `!include x` points at `!`).
    fn from_span(file: &Arc<PathBuf>, span: &Span) -> Self {
        let start = span.tag_start().unwrap_or(span.start);
        Mark {
            file: Arc::clone(file),
            line: start.line(),
            column: start.col() + 1,
        }
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// The value of a node after YAML 1.2 core-schema resolution (what ruamel.yaml's safe loader
/// would construct).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `~`, `null`, or an empty value.
    Null,
    /// `true`/`false` in any of the three spellings the core schema allows.
    Bool(bool),
    /// A decimal, `0o` octal, `0x` hexadecimal or `0b` binary integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// Any other scalar, and every quoted one.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order; keys are scalars turned into text.
    Map(Vec<(Key, Node)>),
}

/// A mapping key: its text and where it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The key as text (non-string keys such as `1:` are kept as their source text).
    pub name: String,
    /// Where the key is written.
    pub mark: Mark,
    /// Whether the key is the plain `<<` merge key.
    pub merge: bool,
}

/// A YAML node: value, local tag (such as `!include`) and position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The resolved value.
    pub value: Value,
    /// A local tag written on the node (`!include`, `!retain`, `!omit`), without the `!`
    /// handle resolution: `"!include"`.
    pub tag: Option<String>,
    /// Where the node starts.
    pub mark: Mark,
}

impl Node {
    /// A node with no tag.
    pub fn new(value: Value, mark: Mark) -> Self {
        Node {
            value,
            tag: None,
            mark,
        }
    }

    /// The value of `key` if this node is a mapping that has it (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| k.name == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Mutable access to the value of `key`.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.value {
            Value::Map(entries) => entries
                .iter_mut()
                .rev()
                .find(|(k, _)| k.name == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Removes `key` from a mapping, returning its key and value.
    pub fn remove(&mut self, key: &str) -> Option<(Key, Node)> {
        match &mut self.value {
            Value::Map(entries) => {
                let index = entries.iter().position(|(k, _)| k.name == key)?;
                Some(entries.remove(index))
            }
            _ => None,
        }
    }

    /// Sets `key` in a mapping (replacing an existing value in place, appending otherwise).
    pub fn insert(&mut self, key: Key, value: Node) {
        if let Value::Map(entries) = &mut self.value {
            if let Some(slot) = entries.iter_mut().find(|(k, _)| k.name == key.name) {
                slot.1 = value;
            } else {
                entries.push((key, value));
            }
        }
    }

    /// The string value, if this is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// JSON Schema's name for this node's type, as jsonschema reports it.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "array",
            Value::Map(_) => "object",
        }
    }

    /// Whether the node is "falsy" the way Python tests it (`not value`): null, false, zero,
    /// empty string, empty list or empty mapping. borgmatic skips such values in several places.
    pub fn is_falsy(&self) -> bool {
        match &self.value {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Int(i) => *i == 0,
            Value::Float(f) => *f == 0.0,
            Value::Str(s) => s.is_empty(),
            Value::Seq(v) => v.is_empty(),
            Value::Map(v) => v.is_empty(),
        }
    }

    /// The node as JSON (mappings with repeated keys keep the last value).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The scalar as the text Python's `str()` would give (used by `{constant}`
    /// interpolation, which formats constant values with `str()`).
    pub fn python_str(&self) -> String {
        match &self.value {
            Value::Null => "None".into(),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format!("{f:?}"),
            Value::Str(s) => s.clone(),
            Value::Seq(items) => {
                let inner: Vec<String> = items.iter().map(Node::python_repr).collect();
                format!("[{}]", inner.join(", "))
            }
            Value::Map(entries) => {
                let inner: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("'{}': {}", k.name, v.python_repr()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }

    fn python_repr(&self) -> String {
        match &self.value {
            Value::Str(s) => format!("'{s}'"),
            _ => self.python_str(),
        }
    }
}

/// Resolves a plain (unquoted, untagged) scalar with the YAML 1.2 core schema, the schema
/// ruamel.yaml's safe loader uses (so `yes`/`on` stay strings, unlike YAML 1.1).
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(i) = parse_int(text) {
        return Value::Int(i);
    }
    if is_float(text) {
        if let Ok(f) = text.replace('_', "").parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text.to_string())
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(rest) = body.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = body.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = body.strip_prefix("0b") {
        (2, rest)
    } else {
        (10, body)
    };
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    if cleaned.is_empty() || !cleaned.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i64::from_str_radix(&cleaned, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

fn is_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if let Some(exp) = exponent {
        let exp = exp.strip_prefix(['-', '+']).unwrap_or(exp);
        if exp.is_empty() || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    let mut parts = mantissa.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    match fraction {
        Some(frac) => {
            digits(whole)
                && digits(frac)
                && (whole.bytes().any(|b| b.is_ascii_digit())
                    || frac.bytes().any(|b| b.is_ascii_digit()))
        }
        None => exponent.is_some() && !whole.is_empty() && digits(whole),
    }
}

/// Parses `text` (read from `file`) into a node tree. A stream must hold at most one document,
/// as ruamel.yaml's `load()` requires; an empty document gives a null node. Aliases are expanded to
/// copies of their anchored node.
pub fn parse(text: &str, file: &Path) -> Result<Node, ConfigError> {
    let file = Arc::new(file.to_path_buf());
    let mut builder = Builder {
        file: Arc::clone(&file),
        anchors: Vec::new(),
        stack: Vec::new(),
        root: None,
        alias_budget: MAX_ALIAS_NODES,
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let mark = e.marker();
            ConfigError::Invalid(vec![Diagnostic {
                mark: Some(Mark {
                    file: Arc::clone(&file),
                    line: mark.line(),
                    column: mark.col() + 1,
                }),
                path: String::new(),
                message: format!("YAML syntax error: {}", e.kind()),
            }])
        })?;
        builder.event(event, &span)?;
    }
    Ok(builder.root.unwrap_or_else(|| {
        Node::new(
            Value::Null,
            Mark {
                file,
                line: 1,
                column: 1,
            },
        )
    }))
}

/// A collection being built: its node, and for mappings a key waiting for its value.
struct Open {
    node: Node,
    anchor: usize,
    pending_key: Option<Key>,
}

struct Builder {
    file: Arc<PathBuf>,
    anchors: Vec<(usize, Node, usize)>,
    stack: Vec<Open>,
    root: Option<Node>,
    /// Nodes that alias expansion may still create (see [`MAX_ALIAS_NODES`]).
    alias_budget: usize,
}

/// How many nodes alias expansion may copy in one document, so that a "billion laughs"
/// document (aliases of aliases) is an error instead of exhausting memory.
const MAX_ALIAS_NODES: usize = 1_000_000;

fn count_nodes(node: &Node) -> usize {
    1 + match &node.value {
        Value::Seq(items) => items.iter().map(count_nodes).sum(),
        Value::Map(entries) => entries.iter().map(|(_, v)| 1 + count_nodes(v)).sum(),
        _ => 0,
    }
}

/// The hard limit on collection nesting, so that hostile input cannot exhaust the stack of
/// the recursive passes that follow parsing.
const MAX_DEPTH: usize = 256;

impl Builder {
    /// Handles one event.
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), ConfigError> {
        let mark = Mark::from_span(&self.file, span);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag_text = tag
                    .as_ref()
                    .map(|t| format!("{}{}", t.handle(), t.suffix()));
                let value = match (&tag_text, style) {
                    (Some(t), _) if t == "tag:yaml.org,2002:str" => Value::Str(text.to_string()),
                    (Some(t), _) if t.starts_with("tag:yaml.org,2002:") => resolve_plain(&text),
                    (_, ScalarStyle::Plain) => resolve_plain(&text),
                    _ => Value::Str(text.to_string()),
                };
                let is_merge_key =
                    style == ScalarStyle::Plain && tag_text.is_none() && text == "<<";
                let node = Node {
                    value,
                    tag: local_tag(tag_text),
                    mark,
                };
                self.push_node(node, anchor, is_merge_key)?;
            }
            Event::SequenceStart(_, anchor, tag) => {
                self.open(Value::Seq(Vec::new()), tag, anchor, mark)?;
            }
            Event::MappingStart(_, anchor, tag) => {
                self.open(Value::Map(Vec::new()), tag, anchor, mark)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = self.stack.pop() {
                    self.push_node(open.node, open.anchor, false)?;
                }
            }
            Event::Alias(id) => {
                let Some((_, anchored, size)) =
                    self.anchors.iter().rev().find(|(a, _, _)| *a == id)
                else {
                    return Err(ConfigError::at(
                        &mark,
                        "",
                        "YAML alias to an unknown anchor",
                    ));
                };
                if *size > self.alias_budget {
                    return Err(ConfigError::at(
                        &mark,
                        "",
                        format!("YAML aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                    ));
                }
                self.alias_budget -= size;
                let node = anchored.clone();
                self.push_node(node, 0, false)?;
            }
            Event::DocumentStart(..) if self.root.is_some() => {
                // ruamel.yaml's `load()` (and so borgmatic) refuses multi-document files.
                return Err(ConfigError::at(
                    &mark,
                    "",
                    "expected a single document in the stream, but found another document",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn open(
        &mut self,
        value: Value,
        tag: Option<std::borrow::Cow<'_, serde_saphyr::granit_parser::Tag>>,
        anchor: usize,
        mark: Mark,
    ) -> Result<(), ConfigError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(ConfigError::Invalid(vec![Diagnostic {
                mark: Some(mark),
                path: String::new(),
                message: format!("YAML nesting deeper than {MAX_DEPTH} levels"),
            }]));
        }
        let tag_text = tag.map(|t| format!("{}{}", t.handle(), t.suffix()));
        self.stack.push(Open {
            node: Node {
                value,
                tag: local_tag(tag_text),
                mark,
            },
            anchor,
            pending_key: None,
        });
        Ok(())
    }

    fn push_node(
        &mut self,
        node: Node,
        anchor: usize,
        is_merge_key: bool,
    ) -> Result<(), ConfigError> {
        if anchor != 0 {
            let size = count_nodes(&node);
            self.anchors.push((anchor, node.clone(), size));
        }
        let Some(parent) = self.stack.last_mut() else {
            if self.root.is_none() {
                self.root = Some(node);
            }
            return Ok(());
        };
        match &mut parent.node.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => {
                match parent.pending_key.take() {
                    Some(key) => entries.push((key, node)),
                    None => {
                        let name = match &node.value {
                        Value::Str(s) => s.clone(),
                        Value::Null => String::new(),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(ConfigError::Invalid(vec![Diagnostic {
                                mark: Some(node.mark),
                                path: String::new(),
                                message: "complex (sequence or mapping) mapping keys are not supported".into(),
                            }]))
                        }
                        Value::Bool(b) => b.to_string(),
                        _ => node.python_str(),
                    };
                        parent.pending_key = Some(Key {
                            name,
                            mark: node.mark,
                            merge: is_merge_key,
                        });
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Keeps only local tags (`!name`); core-schema tags were already applied to the value.
fn local_tag(tag: Option<String>) -> Option<String> {
    tag.filter(|t| !t.starts_with("tag:yaml.org,2002:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema_scalars() {
        assert_eq!(resolve_plain("yes"), Value::Str("yes".into()));
        assert_eq!(resolve_plain("True"), Value::Bool(true));
        assert_eq!(resolve_plain("0o17"), Value::Int(15));
        assert_eq!(resolve_plain("-12"), Value::Int(-12));
        assert_eq!(resolve_plain("1.5"), Value::Float(1.5));
        assert_eq!(resolve_plain("1e3"), Value::Float(1000.0));
        assert_eq!(resolve_plain("zstd,3"), Value::Str("zstd,3".into()));
        assert_eq!(resolve_plain("3H"), Value::Str("3H".into()));
        assert_eq!(resolve_plain("."), Value::Str(".".into()));
        assert_eq!(resolve_plain("~"), Value::Null);
    }

    #[test]
    fn marks_and_tags() {
        let node = parse("a: 1\nb:\n  - !include x.yaml\n", Path::new("f.yaml")).unwrap();
        let b = node.get("b").unwrap();
        assert_eq!((b.mark.line, b.mark.column), (3, 3));
        let Value::Seq(items) = &b.value else {
            panic!()
        };
        assert_eq!(items[0].tag.as_deref(), Some("!include"));
        assert_eq!(items[0].mark.column, 5);
    }
}
