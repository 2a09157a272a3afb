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
