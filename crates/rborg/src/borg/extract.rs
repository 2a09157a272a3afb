//! `borg extract`: restore an archive into the current directory (borg 1.2.4 `archiver.py`
//! `do_extract`; the work is done by `rborg_archive::extract`).

use std::io::Write;

use clap::Args;
use rborg_archive::archive::ArchiveMeta;
use rborg_archive::extract::{extract_archive, ExtractError, ExtractEvent, ExtractOptions};
use rborg_archive::manifest::Operation;
use rborg_archive::patterns::PatternMatcher;
use rborg_archive::Manifest;

use super::common::{
    CmdError, CmdResult, Context, ExclusionArgs, PercentProgress, EXIT_SUCCESS, EXIT_WARNING,
};
use super::open::{location, open_with_manifest, LockMode};

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// output verbose list of items (files, dirs, ...)
    #[arg(long = "list")]
    output_list: bool,
    /// do not actually change any files
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// only obey numeric user and group identifiers
    #[arg(long = "numeric-ids", alias = "numeric-owner")]
    numeric_ids: bool,
    /// do not extract/set flags (e.g. NODUMP, IMMUTABLE)
    #[arg(long = "noflags", alias = "nobsdflags")]
    noflags: bool,
    /// do not extract/set ACLs
    #[arg(long)]
    noacls: bool,
    /// do not extract/set xattrs
    #[arg(long)]
    noxattrs: bool,
    /// write all extracted data to stdout
    #[arg(long)]
    stdout: bool,
    /// create holes in output sparse file from all-zero chunks
    #[arg(long)]
    sparse: bool,
    #[command(flatten)]
    exclusion: ExclusionArgs,
    /// Remove the specified number of leading path elements. Paths with fewer elements will be
    /// silently skipped.
    #[arg(long = "strip-components", value_name = "NUMBER", default_value_t = 0)]
    strip_components: usize,
    /// archive to extract
    #[arg(value_name = "ARCHIVE")]
    location: Option<String>,
    /// paths to extract; patterns are supported
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
}

/// borg's `build_matcher`: the exclusion options in command line order, then the `PATH`
/// arguments as include patterns (default style `pp:`).
fn build_matcher(args: &ExtractArgs) -> Result<PatternMatcher, CmdError> {
    let options = args.exclusion.load()?;
    PatternMatcher::build(&options, &args.paths).map_err(|e| CmdError::new(e.to_string()))
}

pub fn run(ctx: &mut Context, args: ExtractArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    let Some(name) = loc.archive.clone() else {
        return Err(CmdError::new("No archive specified."));
    };
    let mut matcher = build_matcher(&args)?;
    let mut opened = open_with_manifest(ctx, &loc, LockMode::Shared, &[Operation::Read])?;
    let location_text = opened.repository.path().display().to_string();
    let key = opened.key.key;
    let manifest = Manifest::load(
        &mut opened.repository,
        &key,
        &[Operation::Read],
        &location_text,
    )?;
    let meta = ArchiveMeta::load_by_name(&mut opened.repository, &key, &manifest, &name, false)
        .map_err(|e| CmdError::new(e.to_string()))?;
    let opts = ExtractOptions {
        dry_run: args.dry_run,
        stdout: args.stdout,
        sparse: args.sparse,
        numeric_ids: args.numeric_ids,
        strip_components: args.strip_components,
        consider_part_files: ctx.common.consider_part_files,
        no_xattrs: args.noxattrs,
        no_acls: args.noacls,
        progress: ctx.common.progress,
    };
    let mut progress = PercentProgress::new(ctx, "extract", 0.1, |pct, path| {
        format!("{pct:5.1}% Extracting: {path}")
    });
    if opts.progress {
        progress.message(
            "Calculating total archive size for the progress indicator (might take long for large archives)",
        );
    }
    let cwd = std::env::current_dir()?;
    let mut out = std::io::stdout().lock();
    let stdout: Option<&mut dyn Write> = if args.stdout { Some(&mut out) } else { None };
    let log = ctx.log.clone();
    let list = args.output_list;
    let mut warned = false;
    let result = extract_archive(
        &mut opened.repository,
        &key,
        &meta,
        &mut matcher,
        &cwd,
        &opts,
        stdout,
        &mut |event| match event {
            ExtractEvent::Listed(path) => {
                if list {
                    eprintln!("{path}");
                }
            }
            ExtractEvent::Warning(msg) => {
                warned = true;
                log.warning(&msg);
            }
            ExtractEvent::Total(total) => progress.set_total(total),
            ExtractEvent::Data { path, bytes } => progress.show(bytes, &path),
        },
    );
    if opts.progress {
        progress.finish();
    }
    match result {
        Ok(_) if warned => Ok(EXIT_WARNING),
        Ok(_) => Ok(EXIT_SUCCESS),
        Err(ExtractError::Read(e)) => Err(CmdError::new(e.to_string())),
        Err(e) => Err(CmdError::new(e.to_string())),
    }
}
