//! The borg 1.2 command line (`borg ARGS`, `rborg borg ARGS`).
//!
//! Options, positional arguments, messages and exit codes follow borg 1.2.4's `archiver.py`, so
//! scripts and borg's own test suite can drive rborg in place of borg. Each command lives in its
//! own module and works through the library crates; this module parses and dispatches.

mod archives;
mod check;
mod common;
mod compact;
mod config;
mod create;
mod debug;
mod delete;
mod extract;
mod info;
mod init;
mod key;
mod list;
mod locks;
mod open;
mod rename;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use common::{CommonOptions, Context};

/// The version borg's command line reports. rborg implements borg 1.2.4's formats and
/// behaviour, and frontends (borgmatic) decide features by this number.
pub const BORG_VERSION: &str = "1.2.4";

#[derive(Debug, Parser)]
#[command(name = "borg", version = BORG_VERSION, disable_help_subcommand = true)]
#[command(about = "Borg - Deduplicated Backups (rborg implementation)")]
struct BorgCli {
    #[command(flatten)]
    common: CommonOptions,
    #[command(subcommand)]
    command: BorgCommand,
}

#[derive(Debug, Subcommand)]
enum BorgCommand {
    /// Initialize an empty repository
    Init(init::InitArgs),
    /// Create new archive
    Create(create::CreateArgs),
    /// Check repository consistency
    Check(check::CheckArgs),
    /// compact segment files in the repository
    Compact(compact::CompactArgs),
    /// Break the repository lock (e.g. in case it was left by a dead borg.
    BreakLock(locks::BreakLockArgs),
    /// get, set, and delete values in a repository or cache config file
    Config(config::ConfigArgs),
    /// run a user specified command with the repository lock held
    WithLock(locks::WithLockArgs),
    /// List archive or repository contents
    List(list::ListArgs),
    /// Extract archive contents
    Extract(extract::ExtractArgs),
    /// Delete an existing repository or archives
    Delete(delete::DeleteArgs),
    /// Rename an existing archive
    Rename(rename::RenameArgs),
    /// Show archive details such as disk space used
    Info(info::InfoArgs),
    /// Manage a keyfile or repokey of a repository
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// debugging command (not intended for normal use)
    #[command(subcommand)]
    Debug(debug::DebugCommand),
}

/// Runs the borg command line with `args` (without the program name) and returns borg's exit
/// code: 0 success, 1 warning, 2 error.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from("borg")).chain(args);
    let cli = match BorgCli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                common::EXIT_ERROR
            } else {
                common::EXIT_SUCCESS
            });
        }
    };
    let mut ctx = Context::new(cli.common);
    ctx.apply_umask();
    if ctx.common.show_version {
        ctx.log.info(&format!("borgbackup version {BORG_VERSION}"));
    }
    let result = match cli.command {
        BorgCommand::Init(a) => init::run(&mut ctx, a),
        BorgCommand::Create(a) => create::run(&mut ctx, a),
        BorgCommand::Check(a) => check::run(&mut ctx, a),
        BorgCommand::Compact(a) => compact::run(&mut ctx, a),
        BorgCommand::BreakLock(a) => locks::run(&mut ctx, a),
        BorgCommand::Config(a) => config::run(&mut ctx, a),
        BorgCommand::WithLock(a) => locks::with_lock(&mut ctx, a),
        BorgCommand::List(a) => list::run(&mut ctx, a),
        BorgCommand::Extract(a) => extract::run(&mut ctx, a),
        BorgCommand::Delete(a) => delete::run(&mut ctx, a),
        BorgCommand::Rename(a) => rename::run(&mut ctx, a),
        BorgCommand::Info(a) => info::run(&mut ctx, a),
        BorgCommand::Key(c) => key::run(&mut ctx, c),
        BorgCommand::Debug(c) => debug::run(&mut ctx, c),
    };
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            ctx.log.error(&err.message);
            err.exit_code
        }
    };
    ctx.report_rc(code);
    ExitCode::from(code)
}
