//! What every borg command shares: the common options, logging to stderr as borg does, errors
//! with borg's exit codes, yes/no questions and passphrase prompts.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use rborg_archive::keys::PassphraseProvider;
use rborg_crypto::Passphrase;

pub use crate::output::{EXIT_ERROR, EXIT_SUCCESS, EXIT_WARNING};

/// borg's common options (`define_common_options` in archiver.py). They are accepted before
/// and after the command name.
#[derive(Debug, Args, Clone)]
pub struct CommonOptions {
    /// work on log level CRITICAL
    #[arg(long, global = true)]
    pub critical: bool,
    /// work on log level ERROR
    #[arg(long, global = true)]
    pub error: bool,
    /// work on log level WARNING (default)
    #[arg(long, global = true)]
    pub warning: bool,
    /// work on log level INFO
    #[arg(long = "info", short = 'v', visible_alias = "verbose", global = true)]
    pub info: bool,
    /// enable debug output, work on log level DEBUG
    #[arg(long, global = true)]
    pub debug: bool,
    /// enable TOPIC debugging (can be specified multiple times)
    #[arg(long = "debug-topic", value_name = "TOPIC", global = true)]
    pub debug_topic: Vec<String>,
    /// show progress information
    #[arg(short = 'p', long, global = true)]
    pub progress: bool,
    /// format using IEC units (1KiB = 1024B)
    #[arg(long, global = true)]
    pub iec: bool,
    /// Output one JSON object per log line instead of formatted text.
    #[arg(long = "log-json", global = true)]
    pub log_json: bool,
    /// wait at most SECONDS for acquiring a repository/cache lock (default: 1).
    #[arg(
        long = "lock-wait",
        value_name = "SECONDS",
        default_value_t = 1,
        global = true
    )]
    pub lock_wait: u64,
    /// Bypass locking mechanism
    #[arg(long = "bypass-lock", global = true)]
    pub bypass_lock: bool,
    /// show/log the borg version
    #[arg(long = "show-version", global = true)]
    pub show_version: bool,
    /// show/log the return code (rc)
    #[arg(long = "show-rc", global = true)]
    pub show_rc: bool,
    /// set umask to M (local only, default: 0077)
    #[arg(long, value_name = "M", value_parser = parse_octal, default_value = "0077", global = true)]
    pub umask: u32,
    /// use PATH as borg executable on the remote (default: "borg")
    #[arg(long = "remote-path", value_name = "PATH", global = true)]
    pub remote_path: Option<String>,
    /// deprecated, use ``--upload-ratelimit`` instead
    #[arg(long = "remote-ratelimit", value_name = "RATE", global = true)]
    pub remote_ratelimit: Option<u64>,
    /// set network upload rate limit in kiByte/s (default: 0=unlimited)
    #[arg(long = "upload-ratelimit", value_name = "RATE", global = true)]
    pub upload_ratelimit: Option<u64>,
    /// deprecated, use ``--upload-buffer`` instead
    #[arg(long = "remote-buffer", value_name = "UPLOAD_BUFFER", global = true)]
    pub remote_buffer: Option<u64>,
    /// set network upload buffer size in MiB. (default: 0=no buffer)
    #[arg(long = "upload-buffer", value_name = "UPLOAD_BUFFER", global = true)]
    pub upload_buffer: Option<u64>,
    /// treat part files like normal files (e.g. to list/extract them)
    #[arg(long = "consider-part-files", global = true)]
    pub consider_part_files: bool,
    /// Write execution profile in Borg format into FILE.
    #[arg(long = "debug-profile", value_name = "FILE", global = true)]
    pub debug_profile: Option<String>,
    /// Use this command to connect to the 'borg serve' process (default: 'ssh')
    #[arg(long, value_name = "RSH", global = true)]
    pub rsh: Option<String>,
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8).map_err(|e| format!("invalid octal number {s:?}: {e}"))
}

/// borg's log levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }
}

/// Log output on stderr, formatted as borg formats it (plain messages, or JSON lines with
/// `--log-json`, see borg's `internals/frontends.rst`).
#[derive(Debug, Clone)]
pub struct Log {
    level: Level,
    json: bool,
}

