//! Include/exclude patterns: the one implementation behind `borg create`'s walker, `extract`,
//! `list` and every other command with exclusion options (borg 1.2 `patterns.py`:
//! `PatternMatcher`, `PathFullPattern` `pf:`, `PathPrefixPattern` `pp:`, `FnmatchPattern`
//! `fm:`, `ShellPattern` `sh:`, `RegexPattern` `re:`, `parse_inclexcl_command`;
//! `shellpattern.py`; user docs: `borg help patterns`).
//!
//! A [`PatternMatcher`] holds rules in command line order. The first rule that matches a path
//! decides (full-path `pf:` rules are looked up before all others, as in borg); a path no rule
//! matches gets the matcher's fallback: `borg create` takes it, `borg extract PATH...` leaves it
//! out once a `PATH` was given. Each decision also says whether an excluded directory is still
//! descended into (`-` rules) or not (`!` rules and `-e` patterns), which is how `create`
//! finds included files below excluded folders.
//!
//! Paths are matched without their leading slashes. Like borg on Linux, no Unicode
//! normalisation is applied; bytes that are not UTF-8 are matched as single characters (borg's
//! `surrogateescape`).
//!
//! ```
//! use rborg_archive::patterns::{Pattern, PatternMatcher, PatternStyle};
//! let mut m = PatternMatcher::new();
//! m.add_exclude(Pattern::parse("*.tmp", PatternStyle::Fnmatch).unwrap());
//! m.add_include(Pattern::parse("home/user", PatternStyle::PathPrefix).unwrap());
//! assert!(m.matches(b"home/user/a.txt"));
//! assert!(!m.matches(b"home/user/a.tmp"));
//! assert!(!m.matches(b"etc/passwd"));
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::walk::normpath;

/// A pattern or pattern command that could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// The `xx:` prefix names no pattern style (borg's `get_pattern_class`).
    #[error("Unknown pattern style: {0}")]
    UnknownStyle(String),
    /// A `P` command names no pattern style.
    #[error("Invalid pattern style: {0}")]
    InvalidStyle(String),
    /// An empty `--pattern` / `--patterns-from` line.
    #[error("A pattern/command must not be empty.")]
    EmptyCommand,
    /// A pattern command that does not start with a known command character.
    #[error("A pattern/command must start with anyone of: -, !, +, R, r, P, p")]
    UnknownCommand,
    /// A pattern command without a value.
    #[error("A pattern/command must have a value part.")]
    MissingValue,
    /// A `re:` pattern (or a translated glob) does not compile.
    #[error("invalid regular expression {pattern:?}: {message}")]
    Regex {
        /// The pattern text.
        pattern: String,
        /// What the regex compiler said.
        message: String,
    },
}

/// The pattern styles of borg 1.2 (`_PATTERN_CLASSES`), selected by a two-letter prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternStyle {
    /// `fm:` Python `fnmatch`: `*` also matches `/`; matches a path and everything below it.
    Fnmatch,
    /// `sh:` shell glob: `*` and `?` stop at `/`, `**/` matches any number of directories.
    Shell,
    /// `re:` regular expression searched anywhere in the path (Python `re` syntax, including
    /// backreferences and lookaround).
    Regex,
    /// `pp:` path prefix: the path and everything below it.
    PathPrefix,
    /// `pf:` the full path exactly.
    PathFull,
}

impl PatternStyle {
    /// The style named by a prefix (`fm`, `sh`, `re`, `pp`, `pf`).
    pub fn from_prefix(prefix: &str) -> Result<PatternStyle, PatternError> {
        Ok(match prefix {
            "fm" => PatternStyle::Fnmatch,
            "sh" => PatternStyle::Shell,
            "re" => PatternStyle::Regex,
            "pp" => PatternStyle::PathPrefix,
            "pf" => PatternStyle::PathFull,
            other => return Err(PatternError::UnknownStyle(other.to_string())),
        })
    }

    /// The style's two-letter prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            PatternStyle::Fnmatch => "fm",
            PatternStyle::Shell => "sh",
            PatternStyle::Regex => "re",
            PatternStyle::PathPrefix => "pp",
            PatternStyle::PathFull => "pf",
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    /// `pf:` the normalized path without leading slashes.
    Full(String),
    /// `pp:` the normalized path with one trailing slash.
    Prefix(String),
    /// `fm:`/`sh:` compiled into an anchored regular expression on `path + "/"`.
    Glob(regex::Regex),
    /// `re:` unanchored search, with Python's backreferences and lookaround.
    Regex(Box<fancy_regex::Regex>),
}

