//! `borg compact`: free the space of deleted and superseded objects by rewriting sparse
//! segments.

use clap::Args;
use rborg_archive::MANIFEST_ID;
use rborg_repository::Repository;

use super::common::{CmdResult, Context, EXIT_SUCCESS};
use super::open::{location, open_repository, LockMode};

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// cleanup commit-only 17-byte segment files
    #[arg(long = "cleanup-commits")]
    cleanup_commits: bool,
    /// set minimum threshold for saved space in PERCENT (Default: 10)
    #[arg(long, value_name = "PERCENT", default_value_t = 10)]
    threshold: u32,
    /// repository to compact
    #[arg(value_name = "REPOSITORY")]
    location: Option<String>,
}

pub fn run(ctx: &mut Context, args: CompactArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    let mut repository = open_repository(ctx, &loc, LockMode::Exclusive)?;
    // Like borg: rewrite the manifest so there is a transaction to commit even when nothing
    // else changed; the commit then compacts.
    let manifest = repository.get(&MANIFEST_ID)?;
    repository.put(&MANIFEST_ID, &manifest)?;
    // the remote server reports the freed space itself
    let before = match repository.as_local_mut() {
        Some(r) => Some(r.hints()?.storage_quota_use),
        None => None,
    };
    repository.commit_with_cleanup(
        true,
        f64::from(args.threshold) / 100.0,
        args.cleanup_commits,
    )?;
    if let (Some(before), Some(r)) = (before, repository.as_local_mut()) {
        let after = r.hints()?.storage_quota_use;
        ctx.log.info(&format!(
            "compaction freed about {} repository space.",
            rborg_repository::error::format_file_size(before as i64 - after as i64)
        ));
    }
    repository.close()?;
    Ok(EXIT_SUCCESS)
}