impl Log {
    fn emit(&self, level: Level, msg: &str) {
        if level < self.level {
            return;
        }
        if crate::output::tap_log(level.name(), msg) {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.json {
            let line = serde_json::json!({
                "type": "log_message",
                "time": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
                "message": msg,
                "levelname": level.name(),
                "name": "borg.archiver",
            });
            let _ = writeln!(err, "{line}");
        } else {
            let _ = writeln!(err, "{msg}");
        }
    }
    pub fn debug(&self, msg: &str) {
        self.emit(Level::Debug, msg)
    }
    pub fn info(&self, msg: &str) {
        self.emit(Level::Info, msg)
    }
    pub fn warning(&self, msg: &str) {
        self.emit(Level::Warning, msg)
    }
    pub fn error(&self, msg: &str) {
        self.emit(Level::Error, msg)
    }
}

/// A command failure: borg's message and exit code.
#[derive(Debug)]
pub struct CmdError {
    pub message: String,
    pub exit_code: u8,
}

impl CmdError {
    pub fn new(message: impl Into<String>) -> Self {
        CmdError {
            message: message.into(),
            exit_code: EXIT_ERROR,
        }
    }
}

macro_rules! error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for CmdError {
            fn from(e: $t) -> Self {
                CmdError::new(e.to_string())
            }
        }
    )*};
}
error_from!(
    rborg_repository::Error,
    rborg_archive::Error,
    rborg_crypto::Error,
    rborg_repository::location::InvalidLocation,
    rborg_repository::lock::LockError,
    std::io::Error
);

/// Result of a command: borg's exit code, or an error to report.
pub type CmdResult = Result<u8, CmdError>;

/// State shared by the commands of one invocation.
pub struct Context {
    pub common: CommonOptions,
    pub log: Log,
}

impl Context {
    pub fn new(common: CommonOptions) -> Self {
        let level = if common.debug {
            Level::Debug
        } else if common.info {
            Level::Info
        } else if common.critical {
            Level::Critical
        } else if common.error {
            Level::Error
        } else {
            Level::Warning
        };
        let log = Log {
            level,
            json: common.log_json,
        };
        Context { common, log }
    }

    /// Sets the process umask early, before any file is created (borg's `os.umask(args.umask)`).
    pub fn apply_umask(&self) {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            self.common.umask as nix::libc::mode_t,
        ));
    }

    /// `--show-rc`: borg's closing line, logged at a level matching the code.
    pub fn report_rc(&self, code: u8) {
        if !self.common.show_rc {
            return;
        }
        let forced = Log {
            level: Level::Debug,
            json: self.log.json,
        };
        match code {
            EXIT_SUCCESS => forced.info(&format!("terminating with success status, rc {code}")),
            EXIT_WARNING => forced.warning(&format!("terminating with warning status, rc {code}")),
            EXIT_ERROR => forced.error(&format!("terminating with error status, rc {code}")),
            c if c >= 128 => forced.error(&format!("terminating with signal status, rc {code}")),
            _ => forced.error(&format!("terminating with abnormal status, rc {code}")),
        }
    }

    /// The lock timeout from `--lock-wait`.
    pub fn lock_wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.common.lock_wait)
    }
}

/// Answers borg's `yes()` takes as yes (`helpers/yes.py` TRUISH).
const TRUISH: [&str; 6] = ["Yes", "YES", "yes", "Y", "y", "1"];

/// borg's `yes(retry=False)` with `truish`: the environment variable `env_override` answers if
/// set; otherwise the user is asked on stdin. Anything else (including end of input) is no.
pub fn yes_with(question: &str, env_override: &str, truish: &[&str]) -> bool {
    if let Ok(v) = std::env::var(env_override) {
        eprint!("{question}");
        eprintln!("{v} (from {env_override})");
        return truish.contains(&v.as_str());
    }
    eprint!("{question}");
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
        eprintln!();
        return false;
    }
    truish.contains(&line.trim_end_matches(['\r', '\n']))
}

/// borg's `yes()` with its default answers.
pub fn yes(question: &str, env_override: &str) -> bool {
    yes_with(question, env_override, &TRUISH)
}

/// Passphrases as borg gets them: environment variables first, then a prompt on the terminal.
pub struct InteractivePassphrase;

