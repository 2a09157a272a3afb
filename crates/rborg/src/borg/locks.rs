//! `borg break-lock` and `borg with-lock`: remove a lock left by a dead process, or hold the
//! repository lock while another command runs.

use clap::Args;
use rborg_repository::Repository;

use super::common::{CmdError, CmdResult, Context, EXIT_ERROR, EXIT_SUCCESS};
use super::open::{location, open_repository, LockMode};

#[derive(Debug, Args)]
pub struct BreakLockArgs {
    /// repository for which to break the locks
    #[arg(value_name = "REPOSITORY")]
    location: Option<String>,
}

pub fn run(ctx: &mut Context, args: BreakLockArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    let mut repository = open_repository(ctx, &loc, LockMode::None)?;
    repository.break_lock()?;
    let cache_dir =
        rborg_archive::cache::repository_cache_dir(&rborg_crypto::paths::std_env, &repository.id());
    if cache_dir.is_dir() {
        rborg_repository::lock::break_lock(&cache_dir)?;
    }
    Ok(EXIT_SUCCESS)
}

#[derive(Debug, Args)]
pub struct WithLockArgs {
    /// repository to lock
    #[arg(value_name = "REPOSITORY")]
    location: String,
    /// command to run
    #[arg(value_name = "COMMAND")]
    command: String,
    /// command arguments
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

/// Runs a command while holding the exclusive repository lock and exits with its exit code.
/// Like borg, the manifest is rewritten first so a transaction is open (which also upgrades the
/// lock on servers that predate exclusive opens), and committed afterwards so the segment
/// written meanwhile is never reused for other content.
pub fn with_lock(ctx: &mut Context, args: WithLockArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let mut repository = open_repository(ctx, &loc, LockMode::Exclusive)?;
    let manifest = repository.get(&rborg_archive::MANIFEST_ID)?;
    repository.put(&rborg_archive::MANIFEST_ID, &manifest)?;
    let status = std::process::Command::new(&args.command)
        .args(&args.args)
        .status();
    repository.commit(false, rborg_repository::DEFAULT_COMPACT_THRESHOLD)?;
    repository.close()?;
    match status {
        Ok(s) => Ok(s
            .code()
            .map(|c| c.clamp(0, 255) as u8)
            .unwrap_or(EXIT_ERROR)),
        Err(e) => Err(CmdError::new(format!("{}: {e}", args.command))),
    }
}
