//! `borg diff`: what changed between two archives of one repository (borg 1.2.4 `archiver.py`
//! `do_diff`; the comparison is `rborg_archive::diff`).

use std::io::Write;

use clap::Args;
use rborg_archive::archive::ArchiveMeta;
use rborg_archive::diff::{compare_archives, same_chunker_params, sort_results, DiffOptions};
use rborg_archive::manifest::Operation;
use rborg_archive::patterns::PatternMatcher;

use super::common::{CmdError, CmdResult, Context, ExclusionArgs, EXIT_SUCCESS, EXIT_WARNING};
use super::open::{location, open_with_manifest, LockMode};

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// only consider numeric user and group identifiers
    #[arg(long = "numeric-ids", alias = "numeric-owner")]
    numeric_ids: bool,
    /// Override check of chunker parameters.
    #[arg(long = "same-chunker-params")]
    same_chunker_params: bool,
    /// Sort the output lines by file path.
    #[arg(long)]
    sort: bool,
    /// Only compare differences in content (exclude metadata differences)
    #[arg(long = "content-only")]
    content_only: bool,
    /// Format output as JSON Lines.
    #[arg(long = "json-lines")]
    json_lines: bool,
    /// repository location and ARCHIVE1 name
    #[arg(value_name = "REPO::ARCHIVE1")]
    location: String,
    /// ARCHIVE2 name (no repository location allowed)
    #[arg(value_name = "ARCHIVE2")]
    archive2: String,
    /// paths of items inside the archives to compare; patterns are supported
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
    #[command(flatten)]
    exclusion: ExclusionArgs,
}

pub fn run(ctx: &mut Context, args: DiffArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let Some(name1) = loc.archive.clone() else {
        return Err(CmdError::new("No archive specified."));
    };
    // borg's archivename_validator: placeholders replaced, no "/" or "::", not empty
    let archive2 = super::create::replace_placeholders(&args.archive2)
        .map_err(|e| CmdError::new(format!("argument ARCHIVE2: {e}")))?;
    if archive2.contains('/') || archive2.contains("::") || archive2.is_empty() {
        return Err(CmdError::new(format!(
            "argument ARCHIVE2: Invalid archive name: \"{archive2}\""
        )));
    }
    let options = args.exclusion.load()?;
    let matcher =
        PatternMatcher::build(&options, &args.paths).map_err(|e| CmdError::new(e.to_string()))?;
    let mut opened = open_with_manifest(ctx, &loc, LockMode::Shared, &[Operation::Read])?;
    let key = opened.key.key.clone();
    let load = |opened: &mut super::open::Opened, name: &str| {
        ArchiveMeta::load_by_name(&mut opened.repository, &key, &opened.manifest, name, false)
            .map_err(|e| CmdError::new(e.to_string()))
    };
    let archive1 = load(&mut opened, &name1)?;
    let archive2 = load(&mut opened, &archive2)?;
    let mut warned = false;
    let can_compare_chunk_ids = if args.same_chunker_params {
        true
    } else {
        match same_chunker_params(&archive1, &archive2) {
            Some(true) => true,
            Some(false) => {
                ctx.log
                    .warning("--chunker-params are different between archives, diff will be slow.");
                warned = true;
                false
            }
            None => {
                ctx.log.warning(
                    "--chunker-params might be different between archives, diff will be slow.\n\
                     If you know for certain that they are the same, pass --same-chunker-params \
                     to override this check.",
                );
                warned = true;
                false
            }
        }
    };
    let opts = DiffOptions {
        can_compare_chunk_ids,
        content_only: args.content_only,
        // borg 1.2.4 parses --numeric-ids but compare_archives_iter never hands it to ItemDiff
        numeric_ids: false,
        consider_part_files: ctx.common.consider_part_files,
    };
    let mut out = std::io::stdout().lock();
    let json = args.json_lines;
    let mut print = |path: &[u8], diff: &rborg_archive::diff::ItemDiff| -> std::io::Result<()> {
        if json {
            writeln!(out, "{}", diff.json_line(path))
        } else {
            writeln!(out, "{}", diff.text(path))
        }
    };
    let mut results = Vec::new();
    let mut io_result = Ok(());
    compare_archives(
        &mut opened.repository,
        &key,
        &archive1,
        &archive2,
        &matcher,
        &opts,
        &mut |path, diff| {
            if diff.equal {
                return;
            }
            if args.sort {
                results.push((path, diff));
            } else if io_result.is_ok() {
                io_result = print(&path, &diff);
            }
        },
    )
    .map_err(|e| CmdError::new(e.to_string()))?;
    sort_results(&mut results);
    for (path, diff) in &results {
        if io_result.is_ok() {
            io_result = print(path, diff);
        }
    }
    io_result?;
    for pattern in matcher.unmatched_includes() {
        ctx.log
            .warning(&format!("Include pattern '{pattern}' never matched."));
        warned = true;
    }
    Ok(if warned { EXIT_WARNING } else { EXIT_SUCCESS })
}
