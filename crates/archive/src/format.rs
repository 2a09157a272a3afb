//! Output formatting as borg 1.2 does it for `borg list` and friends (`helpers/parseformat.py`
//! `BaseFormatter`/`ItemFormatter`/`ArchiveFormatter`, `helpers/time.py`).
//!
//! borg builds lines with Python's `str.format_map`, so users write Python format strings like
//! `{archive:<36} {time} [{id}]{NL}`. [`Template`] parses such a string and renders it with
//! Python's format-spec mini-language for strings and integers, and `strftime` for timestamps
//! (borg's `OutputTimestamp.__format__`). The helpers reproduce the Python functions borg's
//! output depends on: `stat.filemode`, `shlex.quote`, `json.dumps` string escaping,
//! `remove_surrogates` and the local-time conversions.
//!
//! ```
//! use rborg_archive::format::{Template, Value};
//! let t = Template::parse("{name:<6}|{size:>5}|{n:,}").unwrap();
//! let out = t.render(&|k: &str| match k {
//!     "name" => Some(Value::Str("ab".into())),
//!     "size" => Some(Value::Int(42)),
//!     "n" => Some(Value::Int(1234567)),
//!     _ => None,
//! }).unwrap();
//! assert_eq!(out, "ab    |   42|1,234,567");
//! ```

use std::fmt::Write as _;

use chrono::{Local, NaiveDateTime, TimeZone};

/// A value a placeholder can take.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A Python `str`.
    Str(String),
    /// A Python `int`.
    Int(i128),
    /// A Python `bool` (formats as `True`/`False`).
    Bool(bool),
    /// A local timestamp (borg's `OutputTimestamp`): the format spec is a `strftime` format,
    /// empty meaning `%a, %Y-%m-%d %H:%M:%S`.
    Time(NaiveDateTime),
}

/// Why a format string could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Unbalanced braces or other syntax error (Python's `ValueError`).
    #[error("{0}")]
    Syntax(String),
    /// A placeholder names no known key (Python's `KeyError`).
    #[error("KeyError: '{0}'")]
    UnknownKey(String),
    /// The format spec does not fit the value (Python's `ValueError`).
    #[error("{0}")]
    BadSpec(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Literal(String),
    Field { key: String, spec: String },
}

/// A parsed Python format string.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `format` (`{key}`, `{key:spec}`, `{{` and `}}`; no attribute access, indexing or
    /// `!` conversions, which borg's formats do not use).
    pub fn parse(format: &str) -> Result<Template, FormatError> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => {
                    return Err(FormatError::Syntax(
                        "Single '}' encountered in format string".into(),
                    ))
                }
                '{' => {
                    let mut field = String::new();
                    let mut depth = 1;
                    loop {
                        match chars.next() {
                            None => {
                                return Err(FormatError::Syntax(
                                    "expected '}' before end of string".into(),
                                ))
                            }
                            Some('{') => {
                                depth += 1;
                                field.push('{');
                            }
                            Some('}') => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                                field.push('}');
                            }
                            Some(c) => field.push(c),
                        }
                    }
                    let (key, spec) = match field.split_once(':') {
                        Some((k, s)) => (k.to_string(), s.to_string()),
                        None => (field, String::new()),
                    };
                    if key.contains('!') || key.contains('[') || key.contains('.') {
                        return Err(FormatError::Syntax(format!("unsupported field {key:?}")));
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Field { key, spec });
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Ok(Template { pieces })
    }

    /// The keys the template uses (Python's `{f[1] for f in Formatter().parse(format)}`).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field { key, .. } => Some(key.as_str()),
            Piece::Literal(_) => None,
        })
    }

    /// Renders the template, looking up each key with `lookup`.
    pub fn render(&self, lookup: &dyn Fn(&str) -> Option<Value>) -> Result<String, FormatError> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Field { key, spec } => {
                    let v = lookup(key).ok_or_else(|| FormatError::UnknownKey(key.clone()))?;
                    out.push_str(&format_value(&v, spec)?);
                }
            }
        }
        Ok(out)
    }
}

