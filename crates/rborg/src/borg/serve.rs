//! `borg serve`: the repository server a client starts over ssh (borg 1.2.4 `archiver.py`
//! `do_serve`, `remote.py` `RepositoryServer`). It speaks the msgpack RPC on stdin/stdout and
//! sends its log records to stderr (see `docs/remote.md`).

use std::path::PathBuf;

use clap::Args;
use rborg_remote::{serve, Level, ServeOptions};

use super::common::{parse_file_size, CmdError, CmdResult, Context, EXIT_SUCCESS};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// restrict repository access to PATH. Can be specified multiple times to allow the client
    /// access to several directories. Access to all sub-directories is granted implicitly;
    /// PATH doesn't need to directly point to a repository.
    #[arg(long = "restrict-to-path", value_name = "PATH")]
    restrict_to_paths: Vec<PathBuf>,
    /// restrict repository access. Only the repository located at PATH (no sub-directories
    /// are considered) is accessible. Can be specified multiple times to allow the client
    /// access to several repositories.
    #[arg(long = "restrict-to-repository", value_name = "PATH")]
    restrict_to_repositories: Vec<PathBuf>,
    /// only allow appending to repository segment files.
    #[arg(long = "append-only")]
    append_only: bool,
    /// Override storage quota of the repository (e.g. 5G, 1.5T).
    #[arg(long = "storage-quota", value_name = "QUOTA", value_parser = parse_file_size)]
    storage_quota: Option<u64>,
}

pub fn run(ctx: &mut Context, args: ServeArgs) -> CmdResult {
    let c = &ctx.common;
    let log_level = if c.debug {
        Level::Debug
    } else if c.info {
        Level::Info
    } else if c.critical {
        Level::Critical
    } else if c.error {
        Level::Error
    } else {
        Level::Warning
    };
    let opts = ServeOptions {
        restrict_to_paths: args.restrict_to_paths,
        restrict_to_repositories: args.restrict_to_repositories,
        append_only: args.append_only,
        storage_quota: args.storage_quota,
        log_level: Some(log_level),
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    serve(
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
        &opts,
    )
    .map_err(|e| CmdError::new(e.to_string()))?;
    Ok(EXIT_SUCCESS)
}
