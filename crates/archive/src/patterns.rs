//! Include/exclude patterns for selecting archive items (borg 1.2 `patterns.py`: `PatternMatcher`,
//! `PathFullPattern` `pf:`, `PathPrefixPattern` `pp:`, `FnmatchPattern` `fm:`, `ShellPattern`
//! `sh:`, `RegexPattern` `re:`; user docs: `borg help patterns`).
//!
//! `borg extract REPO::ARCHIVE PATH...` turns every `PATH` into an include pattern (default style
//! `pp:`) and every `-e PATTERN` into an exclude pattern (default style `fm:`). The first pattern
//! that matches an item decides; an item no pattern matches is extracted only when no include
//! pattern was given.
//!
//! ```
//! use rborg_archive::patterns::{Pattern, PatternMatcher};
//! let mut m = PatternMatcher::new();
//! m.add_exclude(Pattern::parse("*.tmp", "fm").unwrap());
//! m.add_include(Pattern::parse("home/user", "pp").unwrap());
//! assert!(m.matches(b"home/user/a.txt"));
//! assert!(!m.matches(b"home/user/a.tmp"));
//! assert!(!m.matches(b"etc/passwd"));
//! ```

/// A pattern that could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// The `xx:` prefix names no pattern style.
    #[error("Unknown pattern style: {0}")]
    UnknownStyle(String),
    /// A `--pattern` command is not `+`, `-`, `!` or `P` followed by a value.
    #[error("A pattern/command must start with one of +, -, !, P and have a value part: {0:?}")]
    Command(String),
    /// A `re:` pattern is not a valid regular expression.
    #[error("invalid regular expression {pattern:?}: {message}")]
    Regex {
        /// The pattern text.
        pattern: String,
        /// What the regex compiler said.
        message: String,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    /// `pf:` the whole normalized path.
    Full(String),
    /// `pp:` the path or anything below it.
    Prefix(String),
    /// `fm:`/`sh:` compiled into an anchored regular expression on `path + "/"`.
    Glob(regex::Regex),
    /// `re:` unanchored search.
    Regex(regex::Regex),
}

/// One include or exclude pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    original: String,
    kind: Kind,
    match_count: u64,
}

/// Python's `os.path.normpath` for relative or absolute POSIX paths.
fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// borg's `normalize_path` on item paths: NFC on macOS only, so here the identity on text.
fn item_path_text(path: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(path)
}

/// Python's `fnmatch.translate` (`*` matches anything including `/`).
fn fnmatch_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::from("(?s)^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => i = bracket(&chars, i, &mut out),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push_str("\\z");
    out
}

/// Translates a `[...]` class starting after `[` at `i`; returns the index after it.
fn bracket(chars: &[char], i: usize, out: &mut String) -> usize {
    let mut j = i;
    if chars.get(j) == Some(&'!') {
        j += 1;
    }
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    while j < chars.len() && chars[j] != ']' {
        j += 1;
    }
    if j >= chars.len() {
        out.push_str("\\[");
        return i;
    }
    let class: String = chars[i..j].iter().collect();
    let class = class.replace('\\', "\\\\");
    let class = match class.strip_prefix('!') {
        Some(rest) => format!("^{rest}"),
        None if class.starts_with('^') => format!("\\{class}"),
        None => class,
    };
    out.push('[');
    out.push_str(&class.replace('[', "\\[").replace("&&", "\\&\\&"));
    out.push(']');
    j + 1
}

/// borg's `shellpattern.translate`: `*` and `?` do not cross `/`, `**/` matches any number of
/// directories.
fn shell_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::from("(?s)^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => {
                if chars.get(i) == Some(&'*') && chars.get(i + 1) == Some(&'/') {
                    out.push_str("(?:[^/]*/)*");
                    i += 2;
                } else if chars.get(i) == Some(&'*') && i + 1 == chars.len() {
                    out.push_str(".*");
                    i += 1;
                } else {
                    out.push_str("[^/]*");
                }
            }
            '?' => out.push_str("[^/]"),
            '[' => i = bracket(&chars, i, &mut out),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push_str("\\z");
    out
}

fn compile(pattern: &str, regex: &str) -> Result<regex::Regex, PatternError> {
    regex::Regex::new(regex).map_err(|e| PatternError::Regex {
        pattern: pattern.to_string(),
        message: e.to_string(),
    })
}