/// One pattern (borg's `PatternBase` subclasses).
#[derive(Debug)]
pub struct Pattern {
    style: PatternStyle,
    original: String,
    kind: Kind,
    match_count: AtomicU64,
}

impl Clone for Pattern {
    fn clone(&self) -> Self {
        Pattern {
            style: self.style,
            original: self.original.clone(),
            kind: self.kind.clone(),
            match_count: AtomicU64::new(self.match_count.load(Ordering::Relaxed)),
        }
    }
}

/// A path as text for matching: UTF-8 as is, every byte that is not UTF-8 as one character
/// from a private-use range (borg decodes paths with `surrogateescape`, so such a byte is one
/// character there as well).
fn path_text(path: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(path) {
        return s.into();
    }
    let mut out = String::with_capacity(path.len() + 8);
    for chunk in path.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            out.push(char::from_u32(0x10_FF00 + u32::from(b)).unwrap_or('\u{FFFD}'));
        }
    }
    out.into()
}

/// Appends one character of a `[...]` class, escaped.
fn push_class_char(out: &mut String, c: char) {
    out.push_str(&format!("\\x{{{:x}}}", c as u32));
}

/// Translates the `[...]` class starting after `[` at `i` (Python's `fnmatch.translate` and
/// borg's `shellpattern.translate` agree on it: `!` negates, a `]` right after `[` or `[!` is
/// literal, `a-z` is a range, a backslash is literal, a reversed range matches nothing).
/// Returns the index after the class; an unclosed `[` is a literal `[`.
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
    let mut body = &chars[i..j];
    let negated = body.first() == Some(&'!');
    if negated {
        body = &body[1..];
    }
    let mut class = String::new();
    let mut k = 0;
    while k < body.len() {
        if k + 2 < body.len() && body[k + 1] == '-' {
            let (lo, hi) = (body[k], body[k + 2]);
            if lo <= hi {
                push_class_char(&mut class, lo);
                class.push('-');
                push_class_char(&mut class, hi);
            }
            k += 3;
        } else {
            push_class_char(&mut class, body[k]);
            k += 1;
        }
    }
    match (class.is_empty(), negated) {
        // Python: an empty class never matches, a negated empty one matches any character
        (true, false) => out.push_str("[a&&b]"),
        (true, true) => out.push_str("(?s:.)"),
        (false, true) => out.push_str(&format!("[^{class}]")),
        (false, false) => out.push_str(&format!("[{class}]")),
    }
    j + 1
}