impl PassphraseProvider for InteractivePassphrase {
    fn environment_passphrase(&mut self) -> rborg_archive::Result<Option<Passphrase>> {
        Ok(Passphrase::from_env()?)
    }

    fn ask(&mut self, prompt: &str) -> rborg_archive::Result<Passphrase> {
        if std::io::stdin().is_terminal() {
            if let Ok(p) = rpassword::prompt_password(prompt) {
                return Ok(Passphrase::new(p));
            }
        }
        rborg_archive::keys::EnvironmentPassphrase.ask(prompt)
    }

    fn new_passphrase(&mut self) -> rborg_archive::Result<Passphrase> {
        if let Some(p) = Passphrase::new_from_env()? {
            return Ok(p);
        }
        for _ in 0..10 {
            let first = self.ask("Enter new passphrase: ")?;
            let second = self.ask("Enter same passphrase again: ")?;
            if first.as_str() == second.as_str() {
                return Ok(first);
            }
            eprintln!("Passphrases do not match");
        }
        Err(rborg_archive::Error::PasswordRetriesExceeded)
    }
}

/// borg's `parse_file_size` as a clap value parser.
pub fn parse_file_size(s: &str) -> Result<u64, String> {
    rborg_repository::config::parse_file_size(s).ok_or_else(|| format!("invalid file size: {s:?}"))
}

/// borg's `format_file_size` for byte counts, decimal or with `--iec` binary units.
pub fn format_file_size(v: u64, iec: bool) -> String {
    rborg_repository::error::format_file_size_units(i64::try_from(v).unwrap_or(i64::MAX), iec)
}

/// borg's `format_timedelta` for a duration in seconds (`1 hours 2 minutes 3.50 seconds`).
pub fn format_timedelta(seconds: f64) -> String {
    let days = (seconds / 86400.0).floor() as i64;
    let s = seconds % 60.0;
    let m = (seconds / 60.0) as i64 % 60;
    let h = (seconds / 3600.0) as i64 % 24;
    let mut txt = format!("{s:.2} seconds");
    if m != 0 {
        txt = format!("{m} minutes {txt}");
    }
    if h != 0 {
        txt = format!("{h} hours {txt}");
    }
    if days != 0 {
        txt = format!("{days} days {txt}");
    }
    txt
}

/// A command line value with its position among the values of all options that use
/// [`sequenced`], so options of different kinds can be put back in command line order.
#[derive(Debug, Clone)]
pub struct Sequenced {
    pub seq: u64,
    pub value: String,
}

/// A clap value parser that numbers values in the order clap parses them, which is command
/// line order.
pub fn sequenced(s: &str) -> Result<Sequenced, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    Ok(Sequenced {
        seq: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        value: s.to_string(),
    })
}

/// borg's exclusion options (`define_exclude_and_patterns`): `-e`, `--exclude-from`,
/// `--pattern` and `--patterns-from` all add to one ordered list of rules, so the first
/// matching rule is the first given on the command line.
#[derive(Debug, Args, Clone, Default)]
pub struct ExclusionArgs {
    /// exclude paths matching PATTERN
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN", value_parser = sequenced)]
    exclude: Vec<Sequenced>,
    /// read exclude patterns from EXCLUDEFILE, one per line
    #[arg(long = "exclude-from", value_name = "EXCLUDEFILE", value_parser = sequenced)]
    exclude_from: Vec<Sequenced>,
    /// include/exclude paths matching PATTERN
    #[arg(long = "pattern", value_name = "PATTERN", allow_hyphen_values = true, value_parser = sequenced)]
    pattern: Vec<Sequenced>,
    /// read include/exclude patterns from PATTERNFILE, one per line
    #[arg(long = "patterns-from", value_name = "PATTERNFILE", value_parser = sequenced)]
    patterns_from: Vec<Sequenced>,
}

