//! `rborg config validate|generate`: borgmatic's `config validate` and `config generate`
//! actions (`borgmatic/actions/config/validate.py`, `generate.py`, and the summary logic of
//! `borgmatic/commands/borgmatic.py`) on top of the `rborg-config` library.
//!
//! Output follows borgmatic 2.x so that scripts and people used to it read it the same way:
//! answers (the `--show` YAML, "All configuration files are valid", "Generate successful") go
//! to stdout, warnings and errors to stderr, and a `summary:` block closes the run, on the
//! stream of its most severe line. The exit status is 0 when everything went well and 1
//! (borgmatic's `exit_with_help_link`) otherwise. rborg's error lines additionally carry
//! `file:line:column` and a "did you mean" suggestion, which borgmatic does not print.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rborg_config::node::resolve_plain;
use rborg_config::{ConfigError, Node, Value};

/// borgmatic's first default configuration path, the default destination of `generate`
/// (`borgmatic/config/collect.py::get_default_config_paths`).
const DEFAULT_DESTINATION: &str = "/etc/borgmatic/config.yaml";

/// `rborg config ...` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate configuration files (those given with -c, else borgmatic's default paths).
    Validate(ValidateArgs),
    /// Write a configuration template listing every option with its description.
    Generate(GenerateArgs),
}

/// Arguments of `rborg config validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Configuration file or directory (its *.yaml/*.yml files); repeatable, and one -c may
    /// name several. Default: /etc/borgmatic/config.yaml, /etc/borgmatic.d,
    /// $XDG_CONFIG_HOME/borgmatic/config.yaml, $XDG_CONFIG_HOME/borgmatic.d.
    #[arg(short = 'c', long = "config", value_name = "PATH", num_args = 1.., action = clap::ArgAction::Append)]
    pub config: Vec<PathBuf>,
    /// Show each validated configuration, after include merging and normalisation, as YAML.
    #[arg(short = 's', long)]
    pub show: bool,
}

/// Arguments of `rborg config generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Configuration file whose options to fill into the template (for upgrading an old
    /// configuration: its includes are inlined and its sectioned form made flat).
    #[arg(short = 's', long = "source", value_name = "FILE")]
    pub source: Option<PathBuf>,
    /// Where to write the template.
    #[arg(short = 'd', long = "destination", value_name = "FILE", default_value = DEFAULT_DESTINATION)]
    pub destination: PathBuf,
    /// Replace the destination file if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs a `rborg config` subcommand.
pub fn run(command: ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::Validate(args) => validate(&args),
        ConfigCommand::Generate(args) => generate(&args),
    }
}

/// How severe a summary line is; it decides the stream, as borgmatic's
/// `Multi_stream_handler` does (ANSWER to stdout, WARNING and above to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Answer,
    Warning,
    Critical,
}

/// The `summary:` block borgmatic prints at the end of every run (`display_summary`).
#[derive(Default)]
struct Summary {
    lines: Vec<(Level, String)>,
}

impl Summary {
    fn push(&mut self, level: Level, line: impl Into<String>) {
        self.lines.push((level, line.into()));
    }

    /// Prints the block and returns the exit status: 1 when a line is critical.
    fn finish(self) -> ExitCode {
        let max = self
            .lines
            .iter()
            .map(|(l, _)| *l)
            .max()
            .unwrap_or(Level::Answer);
        emit(max, "\nsummary:");
        for (level, line) in &self.lines {
            emit(*level, line);
        }
        if max == Level::Critical {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// Writes one line to the stream of `level`; a closed stream (`| head`) is not an error.
fn emit(level: Level, line: &str) {
    let _ = if level == Level::Answer {
        writeln!(io::stdout().lock(), "{line}")
    } else {
        writeln!(io::stderr().lock(), "{line}")
    };
}

/// The path as borgmatic shows it: absolute (its `collect_config_filenames` applies
/// `os.path.abspath`), lexically, without resolving symlinks.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn validate(args: &ValidateArgs) -> ExitCode {
    let explicit: Vec<PathBuf> = args.config.iter().map(|p| absolute(p)).collect();
    let results = rborg_config::validate(&explicit);
    let mut summary = Summary::default();
    if results.is_empty() {
        // borgmatic says "All configuration files are valid" for an empty set; rborg says so
        // too, but warns first so that a typo in a directory name does not go unnoticed.
        summary.push(Level::Warning, "No configuration files found");
    }
    let mut valid = Vec::new();
    for (path, result) in results {
        match result {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    summary.push(Level::Warning, warning.clone());
                }
                valid.push(loaded);
            }
            Err(error) => report_error(&mut summary, &path, &error),
        }
    }
    if summary.lines.iter().any(|(l, _)| *l == Level::Critical) {
        // Like borgmatic, nothing is shown unless every file is valid.
        summary.push(Level::Critical, "Configuration validation failed");
        return summary.finish();
    }
    if args.show {
        for loaded in &valid {
            if valid.len() > 1 {
                emit(Level::Answer, "---");
            }
            emit(Level::Answer, &render_yaml(&loaded.tree));
        }
    }
    summary.push(Level::Answer, "All configuration files are valid");
    summary.finish()
}