/// Python's `fnmatch.translate` (`shell == false`: `*` matches anything including `/`) or
/// borg's `shellpattern.translate` (`shell == true`), anchored at both ends.
fn glob_regex(pattern: &str, shell: bool) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::from("(?s)^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if shell => {
                if chars.get(i) == Some(&'*') && chars.get(i + 1) == Some(&'/') {
                    out.push_str("(?:[^/]*/)*");
                    i += 2;
                } else {
                    out.push_str("[^/]*");
                }
            }
            '*' => out.push_str(".*"),
            '?' if shell => out.push_str("[^/]"),
            '?' => out.push('.'),
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
    /// without one, `fallback` applies (borg's `parse_pattern(pattern, fallback)`).
    pub fn parse(text: &str, fallback: PatternStyle) -> Result<Pattern, PatternError> {
        let b = text.as_bytes();
        let (style, body) =
            if b.len() > 2 && b[2] == b':' && b[..2].iter().all(u8::is_ascii_alphanumeric) {
                (PatternStyle::from_prefix(&text[..2])?, &text[3..])
            } else {
                (fallback, text)
            };
        Pattern::with_style(body, style)
    }

    /// Compiles `body` (no prefix) as a pattern of `style` (borg's `PatternBase._prepare`).
    pub fn with_style(body: &str, style: PatternStyle) -> Result<Pattern, PatternError> {
        let kind = match style {
            PatternStyle::PathFull => Kind::Full(normpath(body).trim_start_matches('/').into()),
            PatternStyle::PathPrefix => Kind::Prefix(
                format!("{}/", normpath(body).trim_end_matches('/'))
                    .trim_start_matches('/')
                    .to_string(),
            ),
            PatternStyle::Fnmatch | PatternStyle::Shell => {
                let shell = style == PatternStyle::Shell;
                let n = normpath(body);
                let full = match (shell, body.ends_with('/')) {
                    (false, true) => format!("{}/*/", n.trim_end_matches('/')),
                    (false, false) => format!("{n}/*"),
                    (true, true) => format!("{}/**/*/", n.trim_end_matches('/')),
                    (true, false) => format!("{n}/**/*"),
                };
                let full = full.trim_start_matches('/');
                Kind::Glob(compile(body, &glob_regex(full, shell))?)
            }
            PatternStyle::Regex => {
                Kind::Regex(Box::new(fancy_regex::Regex::new(body).map_err(|e| {
                    PatternError::Regex {
                        pattern: body.to_string(),
                        message: e.to_string(),
                    }
                })?))
            }
        };
        Ok(Pattern {
            style,
            original: body.to_string(),
            kind,
            match_count: AtomicU64::new(0),
        })
    }

    /// Whether `path` matches (borg's `PatternBase.match`). Leading slashes are ignored, as
    /// `PatternMatcher.match` strips them. Counts the match.
    pub fn matches(&self, path: &[u8]) -> bool {
        let start = path.iter().position(|&c| c != b'/').unwrap_or(path.len());
        let text = path_text(&path[start..]);
        let hit = self.matches_text(&text);
        if hit {
            self.match_count.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    fn matches_text(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Full(p) => path == p.as_str(),
            Kind::Prefix(p) => format!("{path}/").starts_with(p.as_str()),
            Kind::Glob(re) => re.is_match(&format!("{path}/")),
            // a regex that fails at run time (backtrack limit) matches nothing
            Kind::Regex(re) => re.is_match(path).unwrap_or(false),
        }
    }

    /// The style of this pattern.
    pub fn style(&self) -> PatternStyle {
        self.style
    }

    /// The pattern as given, without its style prefix (borg's `str(pattern)`, as in
    /// "Include pattern '...' never matched.").
    pub fn original(&self) -> &str {
        &self.original
    }

    /// How many paths matched so far.
    pub fn match_count(&self) -> u64 {
        self.match_count.load(Ordering::Relaxed)
    }
}

/// What a rule does with a path it matches (borg's `IECommand` without the non-rule commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IeCommand {
    /// `+`: take it.
    Include,
    /// `-`: leave it out, but still descend into it when it is a directory.
    Exclude,
    /// `!` (and `-e`): leave it out and do not descend into it.
    ExcludeNoRecurse,
}

impl IeCommand {
    /// Whether a matched path is taken.
    pub fn includes(self) -> bool {
        self == IeCommand::Include
    }

    /// Whether a matched directory is descended into (borg's `command_recurses_dir`).
    pub fn recurses(self) -> bool {
        self != IeCommand::ExcludeNoRecurse
    }
}

/// One parsed `--pattern` / `--patterns-from` line (borg's `parse_inclexcl_command`).
#[derive(Debug, Clone)]
pub enum PatternLine {
    /// `R PATH`: a root path for `borg create`.
    Root(String),
    /// `P STYLE`: the default style for the following lines of the same file.
    Style(PatternStyle),
    /// `+`, `-` or `!` with its pattern.
    Rule(Pattern, IeCommand),
}

/// Parses one pattern command line; patterns without a style prefix get `fallback`.
pub fn parse_inclexcl_command(
    line: &str,
    fallback: PatternStyle,
) -> Result<PatternLine, PatternError> {
    let mut chars = line.chars();
    let cmd = chars.next().ok_or(PatternError::EmptyCommand)?;
    if !"-!+RrPp".contains(cmd) {
        return Err(PatternError::UnknownCommand);
    }
    let value = chars.as_str().trim_start();
    if value.is_empty() {
        return Err(PatternError::MissingValue);
    }
    Ok(match cmd {
        'R' | 'r' => PatternLine::Root(value.to_string()),
        'P' | 'p' => PatternLine::Style(
            PatternStyle::from_prefix(value)
                .map_err(|_| PatternError::InvalidStyle(value.to_string()))?,
        ),
        '+' => PatternLine::Rule(Pattern::parse(value, fallback)?, IeCommand::Include),
        '-' => PatternLine::Rule(Pattern::parse(value, fallback)?, IeCommand::Exclude),
        _ => PatternLine::Rule(
            Pattern::parse(value, fallback)?,
            IeCommand::ExcludeNoRecurse,
        ),
    })
}

