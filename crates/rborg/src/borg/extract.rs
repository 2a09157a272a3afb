//! `borg extract`: restore an archive into the current directory (borg 1.2.4 `archiver.py`
//! `do_extract`; the work is done by `rborg_archive::extract`).

use std::io::Write;

use clap::Args;
use rborg_archive::archive::ArchiveMeta;
use rborg_archive::extract::{extract_archive, ExtractError, ExtractEvent, ExtractOptions};
use rborg_archive::manifest::Operation;
use rborg_archive::patterns::{Pattern, PatternMatcher};
use rborg_archive::Manifest;

use super::common::{CmdError, CmdResult, Context, EXIT_SUCCESS, EXIT_WARNING};
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
    /// exclude paths matching PATTERN
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    exclude: Vec<String>,
    /// read exclude patterns from EXCLUDEFILE, one per line
    #[arg(long = "exclude-from", value_name = "EXCLUDEFILE")]
    exclude_from: Vec<String>,
    /// include/exclude paths matching PATTERN
    #[arg(long = "pattern", value_name = "PATTERN", allow_hyphen_values = true)]
    pattern: Vec<String>,
    /// read include/exclude patterns from PATTERNFILE, one per line
    #[arg(long = "patterns-from", value_name = "PATTERNFILE")]
    patterns_from: Vec<String>,
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

fn pattern_err(e: rborg_archive::patterns::PatternError) -> CmdError {
    CmdError::new(e.to_string())
}

/// borg's `build_matcher`: exclude patterns (default style `fm:`) first, then the `PATH`
/// arguments as include patterns (default style `pp:`).
fn build_matcher(args: &ExtractArgs) -> Result<PatternMatcher, CmdError> {
    let mut matcher = PatternMatcher::new();
    for e in &args.exclude {
        matcher.add_exclude(Pattern::parse(e, "fm").map_err(pattern_err)?);
    }
    for file in &args.exclude_from {
        let text =
            std::fs::read_to_string(file).map_err(|e| CmdError::new(format!("{file}: {e}")))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            matcher.add_exclude(Pattern::parse(line, "fm").map_err(pattern_err)?);
        }
    }
    // borg keeps -e/--pattern in command line order; rborg applies the -e patterns first,
    // then --pattern, then --patterns-from files.
    let mut style = "sh".to_string();
    for line in &args.pattern {
        matcher.add_command(line, &mut style).map_err(pattern_err)?;
    }
    for file in &args.patterns_from {
        let text =
            std::fs::read_to_string(file).map_err(|e| CmdError::new(format!("{file}: {e}")))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            matcher.add_command(line, &mut style).map_err(pattern_err)?;
        }
    }
    for p in &args.paths {
        matcher.add_include(Pattern::parse(p, "pp").map_err(pattern_err)?);
    }
    Ok(matcher)
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
    };
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
        },
    );
    match result {
        Ok(_) if warned => Ok(EXIT_WARNING),
        Ok(_) => Ok(EXIT_SUCCESS),
        Err(ExtractError::Read(e)) => Err(CmdError::new(e.to_string())),
        Err(e) => Err(CmdError::new(e.to_string())),
    }
}