/// The summary lines of a file that failed to load, worded as borgmatic's
/// `load_configurations` words them, with rborg's positioned diagnostics.
fn report_error(summary: &mut Summary, path: &Path, error: &ConfigError) {
    let shown = path.display();
    match error {
        ConfigError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
            summary.push(
                Level::Critical,
                format!("{shown}: Insufficient permissions to read configuration file"),
            );
        }
        ConfigError::Io { .. } => {
            summary.push(
                Level::Critical,
                format!("{shown}: Error parsing configuration file"),
            );
            summary.push(Level::Critical, error.to_string());
        }
        ConfigError::Invalid(diagnostics) => {
            summary.push(
                Level::Critical,
                format!("{shown}: Error parsing configuration file"),
            );
            summary.push(
                Level::Critical,
                format!("An error occurred while parsing a configuration file at {shown}:"),
            );
            for diagnostic in diagnostics {
                summary.push(Level::Critical, diagnostic.to_string());
            }
        }
    }
}

fn generate(args: &GenerateArgs) -> ExitCode {
    let mut summary = Summary::default();
    let destination = &args.destination;
    emit(
        Level::Answer,
        &format!(
            "Generating a configuration file at: {}",
            destination.display()
        ),
    );
    let written = match &args.source {
        Some(source) => merged_template(source, destination),
        None => Ok(rborg_config::generate_template()),
    }
    .and_then(|text| write_configuration(destination, &text, args.overwrite));
    match written {
        Ok(()) => {
            if let Some(source) = &args.source {
                emit(
                    Level::Answer,
                    &format!(
                        "\nMerged the contents of the source configuration file: {}\n\
                         To review the changes made, run:\n\n    diff --unified {} {}",
                        source.display(),
                        source.display(),
                        destination.display()
                    ),
                );
            }
            emit(
                Level::Answer,
                "\nThis includes all available configuration options with example values, the few\n\
                 required options as indicated. Please edit the file to suit your needs.",
            );
            summary.push(Level::Answer, "Generate successful");
        }
        Err(message) => {
            emit(Level::Critical, &message);
            summary.push(Level::Critical, message);
        }
    }
    summary.finish()
}

/// The template with the options of the configuration file `source` filled in, for
/// upgrading an old configuration (`borgmatic config generate --source`,
/// `config/generate.py::generate_sample_configuration`): the source is loaded with its
/// includes and normalised to the flat form, but neither constants nor environment variables
/// are substituted, as borgmatic does. Every option the source sets replaces that option's
/// example in the template, active, below the option's description; every other option is
/// commented out, including the template's active examples (`source_directories`), which
/// borgmatic would leave active and so back up paths the source never named. The merge is
/// per top-level option: the descriptions of sub-options of a set option are not kept, unlike
/// borgmatic's. The result is validated before it is written, so a broken file is never
/// left behind.
fn merged_template(source: &Path, destination: &Path) -> Result<String, String> {
    let shown = source.display();
    let mut files = std::collections::BTreeSet::new();
    let mut tree = rborg_config::load::load_file(source, &mut files)
        .and_then(|mut tree| {
            rborg_config::normalize::normalize(&shown.to_string(), &mut tree).map(|_| tree)
        })
        .map_err(|e| format!("{shown}: cannot read the source configuration:\n{e}"))?;
    // normalize() adds an empty bootstrap hook; keep it out unless the source set it, as
    // borgmatic does ("an empty bootstrap: won't validate").
    if tree
        .get("bootstrap")
        .is_some_and(|b| matches!(&b.value, Value::Map(m) if m.is_empty()))
    {
        tree.remove("bootstrap");
    }
    let Value::Map(options) = &tree.value else {
        return Err(format!("{shown}: the configuration is not a mapping"));
    };
    let known = rborg_config::schema::top_level_options();
    if let Some((key, _)) = options
        .iter()
        .find(|(k, _)| !known.contains(&k.name.as_str()))
    {
        return Err(format!(
            "{}: unknown option '{}' (run rborg config validate -c {shown})",
            key.mark, key.name
        ));
    }
    let text = merge_into_template(&rborg_config::generate_template(), options)?;
    rborg_config::load_config_str(&text, destination, None).map_err(|e| {
        format!("the template merged with {shown} does not validate; nothing written:\n{e}")
    })?;
    Ok(text)
}

