//! borg 1.2's remote repository protocol (`borg/remote.py`): the client that reaches a
//! repository through `ssh host borg serve` ([`RemoteRepository`], implementing
//! [`rborg_repository::Repository`]) and the server loop `borg serve` runs ([`serve`]).
//!
//! The wire format is a stream of msgpack values in borg's "raw" flavour ([`msgpack`]); see
//! `docs/remote.md` for the message layout, the negotiation and the log relay. With the default
//! `ssh2` feature, [`ssh2_transport`] reaches the server over in-process SSH instead of a
//! spawned `ssh`.

#![warn(missing_docs)]

pub mod client;
pub mod msgpack;
pub mod server;
#[cfg(feature = "ssh2")]
pub mod ssh2_transport;

pub use client::{
    parse_remote_line, shell_split, LogSink, OpenArgs, RemoteLog, RemoteRepository, SshCommand,
};
pub use server::{serve, ServeError, ServeOptions};

/// The borg version rborg speaks for, as borg sends it in `negotiate` (`parse_version("1.2.4")`,
/// where the trailing -1 marks a release).
pub const BORG_VERSION: [i128; 4] = [1, 2, 4, -1];

/// Log levels of remote log records (Python `logging` level names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `DEBUG`
    Debug,
    /// `INFO`
    Info,
    /// `WARNING`
    Warning,
    /// `ERROR`
    Error,
    /// `CRITICAL`
    Critical,
}

impl Level {
    /// The Python level name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    /// Parses a level name; unknown names are `Critical` (as borg's `getattr(logging, ..,
    /// logging.CRITICAL)`).
    pub fn from_name(s: &str) -> Level {
        match s {
            "DEBUG" => Level::Debug,
            "INFO" => Level::Info,
            "WARNING" | "WARN" => Level::Warning,
            "ERROR" => Level::Error,
            _ => Level::Critical,
        }
    }
}
