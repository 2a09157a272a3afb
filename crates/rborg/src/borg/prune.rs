//! `borg prune`: delete the archives no retention rule keeps (borg 1.2.4 `archiver.py`
//! `do_prune`). The policy is `rborg_archive::prune`; the deletion is
//! `rborg_archive::delete::delete_archive`, as for `borg delete`.

use std::time::{Duration, Instant};

use clap::Args;
use rborg_archive::delete::{delete_archive, DeleteStats};
use rborg_archive::info::repository_stats;
use rborg_archive::manifest::Operation;
use rborg_archive::prune::{self, Decision, PeriodRule, Policy};
use rborg_archive::refcount::RefCounts;
use rborg_archive::security::SecurityDir;
use rborg_archive::Manifest;
use rborg_crypto::paths::std_env;
use rborg_repository::Repository;

use super::common::{CmdError, CmdResult, Context, EXIT_ERROR};
use super::delete::{deleted_stats_text, format_archive};
use super::open::{location, open_with_manifest, LockMode};

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// do not change repository
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// force pruning of corrupted archives, use ``--force --force`` in case ``--force`` does
    /// not work.
    #[arg(long = "force")]
    forced: bool,
    /// print statistics for the deleted archive
    #[arg(short = 's', long)]
    stats: bool,
    /// output verbose list of archives it keeps/prunes
    #[arg(long = "list")]
    output_list: bool,
    /// keep all archives within this time interval
    #[arg(long = "keep-within", value_name = "INTERVAL", value_parser = prune::parse_interval)]
    within: Option<u64>,
    /// number of secondly archives to keep
    #[arg(
        long = "keep-last",
        visible_alias = "keep-secondly",
        value_name = "SECONDLY",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    secondly: i64,
    /// number of minutely archives to keep
    #[arg(
        long = "keep-minutely",
        value_name = "MINUTELY",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    minutely: i64,
    /// number of hourly archives to keep
    #[arg(
        short = 'H',
        long = "keep-hourly",
        value_name = "HOURLY",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    hourly: i64,
    /// number of daily archives to keep
    #[arg(
        short = 'd',
        long = "keep-daily",
        value_name = "DAILY",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    daily: i64,
    /// number of weekly archives to keep
    #[arg(
        short = 'w',
        long = "keep-weekly",
        value_name = "WEEKLY",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    weekly: i64,
    /// number of monthly archives to keep
    #[arg(
        short = 'm',
        long = "keep-monthly",
        value_name = "MONTHLY",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    monthly: i64,
    /// number of yearly archives to keep
    #[arg(
        short = 'y',
        long = "keep-yearly",
        value_name = "YEARLY",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    yearly: i64,
    /// only consider archive names starting with this prefix. (deprecated)
    #[arg(
        short = 'P',
        long,
        value_name = "PREFIX",
        conflicts_with = "glob_archives"
    )]
    prefix: Option<String>,
    /// only consider archive names matching the glob.
    #[arg(short = 'a', long = "glob-archives", value_name = "GLOB")]
    glob_archives: Option<String>,
    /// work slower, but using less space
    #[arg(long = "save-space")]
    save_space: bool,
    /// write checkpoint every SECONDS seconds (Default: 1800)
    #[arg(
        short = 'c',
        long = "checkpoint-interval",
        value_name = "SECONDS",
        default_value_t = 1800
    )]
    checkpoint_interval: u64,
    /// repository to prune
    #[arg(value_name = "REPOSITORY")]
    location: Option<String>,
}

impl PruneArgs {
    fn policy(&self) -> Policy {
        let mut policy = Policy {
            within_hours: self.within,
            ..Policy::default()
        };
        for (rule, n) in [
            (PeriodRule::Secondly, self.secondly),
            (PeriodRule::Minutely, self.minutely),
            (PeriodRule::Hourly, self.hourly),
            (PeriodRule::Daily, self.daily),
            (PeriodRule::Weekly, self.weekly),
            (PeriodRule::Monthly, self.monthly),
            (PeriodRule::Yearly, self.yearly),
        ] {
            policy.set(rule, n);
        }
        policy
    }
}