impl Pattern {
    /// Parses `text`, which may start with a style prefix (`pf:`, `pp:`, `fm:`, `sh:`, `re:`);
    /// without one, `default_style` applies (borg's `parse_pattern(pattern, fallback)`).
    pub fn parse(text: &str, default_style: &str) -> Result<Pattern, PatternError> {
        let b = text.as_bytes();
        let (style, body) =
            if b.len() > 2 && b[2] == b':' && b[..2].iter().all(u8::is_ascii_alphanumeric) {
                (&text[..2], &text[3..])
            } else {
                (default_style, text)
            };
        let kind = match style {
            "pf" => Kind::Full(normpath(body).trim_start_matches('/').to_string()),
            "pp" => {
                let n = normpath(body);
                Kind::Prefix(
                    format!("{}/", n.trim_end_matches('/'))
                        .trim_start_matches('/')
                        .to_string(),
                )
            }
            "fm" | "sh" => {
                let n = normpath(body);
                let tail = match (style, body.ends_with('/')) {
                    ("fm", true) => "/*/",
                    ("fm", false) => "/*",
                    (_, true) => "/**/*/",
                    (_, false) => "/**/*",
                };
                let full = format!(
                    "{}{tail}",
                    if body.ends_with('/') {
                        n.trim_end_matches('/')
                    } else {
                        &n
                    }
                );
                let full = full.trim_start_matches('/');
                let re = if style == "fm" {
                    fnmatch_regex(full)
                } else {
                    shell_regex(full)
                };
                Kind::Glob(compile(text, &re)?)
            }
            "re" => Kind::Regex(compile(text, body)?),
            other => return Err(PatternError::UnknownStyle(other.to_string())),
        };
        Ok(Pattern {
            original: body.to_string(),
            kind,
            match_count: 0,
        })
    }

    /// Whether the archive item path `path` matches (borg's `PatternBase.match`).
    pub fn matches(&self, path: &[u8]) -> bool {
        let path = item_path_text(path);
        match &self.kind {
            Kind::Full(p) => path == p.as_str(),
            Kind::Prefix(p) => format!("{path}/").starts_with(p.as_str()),
            Kind::Glob(re) => re.is_match(&format!("{path}/")),
            Kind::Regex(re) => re.is_match(&path),
        }
    }

    /// The pattern as given (without its style prefix), as borg shows it in
    /// "Include pattern '...' never matched.".
    pub fn original(&self) -> &str {
        &self.original
    }

    /// How many items matched so far.
    pub fn match_count(&self) -> u64 {
        self.match_count
    }
}

/// Whether an item matched by a pattern is taken or left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Include,
    Exclude,
}

/// An ordered list of include/exclude patterns (borg's `PatternMatcher`).
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<(Pattern, Action)>,
    has_includes: bool,
    /// Indices of the include patterns that came from `PATH` arguments.
    path_includes: Vec<usize>,
}

impl PatternMatcher {
    /// A matcher that takes everything.
    pub fn new() -> PatternMatcher {
        PatternMatcher::default()
    }

    /// Appends an exclude pattern (`-e`).
    pub fn add_exclude(&mut self, pattern: Pattern) {
        self.patterns.push((pattern, Action::Exclude));
    }

    /// Appends an include pattern (a `PATH` argument); once there is one, unmatched items are
    /// left out.
    pub fn add_include(&mut self, pattern: Pattern) {
        self.has_includes = true;
        self.path_includes.push(self.patterns.len());
        self.patterns.push((pattern, Action::Include));
    }

    /// Appends one `--pattern` / `--patterns-from` command (borg's `parse_inclexcl_command`):
    /// `+ PATTERN` include, `- PATTERN` exclude, `! PATTERN` exclude without recursion (the
    /// same as exclude when selecting archive items), `P STYLE` sets the default style for the
    /// following commands (initially `sh`). Root paths (`R PATH`) only apply to `borg create`
    /// and are refused here. Unlike `PATH` arguments, `+` patterns do not make unmatched
    /// items excluded.
    pub fn add_command(&mut self, line: &str, style: &mut String) -> Result<(), PatternError> {
        let mut chars = line.chars();
        let cmd = chars
            .next()
            .ok_or_else(|| PatternError::Command(line.to_string()))?;
        let value = chars.as_str().trim_start();
        if value.is_empty() {
            return Err(PatternError::Command(line.to_string()));
        }
        match cmd {
            '+' => self
                .patterns
                .push((Pattern::parse(value, style)?, Action::Include)),
            '-' | '!' => self
                .patterns
                .push((Pattern::parse(value, style)?, Action::Exclude)),
            'P' | 'p' => {
                if !matches!(value, "pf" | "pp" | "fm" | "sh" | "re") {
                    return Err(PatternError::UnknownStyle(value.to_string()));
                }
                *style = value.to_string();
            }
            _ => return Err(PatternError::Command(line.to_string())),
        }
        Ok(())
    }

