//! The borg 1.2 command line (`borg ARGS`, `rborg borg ARGS`).
//!
//! Options, positional arguments, messages and exit codes follow borg 1.2.4's `archiver.py`, so
//! scripts and borg's own test suite can drive rborg in place of borg. Each command lives in its
//! own module and works through the library crates; this module parses and dispatches.

mod archives;
mod benchmark;
mod check;
mod common;
mod compact;
mod config;
mod create;
mod debug;
mod delete;
mod diff;
mod export_tar;
mod extract;
mod help;
mod import_tar;
mod info;
mod init;
mod key;
mod list;
mod locks;
mod mount;
mod open;
mod prune;
mod recreate;
mod rename;
mod serve;
mod upgrade;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use common::{CommonOptions, Context};

/// The version borg's command line reports. rborg implements borg 1.2.4's formats and
/// behaviour, and frontends (borgmatic) decide features by this number.
pub const BORG_VERSION: &str = "1.2.4";

#[derive(Debug, Parser)]
#[command(name = "borg", version = BORG_VERSION, disable_help_subcommand = true)]
// argparse accepts any unambiguous prefix of a long option (`--sort` for `--sort-by`)
#[command(infer_long_args = true)]
#[command(about = "Borg - Deduplicated Backups (rborg implementation)")]
pub(crate) struct BorgCli {
    #[command(flatten)]
    common: CommonOptions,
    #[command(subcommand)]
    command: BorgCommand,
}

#[derive(Debug, Subcommand)]
enum BorgCommand {
    /// Initialize an empty repository
    Init(init::InitArgs),
    /// Start repository server process
    Serve(serve::ServeArgs),
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
    /// Extra help
    Help(help::HelpArgs),
    /// Delete an existing repository or archives
    Delete(delete::DeleteArgs),
    /// find differences in archive contents
    Diff(diff::DiffArgs),
    /// create tarball from archive
    ExportTar(export_tar::ExportTarArgs),
    /// Prune archives
    Prune(prune::PruneArgs),
    /// Rename an existing archive
    Rename(rename::RenameArgs),
    /// Re-create archives
    Recreate(recreate::RecreateArgs),
    /// Create a backup archive from a tarball
    ImportTar(import_tar::ImportTarArgs),
    /// Mount archive or an entire repository as a FUSE filesystem
    Mount(mount::MountArgs),
    /// un-mount the FUSE filesystem
    Umount(mount::UmountArgs),
    /// Show archive details such as disk space used
    Info(info::InfoArgs),
    /// upgrade a repository from a previous version
    Upgrade(upgrade::UpgradeArgs),
    /// Manage a keyfile or repokey of a repository
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// benchmark command
    #[command(subcommand)]
    Benchmark(benchmark::BenchmarkCommand),
    /// debugging command (not intended for normal use)
    #[command(subcommand)]
    Debug(debug::DebugCommand),
}

/// The arguments of the borg command running now (without the program name): `mount` starts
/// itself again in the background with them, whether borg's command line came from the process
/// arguments or from the orchestrator.
static CURRENT_ARGS: std::sync::Mutex<Vec<OsString>> = std::sync::Mutex::new(Vec::new());

/// The arguments of the borg command running now (see [`CURRENT_ARGS`]).
fn current_args() -> Vec<OsString> {
    CURRENT_ARGS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Runs the borg command line with `args` (without the program name) and exits with borg's
/// exit code: 0 success, 1 warning, 2 error.
pub fn main(args: Vec<OsString>) -> ExitCode {
    ExitCode::from(run(args))
}

/// Runs the borg command line with `args` (without the program name) and returns borg's exit
/// code. The orchestrator calls this in-process for each borg operation it performs.
pub fn run(args: Vec<OsString>) -> u8 {
    *CURRENT_ARGS.lock().unwrap_or_else(|e| e.into_inner()) = args.clone();
    // like borg, no arguments at all means `borg -h`
    let args = if args.is_empty() {
        vec![OsString::from("-h")]
    } else {
        args
    };
    let argv = std::iter::once(OsString::from("borg")).chain(args);
    let cli = match BorgCli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            if !(e.use_stderr() && crate::output::tap_log("ERROR", e.to_string().trim_end())) {
                let _ = e.print();
            }
            return if e.use_stderr() {
                common::EXIT_ERROR
            } else {
                common::EXIT_SUCCESS
            };
        }
    };
    let mut ctx = Context::new(cli.common);
    ctx.apply_umask();
    if ctx.common.show_version {
        // borg's `borg.output.show-version` logger logs at INFO whatever the log level
        let mut shown = ctx.common.clone();
        shown.info = true;
        Context::new(shown)
            .log
            .info(&format!("borgbackup version {BORG_VERSION}"));
    }
    let started = std::time::Instant::now();
    let result = match cli.command {
        BorgCommand::Init(a) => init::run(&mut ctx, a),
        BorgCommand::Serve(a) => serve::run(&mut ctx, a),
        BorgCommand::Create(a) => create::run(&mut ctx, a),
        BorgCommand::Check(a) => check::run(&mut ctx, a),
        BorgCommand::Compact(a) => compact::run(&mut ctx, a),
        BorgCommand::BreakLock(a) => locks::run(&mut ctx, a),
        BorgCommand::Config(a) => config::run(&mut ctx, a),
        BorgCommand::WithLock(a) => locks::with_lock(&mut ctx, a),
        BorgCommand::List(a) => list::run(&mut ctx, a),
        BorgCommand::Extract(a) => extract::run(&mut ctx, a),
        BorgCommand::Help(a) => help::run(a),
        BorgCommand::Delete(a) => delete::run(&mut ctx, a),
        BorgCommand::Diff(a) => diff::run(&mut ctx, a),
        BorgCommand::ExportTar(a) => export_tar::run(&mut ctx, a),
        BorgCommand::Prune(a) => prune::run(&mut ctx, a),
        BorgCommand::Rename(a) => rename::run(&mut ctx, a),
        BorgCommand::Recreate(a) => recreate::run(&mut ctx, a),
        BorgCommand::ImportTar(a) => import_tar::run(&mut ctx, a),
        BorgCommand::Mount(a) => mount::run(&mut ctx, a),
        BorgCommand::Umount(a) => mount::umount(&mut ctx, a),
        BorgCommand::Info(a) => info::run(&mut ctx, a),
        BorgCommand::Upgrade(a) => upgrade::run(&mut ctx, a),
        BorgCommand::Key(c) => key::run(&mut ctx, c),
        BorgCommand::Benchmark(c) => benchmark::run(&mut ctx, c),
        BorgCommand::Debug(c) => debug::run(&mut ctx, c),
    };
    if let Some(path) = ctx.common.debug_profile.clone() {
        if let Err(e) = debug::write_profile(&path, "main", started.elapsed()) {
            ctx.log.error(&format!("{path}: {e}"));
        }
    }
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            ctx.log.error(&err.message);
            err.exit_code
        }
    };
    ctx.report_rc(code);
    code
}
