//! `borg check`: verify the repository's segments and index, then the archives (borg 1.2.4
//! `archiver.py` `do_check`: `Repository.check` followed by `ArchiveChecker.check`), with
//! `--repair` fixing what can be fixed.

use clap::Args;

use super::archives::ArchiveFilterArgs;
use super::common::{
    yes_with, CmdError, CmdResult, Context, InteractivePassphrase, EXIT_ERROR, EXIT_SUCCESS,
    EXIT_WARNING,
};
use rborg_archive::check::{self, CheckOptions, Selection, Severity};
use rborg_archive::keys::load_key;
use rborg_archive::security::SecurityDir;
use rborg_archive::Manifest;
use rborg_crypto::paths::std_env;

use super::open::{location, open_repository, AnyRepository, LockMode};

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
    // borg's --save-space only makes commits slower; rborg's commits need no extra space
    let _ = args.save_space;
    let loc = location(args.location.as_deref())?;
    let mut repository = open_repository(ctx, &loc, LockMode::Exclusive)?;
    if !args.archives_only && !check_repository(ctx, &mut repository, &args)? {
        repository.close()?;
        return Ok(EXIT_WARNING);
    }
    if !args.repo_only && !check_archives(ctx, &mut repository, loc.archive.clone(), &args)? {
        repository.close()?;
        return Ok(EXIT_WARNING);
    }
    repository.close()?;
    Ok(EXIT_SUCCESS)
}

/// The repository part (segments and index); true when no problem remains. A remote
/// repository is checked by `borg serve`, which logs the details itself.
fn check_repository(
    ctx: &Context,
    repository: &mut AnyRepository,
    args: &CheckArgs,
) -> Result<bool, CmdError> {
    let repository = match repository {
        AnyRepository::Local(local) => local,
        AnyRepository::Remote(remote, _) => {
            return Ok(remote.check_with_duration(
                args.repair,
                args.save_space,
                args.max_duration,
            )?)
        }
    };
    ctx.log.info("Starting repository check");
    let partial = args.max_duration > 0;
    if ctx.common.progress {
        // borg's progress indicator for this step (`Checking segments %3.1f%%`)
        eprint!("Checking segments 0.0%\r");
    }
    let report = if partial {
        repository.check_partial(std::time::Duration::from_secs(args.max_duration))?
    } else {
        repository.check_report(args.repair)?
    };
    if ctx.common.progress {
        eprintln!("Checking segments 100.0%");
    }
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

/// The archive part (borg's `ArchiveChecker.check`): true when no problem was found, or when
/// repairing.
fn check_archives(
    ctx: &Context,
    repository: &mut AnyRepository,
    archive: Option<String>,
    args: &CheckArgs,
) -> Result<bool, CmdError> {
    // The key comes from any object: the manifest may be missing or damaged (borg's `make_key`).
    let Some(sample) = check::find_key_sample(repository).map_err(to_cmd)? else {
        ctx.log.info("Starting archive consistency check...");
        ctx.log
            .error("Repository contains no apparent data at all, cannot continue check/repair.");
        return Ok(false);
    };
    let key = load_key(repository, &sample, &mut InteractivePassphrase, &std_env)?;
    let repo_id = rborg_repository::Repository::id(&*repository);
    let security = SecurityDir::open(&std_env, &repo_id)?;
    let filter = &args.filter;
    let select = |manifest: &Manifest| -> Vec<String> {
        let names = match filter.select_names(manifest) {
            Ok(n) => n,
            Err(e) => {
                ctx.log.error(&e.message);
                return Vec::new();
            }
        };
        let glob = match (&filter.prefix, &filter.glob_archives) {
            (Some(p), _) => Some(format!("{p}*")),
            (None, g) => g.clone(),
        };
        if let Some(glob) = glob.filter(|_| names.is_empty()) {
            ctx.log.warning(&format!(
                "--glob-archives {glob} does not match any archives"
            ));
        }
        if filter.first > 0 && names.len() < filter.first {
            ctx.log.warning(&format!(
                "--first {} archives: only found {} archives",
                filter.first,
                names.len()
            ));
        }
        if filter.last > 0 && names.len() < filter.last {
            ctx.log.warning(&format!(
                "--last {} archives: only found {} archives",
                filter.last,
                names.len()
            ));
        }
        names
    };
    let selection = match archive {
        Some(name) => Selection::Archive(name),
        None => Selection::Filter {
            all: !filter.any(),
            select: &select,
        },
    };
    let options = CheckOptions {
        repair: args.repair,
        verify_data: args.verify_data,
        selection,
        nonce_file: security.nonce_file(),
        location: repository.path().display().to_string(),
    };
    let mut log = |severity: Severity, line: &str| match severity {
        Severity::Debug => ctx.log.debug(line),
        Severity::Info => ctx.log.info(line),
        Severity::Warning => ctx.log.warning(line),
        Severity::Error => ctx.log.error(line),
    };
    check::check_archives(repository, &key.key, &options, &mut log).map_err(to_cmd)
}

fn to_cmd(e: check::CheckError) -> CmdError {
    CmdError::new(e.to_string())
}
