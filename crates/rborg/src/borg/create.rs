//! `borg create`: archive files and directories (borg 1.2.4 `archiver.py` `do_create`, its
//! options, `helpers/parseformat.py` placeholders and `FilesCacheMode`, `archive.py`
//! `Statistics` / `Archive.__str__` for `--stats`).
//!
//! rborg keeps no files cache: every file is read and chunked on every run (as borg with
//! `--files-cache=disabled`); unchanged content is still deduplicated against the repository.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use rborg_archive::create::chrono::{self, Local, NaiveDateTime, TimeZone, Utc};
use rborg_archive::create::{create_archive, CreateError, CreateOptions, Reporter, Source};
use rborg_archive::manifest::Operation;
use rborg_archive::security::SecurityDir;
use rborg_archive::walk::Pattern;
use rborg_archive::Manifest;
use rborg_chunker::ChunkerParams;
use rborg_compress::CompressionSpec;
use rborg_crypto::paths::std_env;
use rborg_repository::Repository;

use super::common::{
    format_file_size, format_timedelta, CmdError, CmdResult, Context, EXIT_SUCCESS, EXIT_WARNING,
};
use super::open::{location, open_with_manifest, LockMode};
use super::BORG_VERSION;

/// borg's `MAX_DATA_SIZE`, for "Utilization of max. archive size".
const MAX_DATA_SIZE: f64 = 20_971_479.0;

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// do not create a backup archive
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// print statistics for the created archive
    #[arg(short = 's', long)]
    stats: bool,
    /// output verbose list of items (files, dirs, ...)
    #[arg(long = "list")]
    output_list: bool,
    /// only display items with the given status characters (see description)
    #[arg(long = "filter", value_name = "STATUSCHARS")]
    output_filter: Option<String>,
    /// output stats as JSON. Implies ``--stats``.
    #[arg(long)]
    json: bool,
    /// experimental: do not synchronize the cache. Implies not using the files cache.
    #[arg(long = "no-cache-sync")]
    no_cache_sync: bool,
    /// use NAME in archive for stdin data (default: 'stdin')
    #[arg(long = "stdin-name", value_name = "NAME", default_value = "stdin")]
    stdin_name: String,
    /// set user USER in archive for stdin data (default: 'root')
    #[arg(long = "stdin-user", value_name = "USER", default_value = "root")]
    stdin_user: String,
    /// set group GROUP in archive for stdin data (default: 'root')
    #[arg(long = "stdin-group", value_name = "GROUP", default_value = "root")]
    stdin_group: String,
    /// set mode to M in archive for stdin data (default: 0660)
    #[arg(long = "stdin-mode", value_name = "M", default_value = "0660", value_parser = parse_octal)]
    stdin_mode: u32,
    /// exclude paths matching PATTERN
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    exclude: Vec<String>,
    /// read exclude patterns from EXCLUDEFILE, one per line
    #[arg(long = "exclude-from", value_name = "EXCLUDEFILE")]
    exclude_from: Vec<PathBuf>,
    /// exclude directories that contain a CACHEDIR.TAG file
    #[arg(long = "exclude-caches")]
    exclude_caches: bool,
    /// exclude directories that are tagged by containing a filesystem object with the given NAME
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    exclude_if_present: Vec<String>,
    /// if tag objects are specified with ``--exclude-if-present``, don't omit the tag objects themselves
    #[arg(long = "keep-exclude-tags")]
    keep_exclude_tags: bool,
    /// stay in the same file system and do not store mount points of other file systems
    #[arg(short = 'x', long = "one-file-system")]
    one_file_system: bool,
    /// only store numeric user and group identifiers
    #[arg(long = "numeric-ids", alias = "numeric-owner")]
    numeric_ids: bool,
    /// do not store atime into archive
    #[arg(long)]
    noatime: bool,
    /// do not store ctime into archive
    #[arg(long)]
    noctime: bool,
    /// do not store birthtime (creation date) into archive
    #[arg(long)]
    nobirthtime: bool,
    /// do not read and store flags (e.g. NODUMP, IMMUTABLE) into archive
    #[arg(long, alias = "nobsdflags")]
    noflags: bool,
    /// do not read and store ACLs into archive
    #[arg(long)]
    noacls: bool,
    /// do not read and store xattrs into archive
    #[arg(long)]
    noxattrs: bool,
    /// detect sparse holes in input (supported only by fixed chunker)
    #[arg(long)]
    sparse: bool,
    /// operate files cache in MODE. default: ctime,size,inode
    #[arg(long = "files-cache", value_name = "MODE", default_value = "ctime,size,inode", value_parser = files_cache_mode)]
    files_cache: String,
    /// open and read block and char device files as well as FIFOs as if they were regular files
    #[arg(long = "read-special")]
    read_special: bool,
    /// add a comment text to the archive
    #[arg(long, value_name = "COMMENT", default_value = "")]
    comment: String,
    /// manually specify the archive creation date/time (UTC, yyyy-mm-ddThh:mm:ss format), or a reference file/directory
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_timestamp_arg)]
    timestamp: Option<NaiveDateTime>,
    /// write checkpoint every SECONDS seconds (Default: 1800)
    #[arg(
        short = 'c',
        long = "checkpoint-interval",
        value_name = "SECONDS",
        default_value_t = 1800
    )]
    checkpoint_interval: u64,
    /// specify the chunker parameters (ALGO, CHUNK_MIN_EXP, CHUNK_MAX_EXP, HASH_MASK_BITS, HASH_WINDOW_SIZE)
    #[arg(long = "chunker-params", value_name = "PARAMS", default_value = "buzhash,19,23,21,4095", value_parser = parse_chunker_params)]
    chunker_params: ChunkerParams,
    /// select compression algorithm, see the output of the "borg help compression" command for details.
    #[arg(short = 'C', long = "compression", value_name = "COMPRESSION", default_value = "lz4", value_parser = parse_compression)]
    compression: CompressionSpec,
    /// name of archive to create (must be also a valid directory name)
    #[arg(value_name = "ARCHIVE")]
    location: String,
    /// paths to archive
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<String>,
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8).map_err(|e| format!("invalid octal number {s:?}: {e}"))
}