/// borg's `BaseFormatter.FIXED_KEYS`.
pub fn fixed_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "LF" | "NEWLINE" | "NL" => "\n",
        "SPACE" => " ",
        "TAB" => "\t",
        "CR" => "\r",
        "NUL" => "\0",
        _ => return None,
    })
}

/// Python's format-spec mini-language, parsed.
#[derive(Debug, Default)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    alternate: bool,
    zero: bool,
    width: usize,
    grouping: Option<char>,
    precision: Option<usize>,
    ty: Option<char>,
}

fn parse_spec(spec: &str) -> Result<Spec, FormatError> {
    let bad = || FormatError::BadSpec("Invalid format specifier".into());
    let chars: Vec<char> = spec.chars().collect();
    let mut s = Spec::default();
    let mut i = 0;
    let is_align = |c: char| matches!(c, '<' | '>' | '^' | '=');
    if chars.len() >= 2 && is_align(chars[1]) {
        s.fill = Some(chars[0]);
        s.align = Some(chars[1]);
        i = 2;
    } else if !chars.is_empty() && is_align(chars[0]) {
        s.align = Some(chars[0]);
        i = 1;
    }
    if let Some(&c) = chars.get(i) {
        if matches!(c, '+' | '-' | ' ') {
            s.sign = Some(c);
            i += 1;
        }
    }
    if chars.get(i) == Some(&'#') {
        s.alternate = true;
        i += 1;
    }
    if chars.get(i) == Some(&'0') {
        s.zero = true;
        i += 1;
    }
    let start = i;
    while chars.get(i).is_some_and(|c| c.is_ascii_digit()) {
        i += 1;
    }
    if i > start {
        s.width = chars[start..i]
            .iter()
            .collect::<String>()
            .parse()
            .map_err(|_| bad())?;
    }
    if let Some(&c) = chars.get(i) {
        if c == ',' || c == '_' {
            s.grouping = Some(c);
            i += 1;
        }
    }
    if chars.get(i) == Some(&'.') {
        i += 1;
        let start = i;
        while chars.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        if i == start {
            return Err(FormatError::BadSpec(
                "Format specifier missing precision".into(),
            ));
        }
        s.precision = Some(
            chars[start..i]
                .iter()
                .collect::<String>()
                .parse()
                .map_err(|_| bad())?,
        );
    }
    if i < chars.len() {
        s.ty = Some(chars[i]);
        i += 1;
    }
    if i != chars.len() {
        return Err(bad());
    }
    Ok(s)
}

fn pad(body: &str, prefix: &str, s: &Spec, default_align: char) -> String {
    let len = body.chars().count() + prefix.chars().count();
    let (fill, align) = if s.zero && s.align.is_none() && default_align == '>' {
        ('0', '=')
    } else {
        (s.fill.unwrap_or(' '), s.align.unwrap_or(default_align))
    };
    if len >= s.width {
        return format!("{prefix}{body}");
    }
    let n = s.width - len;
    let f = |k: usize| std::iter::repeat_n(fill, k).collect::<String>();
    match align {
        '<' => format!("{prefix}{body}{}", f(n)),
        '>' => format!("{}{prefix}{body}", f(n)),
        '^' => format!("{}{prefix}{body}{}", f(n / 2), f(n - n / 2)),
        _ => format!("{prefix}{}{body}", f(n)),
    }
}