impl ExclusionArgs {
    /// The rules and `R` roots in command line order. A missing file is borg's
    /// `Error(str(FileNotFoundError))`; a bad pattern is an error as well.
    pub fn load(&self) -> Result<rborg_archive::patterns::PatternOptions, CmdError> {
        use rborg_archive::patterns::PatternOptions;
        #[derive(Clone, Copy)]
        enum Kind {
            Exclude,
            ExcludeFile,
            Pattern,
            PatternFile,
        }
        let mut all: Vec<(&Sequenced, Kind)> = Vec::new();
        all.extend(self.exclude.iter().map(|s| (s, Kind::Exclude)));
        all.extend(self.exclude_from.iter().map(|s| (s, Kind::ExcludeFile)));
        all.extend(self.pattern.iter().map(|s| (s, Kind::Pattern)));
        all.extend(self.patterns_from.iter().map(|s| (s, Kind::PatternFile)));
        all.sort_by_key(|(s, _)| s.seq);
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|e| {
                let errno = e.raw_os_error().unwrap_or(0);
                let text = e.to_string();
                let text = text.split(" (os error").next().unwrap_or(&text).to_string();
                CmdError::new(format!("[Errno {errno}] {text}: {path:?}").replace('"', "'"))
            })
        };
        let mut out = PatternOptions::default();
        for (s, kind) in all {
            let v = s.value.as_str();
            let r = match kind {
                Kind::Exclude => out.add_exclude(v),
                Kind::Pattern => out.add_pattern(v),
                Kind::ExcludeFile => out.load_exclude_file(&read(v)?),
                Kind::PatternFile => out.load_pattern_file(&read(v)?),
            };
            r.map_err(|e| CmdError::new(e.to_string()))?;
        }
        Ok(out)
    }
}

/// The terminal width as Python's `shutil.get_terminal_size` sees it: `COLUMNS`, else (when
/// stdout is a terminal, whose size rborg does not query) 80 columns, else `fallback`.
pub fn terminal_columns(fallback: Option<usize>) -> Option<usize> {
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return Some(c);
    }
    if std::io::stdout().is_terminal() {
        return Some(80);
    }
    fallback
}

/// borg's `ellipsis_truncate`: `msg` fitted into `space` columns, padded or cut in the middle.
pub fn ellipsis_truncate(msg: &str, space: usize) -> String {
    let chars: Vec<char> = msg.chars().collect();
    if space < 8 {
        return format!("...{}", " ".repeat(space.saturating_sub(3)));
    }
    if space < 3 + chars.len() {
        let head: String = chars[..(space / 2).saturating_sub(3).min(chars.len())]
            .iter()
            .collect();
        let tail_len = space.div_ceil(2).min(chars.len());
        let tail: String = chars[chars.len() - tail_len..].iter().collect();
        return format!("{head}...{tail}");
    }
    format!("{msg}{}", " ".repeat(space - chars.len()))
}

/// borg's `--progress` line for `create` (`Statistics.show_progress`): sizes so far and the
/// current path, ended by `\r` on stderr (a JSON `archive_progress` line with `--log-json`),
/// at most every 0.2 s.
pub struct CreateProgress {
    json: bool,
    iec: bool,
    last: Option<std::time::Instant>,
}

impl CreateProgress {
    pub fn new(ctx: &Context) -> Self {
        CreateProgress {
            json: ctx.common.log_json,
            iec: ctx.common.iec,
            last: None,
        }
    }

    /// Shows the statistics after an item was added.
    pub fn show(&mut self, osize: u64, csize: u64, usize: u64, nfiles: u64, path: &str) {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l).as_secs_f64() <= 0.2)
        {
            return;
        }
        self.last = Some(now);
        let mut err = std::io::stderr().lock();
        if self.json {
            let line = serde_json::json!({
                "type": "archive_progress",
                "original_size": osize,
                "compressed_size": csize,
                "deduplicated_size": usize,
                "nfiles": nfiles,
                "path": path,
                "time": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            });
            let _ = writeln!(err, "{line}");
            return;
        }
        let columns = terminal_columns(Some(80)).unwrap_or(80);
        let mut msg = format!(
            "{} O {} C {} D {nfiles} N ",
            format_file_size(osize, self.iec),
            format_file_size(csize, self.iec),
            format_file_size(usize, self.iec)
        );
        let mut space = columns.saturating_sub(msg.chars().count());
        if space < 12 {
            msg.clear();
            space = columns;
        }
        if space >= 8 {
            msg.push_str(&ellipsis_truncate(path, space));
        }
        let _ = write!(err, "{msg}\r");
    }

    /// Clears the progress line at the end (borg's `show_progress(final=True)`).
    pub fn finish(&mut self) {
        let mut err = std::io::stderr().lock();
        if self.json {
            let line = serde_json::json!({
                "type": "archive_progress",
                "finished": true,
                "time": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            });
            let _ = writeln!(err, "{line}");
        } else {
            let columns = terminal_columns(Some(80)).unwrap_or(80);
            let _ = write!(err, "{}\r", " ".repeat(columns));
        }
    }
}