/// Replaces, in `template`, the block of every top-level option set in `options` with that
/// option's value, and comments out the other options' blocks (see [`merged_template`]).
///
/// The template lists the options in schema order, each as its description (comment lines
/// at column 0), then its example, active (`name:`) or commented out (`# name:`, nested lines
/// indented), then a blank line; nested examples contain blank lines too, so a block ends
/// where the next option's description starts.
fn merge_into_template(
    template: &str,
    options: &[(rborg_config::node::Key, Node)],
) -> Result<String, String> {
    let lines: Vec<&str> = template.lines().collect();
    let option_line = |line: &str, name: &str| {
        let line = line.strip_prefix("# ").unwrap_or(line);
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    };
    // (option, first line of its example) in template order.
    let mut starts: Vec<(&str, usize)> = Vec::new();
    let mut from = 0;
    for name in rborg_config::schema::top_level_options() {
        if let Some(i) = (from..lines.len()).find(|&i| option_line(lines[i], name)) {
            starts.push((name, i));
            from = i + 1;
        }
    }
    if let Some((key, _)) = options
        .iter()
        .find(|(k, _)| !starts.iter().any(|(name, _)| *name == k.name))
    {
        return Err(format!(
            "the template has no place for option '{}'",
            key.name
        ));
    }
    let mut out: Vec<String> = lines[..starts.first().map_or(lines.len(), |s| s.1)]
        .iter()
        .map(|l| l.to_string())
        .collect();
    for (index, (name, start)) in starts.iter().enumerate() {
        let next = starts.get(index + 1).map_or(lines.len(), |n| n.1);
        // The next option's description: the column-0 comment lines right above it.
        let mut description = next;
        while description > start + 1 && lines[description - 1].starts_with('#') {
            description -= 1;
        }
        let mut end = description;
        while end > start + 1 && lines[end - 1].trim().is_empty() {
            end -= 1;
        }
        match options.iter().find(|(k, _)| k.name == *name) {
            Some((key, value)) => {
                let single = Node::new(
                    Value::Map(vec![(key.clone(), value.clone())]),
                    value.mark.clone(),
                );
                out.extend(render_yaml(&single).lines().map(str::to_string));
            }
            None => out.extend(lines[*start..end].iter().map(|l| comment_out(l))),
        }
        out.extend(lines[end..next].iter().map(|l| l.to_string()));
    }
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}

/// `line` commented out after its indentation, unless it is blank or a comment already
/// (borgmatic's `comment_out_line`).
fn comment_out(line: &str) -> String {
    let body = line.trim_start();
    if body.is_empty() || body.starts_with('#') {
        return line.to_string();
    }
    let indent = &line[..line.len() - body.len()];
    format!("{indent}# {body}")
}

/// Writes `text` to `path` with mode 0600, creating missing parent directories (mode 0700),
/// and refuses to replace an existing file unless `overwrite`, as borgmatic's
/// `config/generate.py::write_configuration` does (a configuration may hold passphrases).
fn write_configuration(path: &Path, text: &str, overwrite: bool) -> Result<(), String> {
    let shown = path.display();
    if !overwrite && path.symlink_metadata().is_ok() {
        return Err(format!(
            "{shown} already exists. Aborting. Use --overwrite to replace the file."
        ));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).truncate(true).mode(0o600);
    if overwrite {
        options.create(true);
    } else {
        // Closes the window between the existence check and the write.
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    // An overwritten file keeps its old mode through open(); borgmatic chmods after writing.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set the mode of {shown}: {e}"))?;
    Ok(())
}

/// Renders a configuration tree as YAML the way `borgmatic config validate --show` does
/// (`borgmatic/config/generate.py::render_configuration`: ruamel.yaml with mappings indented
/// by 4 and sequence dashes by 4 within a 6-column indent), so the two outputs can be
/// compared line by line. Strings are quoted only when a plain scalar would read back as
/// something else. Unlike ruamel.yaml, long lines are not folded.
pub fn render_yaml(node: &Node) -> String {
    let mut out = String::new();
    match &node.value {
        Value::Map(entries) if !entries.is_empty() => write_map(&mut out, entries, 0, false),
        Value::Seq(items) if !items.is_empty() => write_seq(&mut out, items, 0, false),
        _ => {
            out.push_str(&scalar(node));
            out.push('\n');
        }
    }
    out
}

const MAP_INDENT: usize = 4;
const SEQ_DASH_OFFSET: usize = 2;

fn write_map(
    out: &mut String,
    entries: &[(rborg_config::node::Key, Node)],
    indent: usize,
    inline_first: bool,
) {
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 || !inline_first {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&quote_str(&key.name));
        out.push(':');
        match &value.value {
            Value::Map(inner) if !inner.is_empty() => {
                out.push('\n');
                write_map(out, inner, indent + MAP_INDENT, false);
            }
            Value::Seq(items) if !items.is_empty() => {
                out.push('\n');
                write_seq(out, items, indent + MAP_INDENT, false);
            }
            _ => {
                out.push(' ');
                out.push_str(&scalar(value));
                out.push('\n');
            }
        }
    }
}