fn group_digits(digits: &str, sep: char, every: usize) -> String {
    let mut out = String::new();
    let n = digits.len();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (n - i) % every == 0 {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// Formats one value with a Python format spec (`format(value, spec)`).
pub fn format_value(v: &Value, spec: &str) -> Result<String, FormatError> {
    match v {
        Value::Time(t) => strftime(
            t,
            if spec.is_empty() {
                "%a, %Y-%m-%d %H:%M:%S"
            } else {
                spec
            },
        ),
        Value::Str(text) => {
            let s = parse_spec(spec)?;
            if s.sign.is_some()
                || s.grouping.is_some()
                || s.alternate
                || !matches!(s.ty, None | Some('s'))
            {
                return Err(FormatError::BadSpec(format!(
                    "Unknown format code '{}' for object of type 'str'",
                    s.ty.unwrap_or('s')
                )));
            }
            if s.align == Some('=') {
                return Err(FormatError::BadSpec(
                    "'=' alignment not allowed in string format specifier".into(),
                ));
            }
            let body: String = match s.precision {
                Some(p) => text.chars().take(p).collect(),
                None => text.clone(),
            };
            Ok(pad(&body, "", &s, '<'))
        }
        Value::Bool(b) if spec.is_empty() => Ok(if *b { "True" } else { "False" }.to_string()),
        Value::Bool(b) => format_value(&Value::Int(i128::from(*b)), spec),
        Value::Int(i) => {
            let s = parse_spec(spec)?;
            if s.precision.is_some() {
                return Err(FormatError::BadSpec(
                    "Precision not allowed in integer format specifier".into(),
                ));
            }
            let mag = i.unsigned_abs();
            let (digits, every, radix_prefix) = match s.ty.unwrap_or('d') {
                'd' | 'n' => (mag.to_string(), 3, ""),
                'x' => (format!("{mag:x}"), 4, "0x"),
                'X' => (format!("{mag:X}"), 4, "0X"),
                'o' => (format!("{mag:o}"), 4, "0o"),
                'b' => (format!("{mag:b}"), 4, "0b"),
                c => {
                    return Err(FormatError::BadSpec(format!(
                        "Unknown format code '{c}' for object of type 'int'"
                    )))
                }
            };
            let digits = match s.grouping {
                Some(sep) => group_digits(&digits, sep, every),
                None => digits,
            };
            let mut prefix = String::new();
            if *i < 0 {
                prefix.push('-');
            } else if let Some(c @ ('+' | ' ')) = s.sign {
                prefix.push(c);
            }
            if s.alternate {
                prefix.push_str(radix_prefix);
            }
            Ok(pad(&digits, &prefix, &s, '>'))
        }
    }
}

/// `datetime.strftime(fmt)` for a naive local time.
pub fn strftime(t: &NaiveDateTime, fmt: &str) -> Result<String, FormatError> {
    // Python's %f is microseconds; chrono's is nanoseconds.
    let mut translated = String::with_capacity(fmt.len());
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        translated.push(c);
        if c == '%' {
            match chars.next() {
                Some('f') => translated.push_str("6f"),
                Some(n) => translated.push(n),
                None => {}
            }
        }
    }
    let mut out = String::new();
    write!(out, "{}", t.format(&translated))
        .map_err(|_| FormatError::BadSpec(format!("Invalid format string {fmt:?}")))?;
    Ok(out)
}

/// borg's `ISO_FORMAT` for output timestamps (`OutputTimestamp.isoformat`).
pub fn isoformat(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

fn local_naive(secs: i64, micros: u32) -> Option<NaiveDateTime> {
    Local
        .timestamp_opt(secs, micros * 1000)
        .earliest()
        .map(|d| d.naive_local())
}

/// borg's `to_localtime(utc)` for archive timestamps: `time.localtime()` of the seconds,
/// dropping the microseconds.
pub fn utc_to_local(utc: &NaiveDateTime) -> Option<NaiveDateTime> {
    local_naive(utc.and_utc().timestamp(), 0)
}

/// borg's `safe_timestamp(ns)`: `datetime.fromtimestamp(ns / 1e9)` in local time, rounding
/// the float to microseconds half-to-even exactly as CPython does.
pub fn ns_to_local(ns: i64) -> Option<NaiveDateTime> {
    let t = ns as f64 / 1e9;
    let mut int = t.trunc();
    let mut frac = ((t - int) * 1e6).round_ties_even();
    if frac >= 1e6 {
        frac -= 1e6;
        int += 1.0;
    } else if frac < 0.0 {
        frac += 1e6;
        int -= 1.0;
    }
    local_naive(int as i64, frac as u32)
}

/// Python's `stat.filemode(mode)`, e.g. `-rw-r--r--`.
pub fn filemode(mode: u32) -> String {
    use crate::item::*;
    let mut s = String::with_capacity(10);
    s.push(match mode & S_IFMT {
        S_IFLNK => 'l',
        S_IFSOCK => 's',
        S_IFREG => '-',
        S_IFBLK => 'b',
        S_IFDIR => 'd',
        S_IFCHR => 'c',
        S_IFIFO => 'p',
        _ => '-',
    });
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let exec =
        |x: u32, special: u32, set: char, unset: char| match (mode & x != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(exec(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(exec(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(exec(0o001, 0o1000, 't', 'T'));
    s
}

/// borg's `remove_surrogates(safe_decode(bytes))`: UTF-8 text with each undecodable byte
/// replaced by `?`.
pub fn remove_surrogates(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let skip = e
                    .error_len()
                    .unwrap_or(bad.len())
                    .clamp(1, bad.len().max(1));
                out.extend(std::iter::repeat_n('?', skip));
                rest = bad.get(skip..).unwrap_or_default();
            }
        }
    }
}

/// Python's `shlex.quote`.
pub fn shlex_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if s.chars().all(safe) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// A JSON string literal as Python's `json.dumps` writes it (`ensure_ascii=True`).
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value as Python's `json.dumps` writes it.
pub fn json_value(v: &Value) -> String {
    match v {
        Value::Str(s) => json_str(s),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
        Value::Time(t) => json_str(&isoformat(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: Value, spec: &str) -> String {
        format_value(&v, spec).unwrap()
    }

    #[test]
    fn python_format_specs() {
        assert_eq!(f(Value::Str("ab".into()), "6"), "ab    ");
        assert_eq!(f(Value::Int(12), "8"), "      12");
        assert_eq!(f(Value::Int(12), "<8"), "12      ");
        assert_eq!(f(Value::Int(-12), "08"), "-0000012");
        assert_eq!(f(Value::Int(255), "#x"), "0xff");
        assert_eq!(f(Value::Int(1234567), "_"), "1_234_567");
        assert_eq!(f(Value::Str("abcdef".into()), "*^9.3"), "***abc***");
        assert_eq!(f(Value::Str("x".into()), ""), "x");
        assert!(format_value(&Value::Str("x".into()), "d").is_err());
        assert!(format_value(&Value::Int(1), ".2").is_err());
    }

    #[test]
    fn templates() {
        let t = Template::parse("{{a}} {b:>3}").unwrap();
        assert_eq!(t.render(&|_| Some(Value::Int(1))).unwrap(), "{a}   1");
        assert!(Template::parse("{a").is_err());
        assert!(Template::parse("a}").is_err());
        assert_eq!(
            Template::parse("{x}").unwrap().render(&|_| None),
            Err(FormatError::UnknownKey("x".into()))
        );
    }

    #[test]
    fn python_helpers() {
        assert_eq!(filemode(0o100644), "-rw-r--r--");
        assert_eq!(filemode(0o41777), "drwxrwxrwt");
        assert_eq!(filemode(0o104755), "-rwsr-xr-x");
        assert_eq!(filemode(0o120777), "lrwxrwxrwx");
        assert_eq!(shlex_quote("a b"), "'a b'");
        assert_eq!(shlex_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(shlex_quote("/x/y-z"), "/x/y-z");
        assert_eq!(
            json_str("\u{e9}\u{1f600}\"\u{1}"),
            "\"\\u00e9\\ud83d\\ude00\\\"\\u0001\""
        );
        assert_eq!(remove_surrogates(b"a\xff\xfeb\xc3\xa9"), "a??b\u{e9}");
    }
}
