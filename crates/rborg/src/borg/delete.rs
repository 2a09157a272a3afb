//! `borg delete`: delete archives, or a whole repository (borg 1.2.4 `archiver.py`
//! `do_delete` / `_delete_archives` / `_delete_repository`; the reference counting is in
//! `rborg_archive::delete` and `rborg_archive::refcount`).

use clap::Args;
use rborg_archive::delete::{delete_archive, DeleteStats};
use rborg_archive::format;
use rborg_archive::info::repository_stats;
use rborg_archive::manifest::{parse_timestamp, Operation};
use rborg_archive::refcount::RefCounts;
use rborg_archive::security::SecurityDir;
use rborg_archive::{ArchiveEntry, Manifest};
use rborg_crypto::paths::std_env;
use rborg_repository::Repository;

use super::archives::ArchiveFilterArgs;
use super::common::format_file_size;
use super::common::{yes_with, CmdError, CmdResult, Context, EXIT_ERROR, EXIT_WARNING};
use super::info::{cache_str, STATS_HEADER};
use super::open::{location, open_repository, open_with_manifest, LockMode};

const DASHES: &str =
    "------------------------------------------------------------------------------";

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// do not change repository
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// output verbose list of archives
    #[arg(long = "list")]
    output_list: bool,
    /// print statistics for the deleted archive
    #[arg(short = 's', long)]
    stats: bool,
    /// delete only the local cache for the given repository
    #[arg(long = "cache-only")]
    cache_only: bool,
    /// force deletion of corrupted archives, use ``--force --force`` in case ``--force`` does
    /// not work.
    #[arg(long = "force", action = clap::ArgAction::Count)]
    forced: u8,
    /// keep the local security info when deleting a repository
    #[arg(long = "keep-security-info")]
    keep_security_info: bool,
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
    #[command(flatten)]
    filter: ArchiveFilterArgs,
    /// repository or archive to delete
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    location: Option<String>,
    /// archives to delete
    #[arg(value_name = "ARCHIVE")]
    archives: Vec<String>,
}

