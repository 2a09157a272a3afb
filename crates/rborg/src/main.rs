//! `rborg`: a native Rust implementation of BorgBackup 1.2 and a borgmatic-style orchestrator.
//!
//! The binary has two personalities:
//! - called by a name starting with `borg` (a symlink `borg -> rborg`, or `borg.exe` in borg's test
//!   suite), or as `rborg borg ARGS`, it is the borg 1.2 command line;
//! - called as `borgmatic` (a symlink), or as `rborg [ACTION...]`, it is the borgmatic-compatible
//!   orchestrator (`orchestrator`): the actions of each configuration file for each repository;
//! - `rborg benchmark ...` and `rborg config validate|generate` are rborg's own commands.
//!
//! This crate only parses, wires and prints; the work is done by the library crates.

mod benchmark;
mod borg;
mod completions;
mod orchestrator;
mod output;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// rborg: BorgBackup 1.2 compatible backups, natively and on every core.
#[derive(Debug, Parser)]
#[command(name = "rborg", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the borg 1.2 compatible command line (`rborg borg init ...` is `borg init ...`).
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Borg {
        /// Arguments exactly as borg takes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<OsString>,
    },
    /// Measure the speed of rborg's building blocks.
    #[command(subcommand)]
    Benchmark(benchmark::BenchmarkCommand),
    /// Validate borgmatic configuration files or generate a commented template.
    #[command(subcommand)]
    Config(orchestrator::config_cmd::ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish) generated from rborg's clap definitions.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: completions::Shell,
    },
    /// Print the rborg(1) man page (roff) generated from rborg's clap definitions.
    Man,
}

/// How many malloc arenas glibc may make (`M_ARENA_MAX`), unless `MALLOC_ARENA_MAX` in the
/// environment says otherwise.
///
/// glibc gives threads their own arenas (up to eight per core), and an arena keeps the
/// memory its threads freed. The pipelines (create's walker and workers, extract's reader,
/// opener and writer, check's verifiers) free big buffers on other threads than made them,
/// so every arena ended up holding a peak of its own: extract of the 4 GiB benchmark archive
/// peaked at 113-114 MB against borg's 108-112 MB, at 96 MB with two arenas. On the 1 GiB
/// dataset (3 alternating rounds) two arenas took 5-10 MB off create, extract and check at the
/// same speed; docs/performance.md, "Scaling to 4 GiB". The pipelines allocate per chunk or
/// per batch, not per byte, so two arenas do not contend.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;

/// Sets [`MALLOC_ARENAS`] (glibc only; other allocators have no such knob).
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` only changes an allocator parameter, which glibc reads under its
        // own lock; it is called first thing in `main`, before this process starts a thread.
        // Measured to matter (see MALLOC_ARENAS), and no safe wrapper exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

fn main() -> ExitCode {
    // Keys, the passphrase and BORG_PASSPHRASE (in the environment) live in this process: not
    // dumpable, a crash writes no core file holding them, and other processes of the same user
    // can neither read /proc/PID/environ nor attach a debugger (as ssh-agent does). Programs
    // rborg starts (hooks, database dumps, ssh) are dumpable again after their exec.
    let _ = nix::sys::prctl::set_dumpable(false);
    cap_malloc_arenas();
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    args.remove(0);
    if invoked_as.starts_with("borgmatic") {
        // a `borgmatic -> rborg` link: every argument is borgmatic's, `borg` is its action
        return orchestrator::main(args);
    }
    if invoked_as.starts_with("borg") {
        return borg::main(args);
    }
    // rborg's own commands come first; anything else is the orchestrator's command line
    let first = args.first().and_then(|a| a.to_str()).unwrap_or_default();
    if !matches!(
        first,
        "borg" | "benchmark" | "config" | "completions" | "man" | "help"
    ) {
        return orchestrator::main(args);
    }
    let cli = Cli::parse_from(std::iter::once(OsString::from("rborg")).chain(args));
    match cli.command {
        Command::Borg { args } => borg::main(args),
        Command::Benchmark(cmd) => output::exit_with(benchmark::run(cmd)),
        Command::Config(cmd) => orchestrator::config_cmd::run(cmd),
        Command::Completions { shell } => {
            completions::exit_with(completions::completions(shell, &mut std::io::stdout()))
        }
        Command::Man => completions::exit_with(completions::man(&mut std::io::stdout())),
    }
}
