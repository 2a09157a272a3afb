//! `borg recreate`: rewrite archives with fewer items, other compression or other chunker
//! parameters (borg 1.2.4 `archiver.py` `do_recreate` and its options; the work is
//! `rborg_archive::recreate`).

use clap::Args;
use rborg_archive::create::chrono::{Local, NaiveDateTime, TimeZone};
use rborg_archive::manifest::Operation;
use rborg_archive::patterns::PatternMatcher;
use rborg_archive::recreate::{
    is_temporary_archive, Outcome, Recompress, RecreateOptions, Recreater,
};
use rborg_archive::security::SecurityDir;
use rborg_archive::Manifest;
use rborg_chunker::ChunkerParams;
use rborg_compress::CompressionSpec;
use rborg_crypto::paths::std_env;
use rborg_repository::Repository;

use super::common::{CmdError, CmdResult, Context, ExclusionArgs, FileStatusPrinter, EXIT_SUCCESS};
use super::create::{
    host_name, os_user_name, parse_chunker_params, parse_compression, parse_timestamp_arg,
};
use super::open::{location, open_with_manifest, LockMode};

#[derive(Debug, Args)]
pub struct RecreateArgs {
    /// output verbose list of items (files, dirs, ...)
    #[arg(long = "list")]
    output_list: bool,
    /// only display items with the given status characters (listed in borg create --help)
    #[arg(long = "filter", value_name = "STATUSCHARS")]
    output_filter: Option<String>,
    /// do not change anything
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// print statistics at end
    #[arg(short = 's', long)]
    stats: bool,
    #[command(flatten)]
    exclusion: ExclusionArgs,
    /// exclude directories that contain a CACHEDIR.TAG file
    #[arg(long = "exclude-caches")]
    exclude_caches: bool,
    /// exclude directories that are tagged by containing a filesystem object with the given NAME
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    exclude_if_present: Vec<String>,
    /// if tag objects are specified with --exclude-if-present, don't omit the tag objects themselves
    #[arg(long = "keep-exclude-tags")]
    keep_exclude_tags: bool,
    /// create a new archive with the name ARCHIVE, do not replace existing archive
    #[arg(long, value_name = "TARGET")]
    target: Option<String>,
    /// write checkpoint every SECONDS seconds (Default: 1800)
    #[arg(
        short = 'c',
        long = "checkpoint-interval",
        value_name = "SECONDS",
        default_value_t = 1800
    )]
    checkpoint_interval: u64,
    /// add a comment text to the archive
    #[arg(long, value_name = "COMMENT")]
    comment: Option<String>,
    /// manually specify the archive creation date/time (UTC, yyyy-mm-ddThh:mm:ss format)
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_timestamp_arg)]
    timestamp: Option<NaiveDateTime>,
    /// select compression algorithm
    #[arg(short = 'C', long = "compression", value_name = "COMPRESSION", default_value = "lz4", value_parser = parse_compression)]
    compression: CompressionSpec,
    /// recompress data chunks according to MODE and --compression
    #[arg(
        long,
        value_name = "MODE",
        num_args = 0..=1,
        default_value = "never",
        default_missing_value = "if-different",
        value_parser = ["if-different", "always", "never"]
    )]
    recompress: String,
    /// rechunk using given chunker parameters
    #[arg(long = "chunker-params", value_name = "PARAMS", value_parser = parse_chunker_params)]
    chunker_params: Option<ChunkerParams>,
    /// repository or archive to recreate
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    location: Option<String>,
    /// paths to recreate; patterns are supported
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
}