/// borg's `clean_lines`: lines stripped of surrounding whitespace, without empty lines and
/// `#` comment lines.
pub fn clean_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// What the exclusion options of a command line add up to: the rules in command line order
/// (borg's `args.patterns`) and the `R` root paths (which borg appends to `args.paths`).
#[derive(Debug, Clone, Default)]
pub struct PatternOptions {
    /// Root paths from `R` lines, in order.
    pub roots: Vec<String>,
    /// Include/exclude rules, in order.
    pub rules: Vec<(Pattern, IeCommand)>,
}

impl PatternOptions {
    /// `-e PATTERN`: an exclude pattern (default style `fm:`) that is not descended into
    /// (borg's `parse_exclude_pattern`).
    pub fn add_exclude(&mut self, text: &str) -> Result<(), PatternError> {
        let pattern = Pattern::parse(text, PatternStyle::Fnmatch)?;
        self.rules.push((pattern, IeCommand::ExcludeNoRecurse));
        Ok(())
    }

    /// `--exclude-from FILE`: one `-e` pattern per clean line.
    pub fn load_exclude_file(&mut self, text: &str) -> Result<(), PatternError> {
        clean_lines(text).try_for_each(|l| self.add_exclude(l))
    }

    /// `--pattern LINE`: one command with default style `sh:`; a `P` line has no lasting
    /// effect here (borg parses each `--pattern` on its own).
    pub fn add_pattern(&mut self, line: &str) -> Result<(), PatternError> {
        self.add_line(line, PatternStyle::Shell).map(|_| ())
    }

    /// `--patterns-from FILE`: one command per clean line; `P` changes the default style
    /// (initially `sh:`) for the rest of the file (borg's `load_pattern_file`).
    pub fn load_pattern_file(&mut self, text: &str) -> Result<(), PatternError> {
        let mut style = PatternStyle::Shell;
        for line in clean_lines(text) {
            style = self.add_line(line, style)?;
        }
        Ok(())
    }

    fn add_line(&mut self, line: &str, style: PatternStyle) -> Result<PatternStyle, PatternError> {
        match parse_inclexcl_command(line, style)? {
            PatternLine::Root(path) => self.roots.push(path),
            PatternLine::Style(s) => return Ok(s),
            PatternLine::Rule(p, cmd) => self.rules.push((p, cmd)),
        }
        Ok(style)
    }
}

/// The outcome of matching one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the path is taken.
    pub included: bool,
    /// Whether a directory at this path is descended into (borg's `matcher.recurse_dir`).
    pub recurse_dir: bool,
}

/// An ordered list of include/exclude rules with a fallback (borg's `PatternMatcher`).
#[derive(Debug, Clone)]
pub struct PatternMatcher {
    items: Vec<(Pattern, IeCommand)>,
    /// `pf:` rules by normalized path; borg consults them first and does not count them.
    full: HashMap<String, IeCommand>,
    fallback: bool,
    /// The patterns from `PATH` arguments, in order.
    include_paths: Vec<IncludePath>,
}

/// Where a `PATH` include pattern went.
#[derive(Debug, Clone)]
enum IncludePath {
    /// Index in `items`.
    Item(usize),
    /// A `pf:` path (as given), which borg never counts as matched.
    Full(String),
}

impl Default for PatternMatcher {
    fn default() -> Self {
        PatternMatcher::with_fallback(true)
    }
}

impl PatternMatcher {
    /// A matcher that takes everything no rule excludes (`borg create`'s, and `extract`'s
    /// without `PATH` arguments).
    pub fn new() -> PatternMatcher {
        PatternMatcher::default()
    }

    /// A matcher whose verdict for unmatched paths is `fallback`.
    pub fn with_fallback(fallback: bool) -> PatternMatcher {
        PatternMatcher {
            items: Vec::new(),
            full: HashMap::new(),
            fallback,
            include_paths: Vec::new(),
        }
    }

    /// A matcher with `options`' rules followed by `paths` as include patterns (borg's
    /// `build_matcher` for extract, list, diff, export-tar, recreate).
    pub fn build(
        options: &PatternOptions,
        paths: &[String],
    ) -> Result<PatternMatcher, PatternError> {
        let mut m = PatternMatcher::new();
        m.add_inclexcl(options.rules.iter().cloned());
        m.add_includepaths(paths)?;
        Ok(m)
    }