pub fn run(ctx: &mut Context, args: PruneArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    if loc.archive.is_some() {
        return Err(CmdError::new(
            "\"prune\" requires a repository location, not an archive",
        ));
    }
    let mut opened = open_with_manifest(ctx, &loc, LockMode::Exclusive, &[Operation::Delete])?;
    // borg opens the repository (and detects e.g. an Attic repository) before it looks at the rules
    let policy = args.policy();
    if !policy.has_rule() {
        ctx.log.error(
            "At least one of the \"keep-within\", \"keep-last\", \"keep-secondly\", \
             \"keep-minutely\", \"keep-hourly\", \"keep-daily\", \"keep-weekly\", \
             \"keep-monthly\" or \"keep-yearly\" settings must be specified.",
        );
        return Ok(EXIT_ERROR);
    }
    let location_text = opened.repository.path().display().to_string();
    let key = opened.key.key;
    let repo = &mut opened.repository;
    let mut manifest: Manifest = opened.manifest;

    let glob = match (&args.prefix, &args.glob_archives) {
        (Some(p), _) => Some(format!("{p}*")),
        (None, g) => g.clone(),
    };
    let candidates =
        prune::select(&manifest, glob.as_deref()).map_err(|e| CmdError::new(e.to_string()))?;
    let decisions = prune::plan_now(&candidates, &policy);
    let to_delete = decisions.iter().filter(|(_, d)| d.is_prune()).count();

    let security = SecurityDir::open(&std_env, &repo.id())?;
    let parts = ctx.common.consider_part_files;
    let mut refs = if args.dry_run && !args.stats {
        RefCounts::default()
    } else {
        RefCounts::build(repo, &key, &manifest).map_err(|e| CmdError::new(e.to_string()))?
    };
    let mut deleted = DeleteStats::default();
    let mut archives_deleted = 0usize;
    let mut uncommitted = false;
    let mut last_checkpoint = Instant::now();
    let interval = Duration::from_secs(args.checkpoint_interval);

    for (archive, decision) in &decisions {
        let entry = manifest.archives.get(&archive.name).cloned();
        let message = match decision {
            Decision::Prune if args.dry_run => "Would prune:".to_string(),
            Decision::Prune => {
                archives_deleted += 1;
                let s = delete_archive(
                    repo,
                    &key,
                    &mut manifest,
                    &archive.name,
                    &mut refs,
                    args.forced,
                    parts,
                )
                .map_err(|e| CmdError::new(e.to_string()))?;
                deleted.original_size += s.original_size;
                deleted.compressed_size += s.compressed_size;
                deleted.deduplicated_size += s.deduplicated_size;
                deleted.deleted_objects += s.deleted_objects;
                uncommitted = true;
                // borg's maybe_checkpoint: commit what is done every --checkpoint-interval
                if args.checkpoint_interval > 0 && last_checkpoint.elapsed() > interval {
                    manifest.write(repo, &key, security.nonce_file())?;
                    repo.commit(false, rborg_repository::DEFAULT_COMPACT_THRESHOLD)?;
                    uncommitted = false;
                    last_checkpoint = Instant::now();
                }
                format!("Pruning archive ({archives_deleted}/{to_delete}):")
            }
            Decision::KeepCheckpoint => "Keeping checkpoint archive:".to_string(),
            Decision::Keep { rule, number } => format!("Keeping archive (rule: {rule} #{number}):"),
        };
        if let (true, Some(entry)) = (args.output_list, entry) {
            // borg logs these on `borg.output.list`, which `--list` enables
            eprintln!("{message:<40} {}", format_archive(&archive.name, &entry));
        }
    }
    if uncommitted {
        manifest.write(repo, &key, security.nonce_file())?;
        repo.commit(false, rborg_repository::DEFAULT_COMPACT_THRESHOLD)?;
    }
    if !args.dry_run && archives_deleted > 0 {
        security.remember_manifest(&location_text, key.key_type(), &manifest)?;
    }
    if args.stats {
        let all = repository_stats(repo, &key, &manifest, &refs, parts)
            .map_err(|e| CmdError::new(e.to_string()))?;
        // borg logs these on `borg.output.stats`, which `--stats` enables
        eprintln!("{}", deleted_stats_text(&deleted, &all, ctx.common.iec));
    }
    Ok(0)
}