/// borg's `format_archive`: name, local time, id.
pub(super) fn format_archive(name: &str, entry: &ArchiveEntry) -> String {
    let time = parse_timestamp(&entry.time)
        .and_then(|t| format::utc_to_local(&t))
        .map(|t| t.format("%a, %Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| entry.time.clone());
    format!("{name:<36} {time} [{}]", hex::encode(entry.id))
}

pub fn run(ctx: &mut Context, args: DeleteArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    let filters = args.filter.any();
    let explicit = loc.archive.is_some() || !args.archives.is_empty();
    if filters && explicit {
        ctx.log
            .error("Mixing archive filters and explicitly named archives is not supported.");
        return Ok(EXIT_ERROR);
    }
    if filters || explicit {
        delete_archives(ctx, &args, &loc)
    } else {
        delete_repository(ctx, &args, &loc)
    }
}

fn delete_archives(
    ctx: &mut Context,
    args: &DeleteArgs,
    loc: &rborg_repository::location::Location,
) -> CmdResult {
    let mut opened = open_with_manifest(ctx, loc, LockMode::Exclusive, &[Operation::Delete])?;
    let location_text = opened.repository.path().display().to_string();
    let key = opened.key.key;
    let repo = &mut opened.repository;
    let mut manifest = Manifest::load(repo, &key, &[Operation::Delete], &location_text)?;
    let names: Vec<String> = if explicit_names(args, loc).is_empty() {
        args.filter.select_names(&manifest)?
    } else {
        explicit_names(args, loc)
    };
    if names.is_empty() {
        return Ok(0);
    }
    let security = SecurityDir::open(&std_env, &repo.id())?;
    let total = names.len();
    let mut code = 0;
    if args.forced >= 2 {
        let mut deleted = false;
        for (i, name) in names.iter().enumerate() {
            match manifest.archives.remove(name) {
                None => {
                    code = EXIT_WARNING;
                    ctx.log
                        .warning(&format!("Archive {name} not found ({}/{total}).", i + 1));
                }
                Some(entry) => {
                    deleted = true;
                    if args.output_list {
                        let verb = if args.dry_run {
                            "Would delete:"
                        } else {
                            "Deleted archive:"
                        };
                        eprintln!(
                            "{verb} {} ({}/{total})",
                            format_archive(name, &entry),
                            i + 1
                        );
                    }
                }
            }
        }
        if args.dry_run {
            ctx.log.info("Finished dry-run.");
        } else if deleted {
            manifest.write(repo, &key, security.nonce_file())?;
            repo.commit(false, 0.1)?;
            security.remember_manifest(&location_text, key.key_type(), &manifest)?;
            ctx.log
                .warning("Done. Run \"borg check --repair\" to clean up the mess.");
        } else {
            ctx.log.warning("Aborted.");
        }
        return Ok(code);
    }
    let mut refs = if args.dry_run && !args.stats {
        RefCounts::default()
    } else {
        RefCounts::build(repo, &key, &manifest).map_err(|e| CmdError::new(e.to_string()))?
    };
    let parts = ctx.common.consider_part_files;
    let mut deleted = DeleteStats::default();
    let mut uncommitted = false;
    for (i, name) in names.iter().enumerate() {
        let Some(entry) = manifest.archives.get(name).cloned() else {
            ctx.log
                .warning(&format!("Archive {name} not found ({}/{total}).", i + 1));
            continue;
        };
        if args.output_list {
            let verb = if args.dry_run {
                "Would delete archive:"
            } else {
                "Deleting archive:"
            };
            eprintln!(
                "{verb} {} ({}/{total})",
                format_archive(name, &entry),
                i + 1
            );
        }
        if !args.dry_run {
            let s = delete_archive(
                repo,
                &key,
                &mut manifest,
                name,
                &mut refs,
                args.forced > 0,
                parts,
            )
            .map_err(|e| CmdError::new(e.to_string()))?;
            if s.corrupted {
                ctx.log
                    .warning("forced deletion succeeded, but the deleted archive was corrupted.");
            }
            deleted.original_size += s.original_size;
            deleted.compressed_size += s.compressed_size;
            deleted.deduplicated_size += s.deduplicated_size;
            uncommitted = true;
        }
    }
    if uncommitted {
        manifest.write(repo, &key, security.nonce_file())?;
        repo.commit(false, 0.1)?;
        security.remember_manifest(&location_text, key.key_type(), &manifest)?;
    }
    if args.stats {
        let all = repository_stats(repo, &key, &manifest, &refs, parts)
            .map_err(|e| CmdError::new(e.to_string()))?;
        // borg logs these on `borg.output.stats`, which `--stats` enables
        eprintln!("{}", deleted_stats_text(&deleted, &all, ctx.common.iec));
    }
    Ok(code)
}

fn explicit_names(args: &DeleteArgs, loc: &rborg_repository::location::Location) -> Vec<String> {
    loc.archive
        .iter()
        .cloned()
        .chain(args.archives.iter().cloned())
        .collect()
}

fn delete_repository(
    ctx: &mut Context,
    args: &DeleteArgs,
    loc: &rborg_repository::location::Location,
) -> CmdResult {
    let mut repo = open_repository(ctx, loc, LockMode::Exclusive)?;
    let id = repo.id();
    if !args.cache_only {
        if args.forced == 0 {
            let mut msg = Vec::new();
            let manifest = rborg_archive::manifest::read_manifest_object(&mut repo)
                .ok()
                .and_then(|cdata| {
                    let key = rborg_archive::keys::load_key(
                        &mut repo,
                        &cdata,
                        &mut super::common::InteractivePassphrase,
                        &std_env,
                    )
                    .ok()?;
                    Manifest::decode(&key.key, &cdata, &loc.canonical_path()).ok()
                });
            match &manifest {
                Some(m) => msg.push(format!(
                    "You requested to completely DELETE the following repository *including* {} archives it contains:",
                    m.archives.len()
                )),
                None => msg.push(
                    "You requested to completely DELETE the following repository *including* all archives it may contain:"
                        .to_string(),
                ),
            }
            msg.push(DASHES.to_string());
            msg.push(format!("Repository ID: {}", hex::encode(id)));
            msg.push(format!("Location: {}", loc.canonical_path()));
            if args.output_list {
                msg.push(String::new());
                msg.push("Archives:".into());
                match &manifest {
                    Some(m) if m.archives.is_empty() => {
                        msg.push("This repository seems to not have any archives.".into())
                    }
                    Some(m) => {
                        let mut list: Vec<_> = m.archives.iter().collect();
                        list.sort_by_key(|(_, e)| parse_timestamp(&e.time));
                        msg.extend(list.into_iter().map(|(n, e)| format_archive(n, e)));
                    }
                    None => msg.push(
                        "This repository seems to have no manifest, so we can't tell anything about its contents."
                            .into(),
                    ),
                }
            }
            msg.push(DASHES.to_string());
            msg.push("Type 'YES' if you understand this and want to continue: ".into());
            if !yes_with(
                &msg.join("\n"),
                "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING",
                &["YES"],
            ) {
                eprintln!("Aborting.");
                return Ok(EXIT_ERROR);
            }
        }
        if !args.dry_run {
            repo.destroy()?;
            ctx.log.info("Repository deleted.");
            if !args.keep_security_info {
                let dir = SecurityDir::open(&std_env, &id)?;
                let _ = std::fs::remove_dir_all(dir.path());
            }
        } else {
            ctx.log.info("Would delete repository.");
            ctx.log.info(&format!(
                "Would {} security info.",
                if args.keep_security_info {
                    "keep"
                } else {
                    "delete"
                }
            ));
        }
    }
    if !args.dry_run {
        let _ = std::fs::remove_dir_all(rborg_archive::cache::repository_cache_dir(&std_env, &id));
        ctx.log.info("Cache deleted.");
    } else {
        ctx.log.info("Would delete cache.");
    }
    Ok(0)
}

/// The `--stats` block of `delete` and `prune` (borg's `print_info` of the deleted
/// `Statistics` and the cache summary): what was removed, as negative sizes, and what remains.
pub(super) fn deleted_stats_text(
    deleted: &DeleteStats,
    all: &rborg_archive::info::RepositoryStats,
    iec: bool,
) -> String {
    let neg = |v: u64| {
        if v == 0 {
            format_file_size(0, iec)
        } else {
            format!("-{}", format_file_size(v, iec))
        }
    };
    format!(
        "{DASHES}\n{STATS_HEADER}\n{:<15} {:>20} {:>20} {:>20}\n{}\n{DASHES}",
        "Deleted data:",
        neg(deleted.original_size),
        neg(deleted.compressed_size),
        neg(deleted.deduplicated_size),
        cache_str(all, iec)
    )
}