fn parse_chunker_params(s: &str) -> Result<ChunkerParams, String> {
    if s == "default" {
        return Ok(ChunkerParams::DEFAULT);
    }
    s.parse::<ChunkerParams>().map_err(|e| e.to_string())
}

fn parse_compression(s: &str) -> Result<CompressionSpec, String> {
    s.parse::<CompressionSpec>().map_err(|e| e.to_string())
}

/// borg's `FilesCacheMode` validator; returns the short mode letters.
fn files_cache_mode(s: &str) -> Result<String, String> {
    let map = [
        ("ctime", 'c'),
        ("mtime", 'm'),
        ("size", 's'),
        ("inode", 'i'),
        ("rechunk", 'r'),
        ("disabled", 'd'),
    ];
    let mut letters = Vec::new();
    for entry in s.trim().split(',') {
        let Some((_, l)) = map.iter().find(|(n, _)| *n == entry) else {
            return Err(
                "cache mode must be a comma-separated list of: ctime,disabled,inode,mtime,rechunk,size"
                    .into(),
            );
        };
        if !letters.contains(l) {
            letters.push(*l);
        }
    }
    letters.sort();
    let mode: String = letters.into_iter().collect();
    if !["cis", "ims", "cs", "ms", "cr", "mr", "d", "s"].contains(&mode.as_str()) {
        return Err("cache mode short must be one of: cis,ims,cs,ms,cr,mr,d,s".into());
    }
    Ok(mode)
}