/// borg's `ProgressIndicatorPercent`: `msg` with the percentage done (and an info text),
/// shown each time another `step` percent is reached, each line ended by `\r` on stderr (a
/// JSON `progress_percent` line with `--log-json`).
pub struct PercentProgress {
    json: bool,
    msgid: &'static str,
    total: u64,
    counter: u64,
    step: f64,
    trigger_at: f64,
    format: fn(f64, &str) -> String,
}

impl PercentProgress {
    pub fn new(
        ctx: &Context,
        msgid: &'static str,
        step: f64,
        format: fn(f64, &str) -> String,
    ) -> Self {
        PercentProgress {
            json: ctx.common.log_json,
            msgid,
            total: 0,
            counter: 0,
            step,
            trigger_at: 0.0,
            format,
        }
    }

    pub fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    /// A free text line on the progress channel (borg's `pi.output(...)`).
    pub fn message(&self, text: &str) {
        self.emit(text, None, false);
    }

    /// Advances by `increase` and shows the line when the next step is reached.
    pub fn show(&mut self, increase: u64, info: &str) {
        let pct = if self.total == 0 {
            100.0
        } else {
            self.counter as f64 * 100.0 / self.total as f64
        };
        self.counter += increase;
        if pct < self.trigger_at {
            return;
        }
        self.trigger_at += self.step;
        let mut info = info.to_string();
        if !self.json {
            if let Some(columns) = terminal_columns(None) {
                let used = (self.format)(pct, "").chars().count();
                info = ellipsis_truncate(&info, columns.saturating_sub(used));
            }
        }
        let line = (self.format)(pct, &info);
        self.emit(&line, Some(&info), false);
    }

    /// Ends the progress display (an empty line, or `finished` in JSON).
    pub fn finish(&self) {
        self.emit("", None, true);
    }

    fn emit(&self, text: &str, info: Option<&str>, finished: bool) {
        let mut err = std::io::stderr().lock();
        if self.json {
            let line = serde_json::json!({
                "type": "progress_percent",
                "operation": 1,
                "msgid": self.msgid,
                "finished": finished,
                "message": text,
                "current": self.counter,
                "total": self.total,
                "info": info.map(|i| vec![i.to_string()]),
                "time": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            });
            let _ = writeln!(err, "{line}");
        } else {
            let text = match terminal_columns(None) {
                Some(c) if info.is_none() => format!("{text:<c$}"),
                _ => text.to_string(),
            };
            let _ = write!(err, "{text}\r");
        }
    }
}

/// `--list` output of the commands that write archives (borg's `print_file_status` on the
/// `borg.output.list` logger): `STATUS PATH` on stderr, or a `file_status` JSON record with
/// `--log-json`, unless `--filter` leaves the status out; warnings go to the log.
pub struct FileStatusPrinter<'a> {
    pub ctx: &'a Context,
    /// `--list`.
    pub list: bool,
    /// `--filter STATUSCHARS`.
    pub filter: Option<String>,
}

impl rborg_archive::create::Reporter for FileStatusPrinter<'_> {
    fn status(&mut self, status: char, path: &[u8]) {
        if !self.list || self.filter.as_ref().is_some_and(|f| !f.contains(status)) {
            return;
        }
        let path = String::from_utf8_lossy(path);
        if self.ctx.common.log_json {
            let line = serde_json::json!({"type": "file_status", "status": status.to_string(), "path": path});
            eprintln!("{line}");
        } else {
            eprintln!("{status} {path}");
        }
    }

    fn warning(&mut self, message: &str) {
        self.ctx.log.warning(message);
    }
}