pub fn run(ctx: &mut Context, args: RecreateArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    let exclusion = args.exclusion.load()?;
    let mut paths = exclusion.roots.clone();
    paths.extend(args.paths.iter().cloned());
    let mut patterns = PatternMatcher::new();
    patterns.add_inclexcl(exclusion.rules.iter().cloned());
    patterns
        .add_includepaths(&paths)
        .map_err(|e| CmdError::new(e.to_string()))?;
    if loc.archive.is_none() && args.target.is_some() {
        return Err(CmdError::new("--target: Need to specify single archive"));
    }
    if let Some(name) = &loc.archive {
        if is_temporary_archive(name) {
            return Err(CmdError::new(format!(
                "Refusing to work on temporary archive of prior recreate: {name}"
            )));
        }
    }
    let recompress = match args.recompress.as_str() {
        "always" => Recompress::Always,
        "if-different" => Recompress::IfDifferent,
        _ => Recompress::Never,
    };
    let mut opened = open_with_manifest(ctx, &loc, LockMode::Exclusive, &[Operation::Check])?;
    let location_text = opened.repository.path().display().to_string();
    let key = opened.key.key.clone();
    let mut manifest = Manifest::load(
        &mut opened.repository,
        &key,
        &[Operation::Check],
        &location_text,
    )?;
    let security = SecurityDir::open(&std_env, &opened.repository.id())?;
    if args.chunker_params.is_some() {
        ctx.log
            .debug(&format!("Rechunking archives to {:?}", args.chunker_params));
    }
    let opts = RecreateOptions {
        patterns,
        exclude_caches: args.exclude_caches,
        exclude_if_present: args.exclude_if_present.clone(),
        keep_exclude_tags: args.keep_exclude_tags,
        chunker_params: args.chunker_params,
        compression: args.compression.clone(),
        recompress,
        dry_run: args.dry_run,
        timestamp: args.timestamp,
        cmdline: std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        hostname: host_name().split('.').next().unwrap_or("").to_string(),
        username: os_user_name(),
    };
    let mut reporter = FileStatusPrinter {
        ctx,
        list: args.output_list,
        filter: args.output_filter.clone(),
    };
    let err = |e: rborg_archive::recreate::RecreateError| CmdError::new(e.to_string());
    let mut recreater =
        Recreater::new(&mut opened.repository, &key, security.nonce_file(), opts).map_err(err)?;
    let mut results = Vec::new();
    let mut nothing_to_do = false;
    if let Some(name) = &loc.archive {
        let outcome = recreater
            .recreate(
                &mut manifest,
                name,
                args.comment.as_deref(),
                args.target.as_deref(),
                &mut reporter,
            )
            .map_err(err)?;
        nothing_to_do = matches!(outcome, Outcome::NothingToDo);
        results.push(outcome);
    } else {
        let mut names: Vec<(String, String)> = manifest
            .archives
            .iter()
            .map(|(n, e)| (e.time.clone(), n.clone()))
            .collect();
        names.sort();
        for (_, name) in names {
            if is_temporary_archive(&name) {
                continue;
            }
            println!("Processing {name}");
            let outcome = recreater
                .recreate(
                    &mut manifest,
                    &name,
                    args.comment.as_deref(),
                    None,
                    &mut reporter,
                )
                .map_err(err)?;
            if matches!(outcome, Outcome::NothingToDo) {
                reporter.ctx.log.info(&format!(
                    "Skipped archive {name}: Nothing to do. Archive was not processed."
                ));
            }
            results.push(outcome);
        }
    }
    recreater.commit(&mut manifest).map_err(err)?;
    if !args.dry_run {
        security.remember_manifest(&location_text, key.key_type(), &manifest)?;
        // borg's cache.commit(): bring the chunks cache up to date with the new manifest
        super::info::open_cache(
            reporter.ctx,
            &mut opened.repository,
            &key,
            &manifest,
            &loc.canonical_path(),
            "ctime,size,inode",
        )?;
    }
    if args.stats {
        for outcome in &results {
            if let Outcome::Recreated(c) = outcome {
                let ft = |t: NaiveDateTime| {
                    Local
                        .from_utc_datetime(&t)
                        .format("%a, %Y-%m-%d %H:%M:%S")
                        .to_string()
                };
                let dashes = "-".repeat(78);
                for line in [
                    dashes.clone(),
                    format!("Repository: {location_text}"),
                    format!("Archive name: {}", c.name),
                    format!("Archive fingerprint: {}", hex::encode(c.id)),
                    format!("Time (start): {}", ft(c.start)),
                    format!("Time (end):   {}", ft(c.end)),
                    format!("Number of files: {}", c.stats.nfiles),
                    dashes,
                ] {
                    reporter.ctx.log.info(&line);
                }
            }
        }
    }
    if nothing_to_do {
        return Err(CmdError::new(
            "Nothing to do. Archive was not processed.\n\
             Specify at least one pattern, PATH, --comment, re-compression or re-chunking option.",
        ));
    }
    let _ = args.checkpoint_interval;
    Ok(EXIT_SUCCESS)
}