    /// Appends one rule.
    pub fn add(&mut self, pattern: Pattern, cmd: IeCommand) {
        if let Kind::Full(path) = &pattern.kind {
            self.full.insert(path.clone(), cmd);
        } else {
            self.items.push((pattern, cmd));
        }
    }

    /// Appends rules in order (borg's `add_inclexcl`).
    pub fn add_inclexcl(&mut self, rules: impl IntoIterator<Item = (Pattern, IeCommand)>) {
        for (p, cmd) in rules {
            self.add(p, cmd);
        }
    }

    /// Appends an exclude pattern that is not descended into (`-e`).
    pub fn add_exclude(&mut self, pattern: Pattern) {
        self.add(pattern, IeCommand::ExcludeNoRecurse);
    }

    /// Appends the pattern of a `PATH` argument as an include; unmatched paths are then left
    /// out, and [`unmatched_includes`](Self::unmatched_includes) reports it if it never matched.
    pub fn add_include(&mut self, pattern: Pattern) {
        self.fallback = false;
        self.include_paths.push(match &pattern.kind {
            Kind::Full(_) => IncludePath::Full(pattern.original.clone()),
            _ => IncludePath::Item(self.items.len()),
        });
        self.add(pattern, IeCommand::Include);
    }

    /// `PATH` arguments as include patterns (default style `pp:`); the fallback becomes
    /// "exclude" when there is at least one (borg's `add_includepaths`).
    pub fn add_includepaths(&mut self, paths: &[String]) -> Result<(), PatternError> {
        for p in paths {
            self.add_include(Pattern::parse(p, PatternStyle::PathPrefix)?);
        }
        self.fallback = paths.is_empty();
        Ok(())
    }

    /// Whether no rule was added (borg's `PatternMatcher.empty`).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.full.is_empty()
    }

    /// Matches `path` (borg's `PatternMatcher.match`): a `pf:` rule for exactly this path
    /// decides first, then the first matching rule in order, else the fallback (and
    /// unmatched directories are descended into).
    pub fn decide(&self, path: &[u8]) -> Decision {
        let start = path.iter().position(|&c| c != b'/').unwrap_or(path.len());
        let text = path_text(&path[start..]);
        if let Some(cmd) = self.full.get(text.as_ref()) {
            return Decision {
                included: cmd.includes(),
                recurse_dir: cmd.recurses(),
            };
        }
        for (pattern, cmd) in &self.items {
            if pattern.matches_text(&text) {
                pattern.match_count.fetch_add(1, Ordering::Relaxed);
                return Decision {
                    included: cmd.includes(),
                    recurse_dir: cmd.recurses(),
                };
            }
        }
        Decision {
            included: self.fallback,
            recurse_dir: true,
        }
    }

    /// Whether `path` is taken (see [`decide`](Self::decide)).
    pub fn matches(&self, path: &[u8]) -> bool {
        self.decide(path).included
    }

    /// The `PATH` include patterns that matched nothing, as given (borg warns "Include pattern
    /// '...' never matched." for each). Like borg, `pf:` paths are never counted.
    pub fn unmatched_includes(&self) -> Vec<String> {
        self.include_paths
            .iter()
            .filter_map(|inc| match inc {
                IncludePath::Full(original) => Some(original.clone()),
                IncludePath::Item(i) => self
                    .items
                    .get(*i)
                    .filter(|(p, _)| p.match_count() == 0)
                    .map(|(p, _)| p.original.clone()),
            })
            .collect()
    }
}