    /// Whether no pattern was added (borg's `PatternMatcher.empty`).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` is selected: the first matching pattern decides, otherwise the fallback
    /// (everything unless include patterns exist).
    pub fn matches(&mut self, path: &[u8]) -> bool {
        for (pattern, action) in &mut self.patterns {
            if pattern.matches(path) {
                pattern.match_count += 1;
                return *action == Action::Include;
            }
        }
        !self.has_includes
    }

    /// Include patterns that matched nothing (borg warns about each).
    pub fn unmatched_includes(&self) -> Vec<String> {
        self.path_includes
            .iter()
            .filter_map(|&i| self.patterns.get(i))
            .filter(|(p, _)| p.match_count == 0)
            .map(|(p, _)| p.original.clone())
            .collect()
    }
}

/// borg's archive name globs (`--glob-archives`, `helpers/manifest.py` `list_considering`:
/// `shellpattern.translate` matched against the whole name).
pub fn archive_glob(glob: &str) -> Result<regex::Regex, PatternError> {
    compile(glob, &shell_regex(glob))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, style: &str, path: &str) -> bool {
        Pattern::parse(p, style).unwrap().matches(path.as_bytes())
    }

    #[test]
    fn prefix() {
        assert!(m("home/u", "pp", "home/u"));
        assert!(m("/home/u/", "pp", "home/u/x"));
        assert!(!m("home/u", "pp", "home/uu"));
    }

    #[test]
    fn full() {
        assert!(m("pf:/a/b", "pp", "a/b"));
        assert!(!m("pf:a/b", "pp", "a/b/c"));
    }

    #[test]
    fn fnmatch() {
        assert!(m("*.tmp", "fm", "a/b/x.tmp"));
        assert!(m("a/b", "fm", "a/b/c/d"));
        assert!(m("a/b/", "fm", "a/b/c"));
        assert!(!m("a/b/", "fm", "a/b"));
        assert!(m("a/[bc]", "fm", "a/c"));
        assert!(!m("a/[!bc]", "fm", "a/c"));
    }

    #[test]
    fn shell() {
        assert!(!m("sh:*.tmp", "fm", "a/x.tmp"));
        assert!(m("sh:**/*.tmp", "fm", "a/b/x.tmp"));
        assert!(m("sh:a/*", "fm", "a/x/y"));
        assert!(m("sh:a/?", "fm", "a/x"));
    }

    #[test]
    fn archive_globs() {
        let g = archive_glob("host-*").unwrap();
        assert!(g.is_match("host-2024"));
        assert!(!g.is_match("xhost-2024"));
    }

    #[test]
    fn regex() {
        assert!(m("re:\\.tmp$", "fm", "a/x.tmp"));
        assert!(!m("re:^b", "fm", "a/b"));
        assert!(Pattern::parse("re:(", "fm").is_err());
        assert!(Pattern::parse("zz:x", "fm").is_err());
    }

    #[test]
    fn pattern_commands() {
        let mut pm = PatternMatcher::new();
        let mut style = "sh".to_string();
        pm.add_command("- **/*.tmp", &mut style).unwrap();
        pm.add_command("P pp", &mut style).unwrap();
        pm.add_command("+ keep", &mut style).unwrap();
        assert!(pm.add_command("R /root", &mut style).is_err());
        assert!(pm.add_command("+", &mut style).is_err());
        assert!(pm.add_command("P xx", &mut style).is_err());
        assert!(!pm.matches(b"a/b.tmp"));
        assert!(pm.matches(b"keep/x"));
        // `+` does not switch the fallback to "exclude"
        assert!(pm.matches(b"other"));
        assert!(pm.unmatched_includes().is_empty());
    }

    #[test]
    fn first_match_decides() {
        let mut pm = PatternMatcher::new();
        pm.add_exclude(Pattern::parse("a/b", "fm").unwrap());
        pm.add_include(Pattern::parse("a", "pp").unwrap());
        pm.add_include(Pattern::parse("never", "pp").unwrap());
        assert!(pm.matches(b"a/c"));
        assert!(!pm.matches(b"a/b/c"));
        assert!(!pm.matches(b"x"));
        assert_eq!(pm.unmatched_includes(), vec!["never".to_string()]);
    }
}
