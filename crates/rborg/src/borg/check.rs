//! `borg check`: verify the repository's segments and index (`--repository-only`), with
//! `--repair` rebuilding what can be rebuilt.

use clap::Args;

use super::archives::ArchiveFilterArgs;
use super::common::{
    yes_with, CmdError, CmdResult, Context, EXIT_ERROR, EXIT_SUCCESS, EXIT_WARNING,
};
use rborg_archive::check::{self, Severity};
use rborg_archive::manifest::Operation;
use rborg_repository::location::Location;
use rborg_repository::LocalRepository;

use super::open::{location, open_repository, open_with_manifest, LockMode};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// only perform repository checks
    #[arg(long = "repository-only")]
    repo_only: bool,
    /// only perform archives checks
    #[arg(long = "archives-only")]
    archives_only: bool,
    /// perform cryptographic archive data integrity verification (conflicts with ``--repository-only``)
    #[arg(long = "verify-data")]
    verify_data: bool,
    /// attempt to repair any inconsistencies found
    #[arg(long)]
    repair: bool,
    /// work slower, but using less space
    #[arg(long = "save-space")]
    save_space: bool,
    /// do only a partial repo check for max. SECONDS seconds (Default: unlimited)
    #[arg(long = "max-duration", value_name = "SECONDS", default_value_t = 0)]
    max_duration: u64,
    #[command(flatten)]
    filter: ArchiveFilterArgs,
    /// repository or archive to check consistency of
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    location: Option<String>,
}

pub fn run(ctx: &mut Context, args: CheckArgs) -> CmdResult {
    if args.repair {
        let question = "This is a potentially dangerous function.\n\
                        check --repair might lead to data loss (for kinds of corruption it is not\n\
                        capable of dealing with). BE VERY CAREFUL!\n\n\
                        Type 'YES' if you understand this and want to continue: ";
        if !yes_with(question, "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", &["YES"]) {
            eprintln!("Aborting.");
            return Ok(EXIT_ERROR);
        }
    }
    let archive_filters = args.verify_data || args.filter.any();
    if args.repo_only && archive_filters {
        ctx.log.error(
            "--repository-only contradicts --first, --last, --glob-archives, --prefix and --verify-data arguments.",
        );
        return Ok(EXIT_ERROR);
    }
    if args.repair && args.max_duration > 0 {
        ctx.log
            .error("--repair does not allow --max-duration argument.");
        return Ok(EXIT_ERROR);
    }
    if args.max_duration > 0 && !args.repo_only {
        ctx.log
            .error("--repository-only is required for --max-duration support.");
        return Ok(EXIT_ERROR);
    }
    let _ = args.save_space;
    let loc = location(args.location.as_deref())?;
    let mut code = EXIT_SUCCESS;
    if !args.archives_only {
        let mut repository = open_repository(ctx, &loc, LockMode::Exclusive)?;
        if !check_repository(ctx, &mut repository, &args)? {
            code = EXIT_WARNING;
        }
        repository.close()?;
    }
    if !args.repo_only && !check_archives(ctx, &loc, &args)? {
        code = EXIT_WARNING;
    }
    Ok(code)
}

/// The repository part (segments and index); true when no problem remains.
fn check_repository(
    ctx: &Context,
    repository: &mut LocalRepository,
    args: &CheckArgs,
) -> Result<bool, CmdError> {
    ctx.log.info("Starting repository check");
    let partial = args.max_duration > 0;
    let report = if partial {
        repository.check_partial(std::time::Duration::from_secs(args.max_duration))?
    } else {
        repository.check_report(args.repair)?
    };
    let mode = if partial { "partial" } else { "full" };
    for e in &report.errors {
        ctx.log.error(e);
    }
    for w in &report.warnings {
        ctx.log.warning(w);
    }
    let found_errors = !report.errors.is_empty();
    if found_errors && args.repair {
        ctx.log.info(&format!(
            "Finished {mode} repository check, errors found and repaired."
        ));
    } else if found_errors {
        ctx.log
            .error(&format!("Finished {mode} repository check, errors found."));
    } else {
        ctx.log.info(&format!(
            "Finished {mode} repository check, no problems found."
        ));
    }
    Ok(report.ok)
}

/// The archive part (borg's `ArchiveChecker` without repair); true when no problem was found.
fn check_archives(ctx: &Context, loc: &Location, args: &CheckArgs) -> Result<bool, CmdError> {
    ctx.log.info("Starting archive consistency check...");
    let mut opened = open_with_manifest(ctx, loc, LockMode::Exclusive, &[Operation::Check])?;
    let manifest = std::mem::take(&mut opened.manifest);
    let (selected, check_all) = match &loc.archive {
        Some(name) => {
            if !manifest.archives.contains_key(name) {
                return Err(CmdError::new(format!("Archive {name} does not exist")));
            }
            (vec![name.clone()], false)
        }
        None => (args.filter.select_names(&manifest)?, !args.filter.any()),
    };
    let report = check::check_archives(
        &mut opened.repository,
        &opened.key.key,
        &manifest,
        &selected,
        check_all,
        args.verify_data,
    )?;
    for (severity, line) in &report.lines {
        match severity {
            Severity::Info => ctx.log.info(line),
            Severity::Error => ctx.log.error(line),
        }
    }
    if report.ok() {
        ctx.log
            .info("Archive consistency check complete, no problems found.");
    } else {
        if args.repair {
            ctx.log
                .error("rborg cannot repair archives yet; real borg's check --repair can.");
        }
        ctx.log
            .error("Archive consistency check complete, problems found.");
    }
    opened.repository.close()?;
    Ok(report.ok())
}
