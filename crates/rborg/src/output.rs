//! Exit codes and error reporting shared by both personalities of the binary.

use std::process::ExitCode;

/// borg's exit codes (`borg.helpers.EXIT_*`).
pub const EXIT_SUCCESS: u8 = 0;
/// A warning: the operation completed, but something deserves attention.
pub const EXIT_WARNING: u8 = 1;
/// An error: the operation did not complete.
pub const EXIT_ERROR: u8 = 2;

/// Prints an `anyhow` error chain the way a user can act on it and maps it to borg's error exit code.
pub fn exit_with(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("{err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Where the borg commands' standard output goes: the process's stdout, or a buffer while the
/// orchestrator runs a borg command in-process and needs its output (the `--json` of `list`,
/// `info`, `create`, which borgmatic collects from every repository into one JSON array).
static STDOUT_CAPTURE: std::sync::Mutex<Option<Vec<u8>>> = std::sync::Mutex::new(None);

/// A handle on the standard output of borg commands; see [`capture_stdout`].
pub struct Stdout;

/// Standard output for borg commands (honours [`capture_stdout`]).
pub fn stdout() -> Stdout {
    Stdout
}

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut capture = STDOUT_CAPTURE.lock().unwrap_or_else(|e| e.into_inner());
        match capture.as_mut() {
            Some(captured) => {
                captured.extend_from_slice(buf);
                Ok(buf.len())
            }
            None => std::io::stdout().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// Runs `f` with the borg commands' standard output collected, and returns what it wrote.
pub fn capture_stdout<T>(f: impl FnOnce() -> T) -> (T, Vec<u8>) {
    *STDOUT_CAPTURE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    let result = f();
    let captured = STDOUT_CAPTURE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    (result, captured)
}

/// A receiver of the borg commands' log lines (level name as borg's `levelname`, message).
pub type LogTap = Box<dyn Fn(&str, &str) + Send + Sync>;

static LOG_TAP: std::sync::RwLock<Option<LogTap>> = std::sync::RwLock::new(None);

/// Sends the borg commands' log lines to `tap` instead of stderr (the orchestrator logs them
/// with its own verbosity, to its log file and syslog, and keeps them for monitoring hooks).
pub fn set_log_tap(tap: Option<LogTap>) {
    *LOG_TAP.write().unwrap_or_else(|e| e.into_inner()) = tap;
}

/// Hands a log line to the tap if one is set; returns whether it did.
pub fn tap_log(level: &str, message: &str) -> bool {
    match LOG_TAP.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(tap) => {
            tap(level, message);
            true
        }
        None => false,
    }
}