/// borg's archive name globs (`--glob-archives`, `helpers/manifest.py` `list_considering`:
/// `shellpattern.translate` matched against the whole name).
pub fn archive_glob(glob: &str) -> Result<regex::Regex, PatternError> {
    compile(glob, &glob_regex(glob, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, style: PatternStyle, path: &str) -> bool {
        Pattern::parse(p, style).unwrap().matches(path.as_bytes())
    }

    use PatternStyle::{Fnmatch as FM, PathPrefix as PP};

    #[test]
    fn prefix() {
        assert!(m("home/u", PP, "home/u"));
        assert!(m("/home/u/", PP, "home/u/x"));
        assert!(m("/home/u/", PP, "/home/u/x"));
        assert!(!m("home/u", PP, "home/uu"));
    }

    #[test]
    fn full() {
        assert!(m("pf:/a/b", PP, "a/b"));
        assert!(!m("pf:a/b", PP, "a/b/c"));
    }

    #[test]
    fn fnmatch() {
        assert!(m("*.tmp", FM, "a/b/x.tmp"));
        assert!(m("a/b", FM, "a/b/c/d"));
        assert!(m("a/b/", FM, "a/b/c"));
        assert!(!m("a/b/", FM, "a/b"));
        assert!(m("a/[bc]", FM, "a/c"));
        assert!(!m("a/[!bc]", FM, "a/c"));
        assert!(!m("a/[z-a]x", FM, "a/zx"));
        assert!(m("[!x]y", FM, "ay"));
        assert!(m("a\\b", FM, "a\\b"));
    }

    #[test]
    fn shell() {
        assert!(!m("sh:*.tmp", FM, "a/x.tmp"));
        assert!(m("sh:**/*.tmp", FM, "a/b/x.tmp"));
        assert!(m("sh:**/*.tmp", FM, "x.tmp"));
        assert!(m("sh:a/*", FM, "a/x/y"));
        assert!(m("sh:a/?", FM, "a/x"));
        assert!(!m("sh:a/*/c", FM, "a/b/x/c"));
    }

    #[test]
    fn non_utf8_byte_is_one_character() {
        let p = Pattern::parse("sh:a/?", FM).unwrap();
        assert!(p.matches(b"a/\xff"));
        assert!(!p.matches(b"a/\xff\xfe"));
    }

    #[test]
    fn archive_globs() {
        let g = archive_glob("host-*").unwrap();
        assert!(g.is_match("host-2024"));
        assert!(!g.is_match("xhost-2024"));
    }

    #[test]
    fn regex() {
        assert!(m("re:\\.tmp$", FM, "a/x.tmp"));
        assert!(!m("re:^b", FM, "a/b"));
        assert!(m("re:file(\\d)\\1\\1$", FM, "input/file333"));
        assert!(!m("re:file(\\d)\\1\\1$", FM, "input/file334"));
        assert!(Pattern::parse("re:(", FM).is_err());
        assert!(matches!(
            Pattern::parse("zz:x", FM),
            Err(PatternError::UnknownStyle(_))
        ));
    }

    #[test]
    fn pattern_commands() {
        let mut o = PatternOptions::default();
        o.load_pattern_file("# c\n- **/*.tmp\n\n  P pp  \n+ keep\nR /root\n! nore\n")
            .unwrap();
        assert_eq!(o.roots, vec!["/root".to_string()]);
        assert!(matches!(
            parse_inclexcl_command("+", PatternStyle::Shell),
            Err(PatternError::MissingValue)
        ));
        assert!(matches!(
            parse_inclexcl_command("P xx", PatternStyle::Shell),
            Err(PatternError::InvalidStyle(_))
        ));
        assert!(matches!(
            parse_inclexcl_command("x y", PatternStyle::Shell),
            Err(PatternError::UnknownCommand)
        ));
        let pm = PatternMatcher::build(&o, &[]).unwrap();
        assert!(!pm.matches(b"a/b.tmp"));
        assert!(pm.matches(b"keep/x"));
        assert!(pm.matches(b"other"));
        let d = pm.decide(b"nore/x");
        assert!(!d.included && !d.recurse_dir);
        let d = pm.decide(b"a/b.tmp");
        assert!(!d.included && d.recurse_dir);
    }

    #[test]
    fn full_path_rules_come_first() {
        let mut pm = PatternMatcher::new();
        pm.add(Pattern::parse("a", FM).unwrap(), IeCommand::Exclude);
        pm.add(Pattern::parse("pf:a/b", FM).unwrap(), IeCommand::Include);
        assert!(pm.matches(b"a/b"));
        assert!(!pm.matches(b"a/c"));
    }

    #[test]
    fn first_match_decides() {
        let mut pm = PatternMatcher::new();
        pm.add_exclude(Pattern::parse("a/b", FM).unwrap());
        pm.add_includepaths(&["a".into(), "never".into(), "pf:x".into()])
            .unwrap();
        assert!(pm.matches(b"a/c"));
        assert!(!pm.matches(b"a/b/c"));
        // a `pf:` PATH matches, but like borg it is never counted as matched
        assert!(pm.matches(b"x"));
        assert!(!pm.matches(b"y"));
        assert_eq!(
            pm.unmatched_includes(),
            vec!["never".to_string(), "x".to_string()]
        );
    }
}