fn write_seq(out: &mut String, items: &[Node], indent: usize, inline_first: bool) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !inline_first {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match &item.value {
            Value::Map(inner) if !inner.is_empty() => {
                write_map(out, inner, indent + SEQ_DASH_OFFSET, true);
            }
            Value::Seq(inner) if !inner.is_empty() => {
                write_seq(out, inner, indent + SEQ_DASH_OFFSET, true);
            }
            _ => {
                out.push_str(&scalar(item));
                out.push('\n');
            }
        }
    }
}

/// A scalar (or empty collection) in flow form.
fn scalar(node: &Node) -> String {
    match &node.value {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => ".nan".into(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { ".inf" } else { "-.inf" }.into(),
        Value::Float(f) => format!("{f:?}"),
        Value::Str(s) => quote_str(s),
        Value::Seq(_) => "[]".into(),
        Value::Map(_) => "{}".into(),
    }
}

/// `s` as a YAML scalar that reads back as the same string: plain when safe, single-quoted
/// otherwise, double-quoted with escapes when it holds line breaks or control characters.
fn quote_str(s: &str) -> String {
    if s.chars().any(|c| c.is_control()) {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        return out;
    }
    if plain_safe(s) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// Whether `s` written as a plain scalar in block context reads back as the string `s`.
fn plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !matches!(resolve_plain(s), Value::Str(_)) {
        return false;
    }
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return false;
    }
    if "[]{}#&*!|>'\"%@`,".contains(first) {
        return false;
    }
    if "-?:".contains(first) {
        // An indicator only when followed by a space or alone.
        if s.chars().nth(1).is_none_or(char::is_whitespace) {
            return false;
        }
    }
    !(s.contains(": ") || s.contains(" #") || s.ends_with(':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rborg_config::node::parse;

    fn round_trip(text: &str) {
        let tree = parse(text, Path::new("t.yaml")).unwrap();
        let rendered = render_yaml(&tree);
        let back =
            parse(&rendered, Path::new("r.yaml")).unwrap_or_else(|e| panic!("{rendered}\n{e}"));
        assert_eq!(tree.to_json(), back.to_json(), "{rendered}");
    }

    #[test]
    fn strings_that_look_like_other_types_are_quoted() {
        for s in [
            "",
            "~",
            "null",
            "true",
            "False",
            "12",
            "0x1f",
            "1.5",
            ".inf",
            "- x",
            "-",
            "? x",
            ": x",
            "a: b",
            "a #b",
            "a:",
            "{hostname}",
            "[x]",
            "*x",
            "&x",
            "!x",
            "|",
            ">",
            "'q'",
            "\"d\"",
            "%x",
            "@x",
            "`x",
            ",x",
            "#x",
            " lead",
            "trail ",
            "two\nlines",
            "tab\there",
            "bell\u{7}",
            "it's",
        ] {
            let text = format!("k: {}\n", quote_str(s));
            let back = parse(&text, Path::new("t.yaml")).unwrap();
            assert_eq!(back.get("k").and_then(Node::as_str), Some(s), "{text}");
        }
        assert_eq!(quote_str("/var/backups/x.borg"), "/var/backups/x.borg");
        assert_eq!(quote_str("-x"), "-x");
        assert_eq!(quote_str("ssh://a@b:22/./c"), "ssh://a@b:22/./c");
        assert_eq!(quote_str("yes"), "yes");
    }

    #[test]
    fn nested_collections_use_borgmatic_indentation() {
        let text = "a: 1\nb:\n  - x: 1\n    y:\n      - z\n  - w\nc:\n  d: {}\n  e: []\nf: null\n";
        let tree = parse(text, Path::new("t.yaml")).unwrap();
        assert_eq!(
            render_yaml(&tree),
            "a: 1\nb:\n    - x: 1\n      y:\n          - z\n    - w\nc:\n    d: {}\n    e: []\nf: null\n"
        );
        round_trip(text);
        round_trip("- - a\n  - b\n- c: 1.5\n  d: -.inf\n");
    }
}