/// borg's `timestamp()` argument type: a reference file's mtime, or an ISO-like UTC time.
fn parse_timestamp_arg(s: &str) -> Result<NaiveDateTime, String> {
    if let Ok(md) = std::fs::metadata(s) {
        use std::os::unix::fs::MetadataExt;
        return chrono::DateTime::from_timestamp(md.mtime(), md.mtime_nsec() as u32)
            .map(|d| d.naive_utc())
            .ok_or_else(|| format!("bad mtime of {s}"));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default());
    }
    Err(format!(
        "unsupported timestamp format: {s}. Expected ISO-8601 (yyyy-mm-ddThh:mm:ss) or a reference file"
    ))
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

fn os_user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default()
}

/// borg's `replace_placeholders` (`{hostname}`, `{now:%Y-%m-%d}`, `{user}`, ... with `{{`/`}}`
/// escapes).
pub fn replace_placeholders(text: &str) -> Result<String, String> {
    let now_utc = Utc::now();
    let now_local = now_utc.with_timezone(&Local);
    let full = host_name();
    let short = full.split('.').next().unwrap_or("").to_string();
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => field.push(ch),
                        None => return Err(format!("Formatting Error: missing '}}' in {text:?}")),
                    }
                }
                let (name, spec) = match field.split_once(':') {
                    Some((n, s)) => (n, Some(s)),
                    None => (field.as_str(), None),
                };
                let time_fmt = spec
                    .filter(|s| !s.is_empty())
                    .unwrap_or("%Y-%m-%dT%H:%M:%S");
                let value = match name {
                    "pid" => std::process::id().to_string(),
                    "fqdn" => full.clone(),
                    "reverse-fqdn" => full.split('.').rev().collect::<Vec<_>>().join("."),
                    "hostname" => short.clone(),
                    "now" => now_local.format(time_fmt).to_string(),
                    "utcnow" => now_utc.format(time_fmt).to_string(),
                    "user" => os_user_name(),
                    "uuid4" => {
                        let b: [u8; 16] = rand_bytes();
                        let h = hex::encode(b);
                        format!(
                            "{}-{}-4{}-{}-{}",
                            &h[..8],
                            &h[8..12],
                            &h[13..16],
                            &h[16..20],
                            &h[20..]
                        )
                    }
                    "borgversion" => BORG_VERSION.to_string(),
                    "borgmajor" => BORG_VERSION.split('.').next().unwrap_or("").to_string(),
                    "borgminor" => BORG_VERSION
                        .split('.')
                        .take(2)
                        .collect::<Vec<_>>()
                        .join("."),
                    "borgpatch" => BORG_VERSION.to_string(),
                    other => {
                        return Err(format!("Formatting Error: unknown placeholder {{{other}}}"))
                    }
                };
                out.push_str(&value);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn rand_bytes() -> [u8; 16] {
    // uuid4 only needs uniqueness; mix the time and pid through the key-independent hasher
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for half in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Utc::now().timestamp_nanos_opt().unwrap_or(0) as u128);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// A duration in seconds, with microsecond precision.
fn seconds(d: chrono::Duration) -> f64 {
    d.num_microseconds().unwrap_or(0) as f64 / 1e6
}

fn local_time(t: NaiveDateTime) -> chrono::DateTime<Local> {
    Local.from_utc_datetime(&t)
}

/// Prints `--list` lines and warnings as borg does (both on stderr).
struct CliReporter<'a> {
    ctx: &'a Context,
    list: bool,
    filter: Option<String>,
}

impl Reporter for CliReporter<'_> {
    fn status(&mut self, status: char, path: &[u8]) {
        if !self.list {
            return;
        }
        if let Some(f) = &self.filter {
            if !f.contains(status) {
                return;
            }
        }
        eprintln!("{status} {}", String::from_utf8_lossy(path));
    }

    fn warning(&mut self, message: &str) {
        self.ctx.log.warning(message);
    }
}

