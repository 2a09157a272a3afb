//! `borg import-tar`: create an archive from a tar file (borg 1.2.4 `archiver.py`
//! `do_import_tar`; the work is `rborg_archive::import_tar`). A compressed tar is read through
//! the filter program borg picks by suffix (`gzip -d`, `bzip2 -d`, `xz -d`, `lz4 -d`,
//! `zstd -d`) or `--tar-filter`, run with the tar on its stdin.

use std::io::Read;
use std::process::{Child, Command, Stdio};

use clap::Args;
use rborg_archive::export_tar::tar_filter_for;
use rborg_archive::import_tar::{import_tar, ImportTarOptions};
use rborg_archive::manifest::Operation;
use rborg_archive::security::SecurityDir;
use rborg_archive::writer::{ArchiveInfo, ChunkStore};
use rborg_archive::Manifest;
use rborg_crypto::paths::std_env;
use rborg_repository::Repository;

use super::common::{CmdError, CmdResult, Context, FileStatusPrinter, EXIT_SUCCESS, EXIT_WARNING};
use super::create::{host_name, os_user_name, replace_placeholders, ArchiveOptions};
use super::open::{location, open_with_manifest, LockMode};

#[derive(Debug, Args)]
pub struct ImportTarArgs {
    /// filter program to pipe data through
    #[arg(long = "tar-filter", value_name = "FILTER", default_value = "auto")]
    tar_filter: String,
    /// print statistics for the created archive
    #[arg(short = 's', long)]
    stats: bool,
    /// output verbose list of items (files, dirs, ...)
    #[arg(long = "list")]
    output_list: bool,
    /// only display items with the given status characters
    #[arg(long = "filter", value_name = "STATUSCHARS")]
    output_filter: Option<String>,
    /// output stats as JSON (implies --stats)
    #[arg(long)]
    json: bool,
    /// ignore zero-filled blocks in the input tarball
    #[arg(long = "ignore-zeros")]
    ignore_zeros: bool,
    #[command(flatten)]
    archive: ArchiveOptions,
    /// name of archive to create (must be also a valid directory name)
    #[arg(value_name = "ARCHIVE")]
    location: String,
    /// input tar file. "-" to read from stdin instead.
    #[arg(value_name = "TARFILE")]
    tarfile: String,
}

/// The tar input: the file (or stdin) directly, or the stdout of a filter process reading it.
fn open_input(
    tarfile: &str,
    filter: Option<&str>,
) -> Result<(Box<dyn Read>, Option<Child>), CmdError> {
    let open_file = || -> Result<std::fs::File, CmdError> {
        std::fs::File::open(tarfile).map_err(|e| {
            let errno = e.raw_os_error().unwrap_or(0);
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            CmdError::new(format!("[Errno {errno}] {text}: '{tarfile}'"))
        })
    };
    let Some(cmd) = filter.filter(|c| !c.is_empty()) else {
        return Ok(if tarfile == "-" {
            (Box::new(std::io::stdin()), None)
        } else {
            (Box::new(std::io::BufReader::new(open_file()?)), None)
        });
    };
    let argv = rborg_crypto::passphrase::shlex_split(cmd)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| CmdError::new(format!("Error: filter {cmd}: process creation failed")))?;
    let stdin = if tarfile == "-" {
        Stdio::inherit()
    } else {
        Stdio::from(open_file()?)
    };
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|_| CmdError::new(format!("Error: filter {cmd}: process creation failed")))?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| CmdError::new(format!("Error: filter {cmd}: process creation failed")))?;
    Ok((Box::new(std::io::BufReader::new(out)), Some(child)))
}

pub fn run(ctx: &mut Context, args: ImportTarArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let Some(raw_name) = loc.archive.clone() else {
        return Err(CmdError::new(
            "No archive specified (use REPOSITORY::ARCHIVE)".to_string(),
        ));
    };
    let name = replace_placeholders(&raw_name).map_err(CmdError::new)?;
    let comment = replace_placeholders(&args.archive.comment).map_err(CmdError::new)?;
    let filter = if args.tar_filter == "auto" {
        tar_filter_for(&args.tarfile).map(|f| format!("{f} -d"))
    } else {
        Some(args.tar_filter.clone())
    };
    if let Some(f) = &filter {
        ctx.log
            .debug(&format!("Automatically determined tar filter: {f}"));
    }
    let mut opened = open_with_manifest(ctx, &loc, LockMode::Exclusive, &[Operation::Write])?;
    let location_text = opened.repository.path().display().to_string();
    let key = opened.key.key.clone();
    let mut manifest = Manifest::load(
        &mut opened.repository,
        &key,
        &[Operation::Write],
        &location_text,
    )?;
    let security = SecurityDir::open(&std_env, &opened.repository.id())?;
    let (input, mut child) = open_input(&args.tarfile, filter.as_deref())?;
    let opts = ImportTarOptions {
        chunker_params: args.archive.chunker_params,
        ignore_zeros: args.ignore_zeros,
        info: ArchiveInfo {
            comment,
            timestamp: args.archive.timestamp,
            cmdline: std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            hostname: host_name().split('.').next().unwrap_or("").to_string(),
            username: os_user_name(),
            ..ArchiveInfo::default()
        },
    };
    let mut reporter = FileStatusPrinter {
        ctx,
        list: args.output_list,
        filter: args.output_filter.clone(),
    };
    let err = |e: &dyn std::fmt::Display| CmdError::new(e.to_string());
    let store = ChunkStore::open(
        &mut opened.repository,
        &key,
        args.archive.compression.clone(),
        security.nonce_file(),
    )
    .map_err(|e| err(&e))?;
    let created = import_tar(&store, &mut manifest, &name, input, &opts, &mut reporter)
        .map_err(|e| err(&e))?;
    if let Some(c) = &mut child {
        let status = c.wait()?;
        if !status.success() {
            return Err(CmdError::new(format!(
                "Error: filter {} failed, rc={}",
                filter.unwrap_or_default(),
                status.code().unwrap_or(-1)
            )));
        }
    }
    store.commit(&mut manifest).map_err(|e| err(&e))?;
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
    if args.stats || args.json {
        let s = created.stats;
        for line in [
            "-".repeat(78),
            format!("Archive name: {}", created.name),
            format!("Archive fingerprint: {}", hex::encode(created.id)),
            format!("Number of files: {}", s.nfiles),
            format!("This archive: {} {} {}", s.osize, s.csize, s.usize),
            "-".repeat(78),
        ] {
            reporter.ctx.log.info(&line);
        }
    }
    let _ = args.archive.checkpoint_interval;
    Ok(if created.warnings > 0 {
        EXIT_WARNING
    } else {
        EXIT_SUCCESS
    })
}
