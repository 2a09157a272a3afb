//! The orchestrator's log, with borgmatic's verbosity levels and destinations.
//!
//! borgmatic (`borgmatic/logger.py`) logs to the console at `--verbosity`, to syslog/journald at
//! `--syslog-verbosity`, to `--log-file` at `--log-file-verbosity`, and keeps what monitoring hooks
//! send (healthchecks' log tail, loki) at `--monitoring-verbosity`. Its levels are numbers:
//! -2 nothing, -1 errors, 0 warnings and *answers* (what the user asked for: `--stats`,
//! `--list`, listings), 1 info, 2 debug. Messages from the in-process borg commands arrive
//! through [`crate::output::set_log_tap`] and are logged here with the repository prefix.
//!
//! Secrets registered with [`redact`] (passphrases) are replaced before a line goes anywhere.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Mutex;

/// A log level as borgmatic numbers verbosities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Shown from verbosity -1.
    Error = -1,
    /// Warnings, shown from verbosity 0.
    Warning = 0,
    /// Output the user asked for (borgmatic's ANSWER level), shown from verbosity 0.
    Answer = 1,
    /// Shown from verbosity 1.
    Info = 2,
    /// Shown from verbosity 2.
    Debug = 3,
}

impl Level {
    /// Whether a destination at `verbosity` shows this level.
    fn shown_at(self, verbosity: i8) -> bool {
        let needed = match self {
            Level::Error => -1,
            Level::Warning | Level::Answer => 0,
            Level::Info => 1,
            Level::Debug => 2,
        };
        verbosity >= needed
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warning => "WARNING",
            Level::Answer => "ANSWER",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }

    /// syslog severity (RFC 5424).
    fn severity(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Answer => 5,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }

    /// The level of a borg log line (borg's `levelname`).
    pub fn from_borg(levelname: &str) -> Level {
        match levelname {
            "DEBUG" => Level::Debug,
            "INFO" => Level::Info,
            "WARNING" => Level::Warning,
            _ => Level::Error,
        }
    }
}

/// Where the log goes and how much of it.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Console (stderr) verbosity.
    pub verbosity: i8,
    /// syslog verbosity (-2 disables it).
    pub syslog_verbosity: i8,
    /// Log file and its verbosity.
    pub log_file: Option<PathBuf>,
    /// Verbosity of the log file.
    pub log_file_verbosity: i8,
    /// Verbosity of what monitoring hooks receive.
    pub monitoring_verbosity: i8,
    /// One JSON object per console line.
    pub json: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            verbosity: 0,
            syslog_verbosity: -2,
            log_file: None,
            log_file_verbosity: 1,
            monitoring_verbosity: 1,
            json: false,
        }
    }
}

struct Logger {
    options: LogOptions,
    file: Option<File>,
    syslog: Option<UnixDatagram>,
    /// Prefix of the current work ("label: ").
    prefix: String,
    /// Lines kept for monitoring hooks since the last [`take_captured`].
    captured: String,
    /// While positive, nothing is logged (probes whose failure is expected).
    quiet: usize,
    /// The log lines of the borg command running now (for the `{output}` hook variable).
    command_output: Option<String>,
    secrets: Vec<String>,
}

static LOGGER: Mutex<Option<Logger>> = Mutex::new(None);

fn with_logger<T>(f: impl FnOnce(&mut Logger) -> T) -> Option<T> {
    LOGGER
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .map(f)
}

/// Sets up the log; `Err` if the log file cannot be opened.
pub fn init(options: LogOptions) -> std::io::Result<()> {
    let file = match &options.log_file {
        Some(path) => Some(OpenOptions::new().create(true).append(true).open(path)?),
        None => None,
    };
    let syslog = (options.syslog_verbosity > -2)
        .then(|| {
            let socket = UnixDatagram::unbound().ok()?;
            socket.connect("/dev/log").ok()?;
            Some(socket)
        })
        .flatten();
    *LOGGER.lock().unwrap_or_else(|e| e.into_inner()) = Some(Logger {
        options,
        file,
        syslog,
        prefix: String::new(),
        captured: String::new(),
        quiet: 0,
        command_output: None,
        secrets: Vec::new(),
    });
    crate::output::set_log_tap(Some(Box::new(|level, message| {
        log(Level::from_borg(level), message)
    })));
    Ok(())
}