pub fn run(ctx: &mut Context, args: CreateArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let Some(raw_name) = loc.archive.clone() else {
        return Err(CmdError::new(
            "No archive specified (use REPOSITORY::ARCHIVE)".to_string(),
        ));
    };
    let name = replace_placeholders(&raw_name).map_err(CmdError::new)?;
    let mut excludes = Vec::new();
    for p in &args.exclude {
        excludes.push(Pattern::parse(p).map_err(|e| CmdError::new(e.to_string()))?);
    }
    for f in &args.exclude_from {
        let text = std::fs::read_to_string(f)
            .map_err(|e| CmdError::new(format!("{}: {e}", f.display())))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            excludes.push(Pattern::parse(line).map_err(|e| CmdError::new(e.to_string()))?);
        }
    }
    if args.files_cache != "d" {
        ctx.log.debug(
            "files cache: not implemented in rborg, every file is read (as --files-cache=disabled)",
        );
    }
    let comment = replace_placeholders(&args.comment).map_err(CmdError::new)?;

    let mut opened = open_with_manifest(ctx, &loc, LockMode::Exclusive, &[Operation::Write])?;
    let location_text = opened.repository.path().display().to_string();
    let mut manifest = Manifest::load(
        &mut opened.repository,
        &opened.key.key,
        &[Operation::Write],
        &location_text,
    )?;
    let security = SecurityDir::open(&std_env, &opened.repository.id())?;
    ctx.log
        .info(&format!("Creating archive at \"{}\"", loc.processed));

    let mut sources = Vec::new();
    let mut stdin_used = false;
    for p in &args.paths {
        if p == "-" && !stdin_used {
            stdin_used = true;
            sources.push(Source::Stream {
                reader: Box::new(std::io::stdin()),
                name: args.stdin_name.clone(),
                mode: args.stdin_mode,
                user: args.stdin_user.clone(),
                group: args.stdin_group.clone(),
            });
        } else {
            sources.push(Source::Path(PathBuf::from(p)));
        }
    }
    let mut skip_paths = vec![rborg_archive::cache::cache_dir(&std_env)];
    skip_paths.push(opened.repository.path().to_path_buf());
    let opts = CreateOptions {
        chunker_params: args.chunker_params,
        compression: args.compression.clone(),
        numeric_ids: args.numeric_ids,
        one_file_system: args.one_file_system,
        read_special: args.read_special,
        excludes,
        exclude_caches: args.exclude_caches,
        exclude_if_present: args.exclude_if_present.clone(),
        keep_exclude_tags: args.keep_exclude_tags,
        noatime: args.noatime,
        noctime: args.noctime,
        noflags: args.noflags,
        noxattrs: args.noxattrs,
        sparse: args.sparse,
        comment,
        timestamp: args.timestamp,
        cmdline: std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        hostname: host_name().split('.').next().unwrap_or("").to_string(),
        username: os_user_name(),
        dry_run: args.dry_run,
        skip_paths,
        ..CreateOptions::default()
    };
    let mut reporter = CliReporter {
        ctx,
        list: args.output_list,
        filter: args.output_filter.clone(),
    };
    let key = opened.key.key.clone();
    let created = match create_archive(
        &mut opened.repository,
        &key,
        &mut manifest,
        security.nonce_file(),
        &name,
        sources,
        &opts,
        &mut reporter,
    ) {
        Ok(c) => c,
        Err(CreateError::AlreadyExists(n)) => {
            return Err(CmdError::new(format!("Archive {n} already exists")))
        }
        Err(e) => return Err(CmdError::new(e.to_string())),
    };
    if args.dry_run {
        return Ok(if created.warnings > 0 {
            EXIT_WARNING
        } else {
            EXIT_SUCCESS
        });
    }
    security.remember_manifest(&location_text, key.key_type(), &manifest)?;

    let iec = ctx.common.iec;
    if args.json {
        let fmt_t = |t: NaiveDateTime| local_time(t).format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
        let duration = (created.end - created.start)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6;
        let out = serde_json::json!({
            "archive": {
                "command_line": opts.cmdline,
                "duration": duration,
                "end": fmt_t(created.end),
                "id": hex::encode(created.id),
                "limits": {"max_archive_size": created.metadata_csize as f64 / MAX_DATA_SIZE},
                "name": created.name,
                "start": fmt_t(created.start),
                "stats": {
                    "compressed_size": created.stats.csize,
                    "deduplicated_size": created.stats.usize,
                    "nfiles": created.stats.nfiles,
                    "original_size": created.stats.osize,
                },
            },
            "encryption": {"mode": key.key_type().arg_name()},
            "repository": {
                "id": hex::encode(opened.repository.id()),
                "last_modified": manifest.timestamp.as_deref()
                    .and_then(rborg_archive::manifest::parse_timestamp)
                    .map(fmt_t)
                    .unwrap_or_default(),
                "location": location_text,
            },
        });
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&out).unwrap_or_default()
        );
    } else if args.stats {
        let dashes = "-".repeat(78);
        let ft = |t: NaiveDateTime| local_time(t).format("%a, %Y-%m-%d %H:%M:%S").to_string();
        let s = created.stats;
        let lines = [
            dashes.clone(),
            format!("Repository: {location_text}"),
            format!("Archive name: {}", created.name),
            format!("Archive fingerprint: {}", hex::encode(created.id)),
            format!("Time (start): {}", ft(created.start)),
            format!("Time (end):   {}", ft(created.end)),
            format!(
                "Duration: {}",
                format_timedelta(seconds(created.end - created.start))
            ),
            format!("Number of files: {}", s.nfiles),
            format!(
                "Utilization of max. archive size: {:.0}%",
                created.metadata_csize as f64 / MAX_DATA_SIZE * 100.0
            ),
            dashes.clone(),
            "                       Original size      Compressed size    Deduplicated size"
                .to_string(),
            format!(
                "{:15} {:>20} {:>20} {:>20}",
                "This archive:",
                format_file_size(s.osize, iec),
                format_file_size(s.csize, iec),
                format_file_size(s.usize, iec)
            ),
            dashes,
        ];
        for l in lines {
            eprintln!("{l}");
        }
    }
    Ok(if created.warnings > 0 {
        EXIT_WARNING
    } else {
        EXIT_SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_borg() {
        assert_eq!(format_file_size(0, false), "0 B");
        assert_eq!(format_file_size(999, false), "999 B");
        assert_eq!(format_file_size(1234, false), "1.23 kB");
        assert_eq!(format_file_size(1_500_000, false), "1.50 MB");
        assert_eq!(format_file_size(2048, true), "2.00 KiB");
    }

    #[test]
    fn placeholders() {
        assert_eq!(replace_placeholders("a{{b}}").unwrap(), "a{b}");
        let y = Utc::now().format("%Y").to_string();
        assert!(replace_placeholders("x-{utcnow:%Y}")
            .unwrap()
            .starts_with(&format!("x-{y}")));
        assert_eq!(replace_placeholders("{borgversion}").unwrap(), "1.2.4");
        assert!(replace_placeholders("{nope}").is_err());
        assert!(replace_placeholders("{now").is_err());
    }

    #[test]
    fn cache_modes() {
        assert_eq!(files_cache_mode("ctime,size,inode").unwrap(), "cis");
        assert_eq!(files_cache_mode("disabled").unwrap(), "d");
        assert!(files_cache_mode("ctime,mtime").is_err());
        assert!(files_cache_mode("bogus").is_err());
    }

    #[test]
    fn timedelta() {
        assert_eq!(
            format_timedelta(seconds(chrono::Duration::milliseconds(61_500))),
            "1 minutes 1.50 seconds"
        );
    }
}
