//! `borg export-tar`: write an archive as a tarball (borg 1.2.4 `archiver.py` `do_export_tar`;
//! the tar stream is made by `rborg_archive::export_tar`).
//!
//! Like borg, compression is left to an external filter program the stream is piped through
//! (`--tar-filter`, by default chosen from the file name: `gzip`, `bzip2`, `xz`, `lz4`,
//! `zstd`), which writes to the output file or to stdout for `-`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::{Command, Stdio};

use clap::Args;
use rborg_archive::archive::ArchiveMeta;
use rborg_archive::export_tar::{
    export_tar, tar_filter_for, ExportEvent, ExportTarError, ExportTarOptions,
};
use rborg_archive::manifest::Operation;
use rborg_archive::patterns::PatternMatcher;

use super::common::{
    CmdError, CmdResult, Context, ExclusionArgs, PercentProgress, EXIT_SUCCESS, EXIT_WARNING,
};
use super::open::{location, open_with_manifest, LockMode};

#[derive(Debug, Args)]
pub struct ExportTarArgs {
    /// filter program to pipe data through
    #[arg(long = "tar-filter", default_value = "auto")]
    tar_filter: String,
    /// output verbose list of items (files, dirs, ...)
    #[arg(long = "list")]
    output_list: bool,
    #[command(flatten)]
    exclusion: ExclusionArgs,
    /// Remove the specified number of leading path elements. Paths with fewer elements will be
    /// silently skipped.
    #[arg(long = "strip-components", value_name = "NUMBER", default_value_t = 0)]
    strip_components: usize,
    /// archive to export
    #[arg(value_name = "ARCHIVE")]
    location: String,
    /// output tar file. "-" to write to stdout instead.
    #[arg(value_name = "FILE")]
    tarfile: String,
    /// paths to extract; patterns are supported
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
}

/// Where the tar stream goes: the file or stdout, directly or through a filter process.
enum Sink {
    Direct(Box<dyn Write>),
    Filter {
        cmd: String,
        child: std::process::Child,
    },
}

fn open_sink(ctx: &Context, tarfile: &str, filter: Option<&str>) -> Result<Sink, CmdError> {
    let output: Option<File> = if tarfile == "-" {
        None
    } else {
        Some(File::create(tarfile).map_err(|e| CmdError::new(format!("{tarfile}: {e}")))?)
    };
    let Some(cmd) = filter.filter(|c| !c.is_empty()) else {
        return Ok(Sink::Direct(match output {
            Some(f) => Box::new(BufWriter::new(f)),
            None => Box::new(BufWriter::new(std::io::stdout())),
        }));
    };
    ctx.log
        .debug(&format!("Automatically determined tar filter: {cmd}"));
    let argv = rborg_crypto::passphrase::shlex_split(cmd)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| CmdError::new(format!("Error: filter {cmd}: process creation failed")))?;
    let stdout = match output {
        Some(f) => Stdio::from(f),
        None => Stdio::inherit(),
    };
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(stdout)
        .spawn()
        .map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                format!("filter-process: executable not found: {}", argv[0])
            } else {
                format!("filter-process: {}: {e}", argv[0])
            };
            ctx.log.error(&what);
            CmdError::new(format!("Error: filter {cmd}: process creation failed"))
        })?;
    Ok(Sink::Filter {
        cmd: cmd.to_string(),
        child,
    })
}

pub fn run(ctx: &mut Context, args: ExportTarArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let Some(name) = loc.archive.clone() else {
        return Err(CmdError::new("No archive specified."));
    };
    let options = args.exclusion.load()?;
    let matcher =
        PatternMatcher::build(&options, &args.paths).map_err(|e| CmdError::new(e.to_string()))?;
    let mut opened = open_with_manifest(ctx, &loc, LockMode::Shared, &[Operation::Read])?;
    let key = opened.key.key.clone();
    let meta =
        ArchiveMeta::load_by_name(&mut opened.repository, &key, &opened.manifest, &name, false)
            .map_err(|e| CmdError::new(e.to_string()))?;
    let filter = if args.tar_filter == "auto" {
        tar_filter_for(&args.tarfile).map(str::to_string)
    } else {
        Some(args.tar_filter.clone())
    };
    let opts = ExportTarOptions {
        strip_components: args.strip_components,
        consider_part_files: ctx.common.consider_part_files,
        progress: ctx.common.progress,
    };
    let mut progress = PercentProgress::new(ctx, "extract", 0.1, |pct, path| {
        format!("{pct:5.1}% Processing: {path}")
    });
    if opts.progress {
        progress.message("Calculating size");
    }
    let mut sink = open_sink(ctx, &args.tarfile, filter.as_deref())?;
    let log = ctx.log.clone();
    let list = args.output_list;
    let mut warned = false;
    let mut on_event = |event: ExportEvent| match event {
        ExportEvent::Listed(path) => {
            if list {
                eprintln!("{path}");
            }
        }
        ExportEvent::Warning(msg) => {
            warned = true;
            log.warning(&msg);
        }
        ExportEvent::Total(total) => progress.set_total(total),
        ExportEvent::Data { path, bytes } => progress.show(bytes, &path),
    };
    let result = match &mut sink {
        Sink::Direct(w) => export_tar(
            &mut opened.repository,
            &key,
            &meta,
            &matcher,
            &opts,
            w.as_mut(),
            &mut on_event,
        ),
        Sink::Filter { child, .. } => match child.stdin.as_mut() {
            Some(stdin) => export_tar(
                &mut opened.repository,
                &key,
                &meta,
                &matcher,
                &opts,
                stdin,
                &mut on_event,
            ),
            None => Err(ExportTarError::Io(std::io::Error::other(
                "filter process has no stdin",
            ))),
        },
    };
    if opts.progress {
        progress.finish();
    }
    match sink {
        Sink::Direct(mut w) => {
            if result.is_ok() {
                w.flush()?;
            }
        }
        Sink::Filter { cmd, mut child } => {
            // closing its stdin lets the filter finish (borg's helpers.Error messages start
            // with "Error: ")
            drop(child.stdin.take());
            if result.is_err() {
                let _ = child.kill();
            }
            let status = child.wait()?;
            if result.is_ok() && !status.success() {
                return Err(CmdError::new(format!(
                    "Error: filter {cmd} failed, rc={}",
                    status.code().unwrap_or(-1)
                )));
            }
        }
    }
    match result {
        Ok(_) if warned => Ok(EXIT_WARNING),
        Ok(_) => Ok(EXIT_SUCCESS),
        Err(e) => Err(CmdError::new(e.to_string())),
    }
}