/// Never logs `secret` (a passphrase): every occurrence is replaced by `***`.
pub fn redact(secret: &str) {
    if secret.len() < 4 {
        return;
    }
    with_logger(|l| {
        if !l.secrets.iter().any(|s| s == secret) {
            l.secrets.push(secret.to_string())
        }
    });
}

/// Sets the prefix of the following lines (borgmatic prefixes with the configuration file or
/// the repository label); `None` clears it.
pub fn set_prefix(prefix: Option<&str>) {
    with_logger(|l| {
        l.prefix = prefix.map(|p| format!("{p}: ")).unwrap_or_default();
    });
}

/// The lines kept for monitoring since the last call, and starts a new capture.
pub fn take_captured() -> String {
    with_logger(|l| std::mem::take(&mut l.captured)).unwrap_or_default()
}

/// Silences the log until the guard is dropped (for probes whose failure is expected, such as
/// `repo-create` asking whether the repository exists).
pub fn quiet() -> QuietGuard {
    with_logger(|l| l.quiet += 1);
    QuietGuard
}

/// See [`quiet`].
pub struct QuietGuard;

impl Drop for QuietGuard {
    fn drop(&mut self) {
        with_logger(|l| l.quiet = l.quiet.saturating_sub(1));
    }
}

/// Starts keeping the log lines of a borg command (see [`end_command_output`]).
pub fn begin_command_output() {
    with_logger(|l| l.command_output = Some(String::new()));
}

/// The log lines kept since [`begin_command_output`].
pub fn end_command_output() -> String {
    with_logger(|l| l.command_output.take().unwrap_or_default()).unwrap_or_default()
}

/// Logs `message` at `level` to every destination that shows it.
pub fn log(level: Level, message: &str) {
    let handled = with_logger(|l| {
        if l.quiet > 0 {
            return;
        }
        let mut message = message.to_string();
        for secret in &l.secrets {
            message = message.replace(secret.as_str(), "***");
        }
        let line = format!("{}{}", l.prefix, message);
        if level.shown_at(l.options.verbosity) {
            let mut err = std::io::stderr().lock();
            if l.options.json {
                let json = serde_json::json!({"level": level.name(), "message": line});
                let _ = writeln!(err, "{json}");
            } else {
                let _ = writeln!(err, "{line}");
            }
        }
        if let Some(output) = l.command_output.as_mut() {
            output.push_str(&message);
            output.push('\n');
        }
        if level.shown_at(l.options.monitoring_verbosity) {
            l.captured.push_str(&line);
            l.captured.push('\n');
        }
        if level.shown_at(l.options.log_file_verbosity) {
            if let Some(file) = l.file.as_mut() {
                let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f");
                let _ = writeln!(file, "[{now}] {}: {line}", level.name());
            }
        }
        if level.shown_at(l.options.syslog_verbosity) {
            if let Some(socket) = l.syslog.as_ref() {
                // facility user (1), RFC 3164 tag as borgmatic's SysLogHandler uses
                let priority = 8 + level.severity();
                let _ = socket.send(format!("<{priority}>rborg: {line}").as_bytes());
            }
        }
    });
    if handled.is_none() {
        eprintln!("{message}");
    }
}

/// Logs at error level.
pub fn error(message: &str) {
    log(Level::Error, message)
}

/// Logs at warning level.
pub fn warning(message: &str) {
    log(Level::Warning, message)
}

/// Logs output the user asked for.
pub fn answer(message: &str) {
    log(Level::Answer, message)
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message)
}

/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message)
}

/// The console verbosity (to choose borg's `--info`/`--debug` as borgmatic does).
pub fn verbosity() -> i8 {
    with_logger(|l| l.options.verbosity).unwrap_or(0)
}
