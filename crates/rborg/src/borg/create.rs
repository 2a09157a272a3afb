//! `borg create`: archive files and directories (borg 1.2.4 `archiver.py` `do_create`, its
//! options, `helpers/parseformat.py` placeholders and `FilesCacheMode`, `archive.py`
//! `Statistics` / `Archive.__str__` for `--stats`).
//!
//! A first SIGINT (Ctrl-C) does what borg 1.2's `sig_int` does for `create`: the run writes
//! a checkpoint at the next content chunk, finishes the file being read and ends with
//! "Got Ctrl-C / SIGINT." (rc 2) without saving the archive; a second SIGINT terminates.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use clap::Args;
use rborg_archive::create::chrono::{self, Local, NaiveDateTime, TimeZone, Utc};
use rborg_archive::create::{
    create_archive_cached, CreateError, CreateOptions, Reporter, Source, Stats,
};
use rborg_archive::info::repository_stats;
use rborg_archive::manifest::Operation;
use rborg_archive::patterns::PatternMatcher;
use rborg_archive::refcount::RefCounts;
use rborg_archive::security::SecurityDir;
use rborg_archive::Manifest;
use rborg_chunker::ChunkerParams;
use rborg_compress::CompressionSpec;
use rborg_crypto::paths::std_env;
use rborg_repository::Repository;

use super::common::{
    format_file_size, format_timedelta, CmdError, CmdResult, Context, CreateProgress,
    ExclusionArgs, FileStatusPrinter, EXIT_SUCCESS, EXIT_WARNING,
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
    /// interpret PATH as command and store its stdout. See also section Reading from stdin below.
    #[arg(long = "content-from-command")]
    content_from_command: bool,
    /// read DELIM-separated list of paths to backup from stdin. Will not recurse into directories.
    #[arg(long = "paths-from-stdin")]
    paths_from_stdin: bool,
    /// interpret PATH as command and treat its output as ``--paths-from-stdin``
    #[arg(long = "paths-from-command")]
    paths_from_command: bool,
    /// set path delimiter for ``--paths-from-stdin`` and ``--paths-from-command`` (default: \n)
    #[arg(long = "paths-delimiter", value_name = "DELIM")]
    paths_delimiter: Option<String>,
    #[command(flatten)]
    exclusion: ExclusionArgs,
    /// exclude files flagged NODUMP
    #[arg(long = "exclude-nodump")]
    exclude_nodump: bool,
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
    /// do not store atime into archive (deprecated: the default now)
    #[arg(long)]
    noatime: bool,
    /// do store atime into archive
    #[arg(long)]
    atime: bool,
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
    #[command(flatten)]
    archive: ArchiveOptions,
    /// name of archive to create (must be also a valid directory name)
    #[arg(value_name = "ARCHIVE")]
    location: String,
    /// paths to archive
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
}

/// Starts `argv` with its stdout piped (borg's `subprocess.Popen(args.paths, stdout=PIPE)`).
fn spawn_command(argv: &[String]) -> Result<std::process::Child, CmdError> {
    std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            let errno = e.raw_os_error().unwrap_or(0);
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text);
            CmdError::new(format!(
                "Failed to execute command: [Errno {errno}] {text}: '{}'",
                argv[0]
            ))
        })
}

/// borg's message when a `--paths-from-command` / `--content-from-command` command fails.
fn command_failed(name: &str, status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0));
    format!("Command '{name}' exited with status {code}")
}

/// Runs `argv` to the end and returns its stdout; a failing command is an error and no
/// archive is created.
fn command_output(argv: &[String]) -> Result<Vec<u8>, CmdError> {
    let mut child = spawn_command(argv)?;
    let mut data = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_end(&mut out, &mut data)?;
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(CmdError::new(command_failed(&argv[0], status)));
    }
    Ok(data)
}

/// The stdout of a `--content-from-command` command; at its end the command's exit status is
/// checked, and a failure becomes a read error, so the archive is not committed.
struct CommandOutput {
    child: std::process::Child,
    name: String,
    failure: Arc<Mutex<Option<String>>>,
}

impl std::io::Read for CommandOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.child.stdout.as_mut() {
            Some(out) => out.read(buf)?,
            None => 0,
        };
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        self.child.stdout = None;
        let status = self.child.wait()?;
        if status.success() {
            return Ok(0);
        }
        let message = command_failed(&self.name, status);
        if let Ok(mut f) = self.failure.lock() {
            *f = Some(message.clone());
        }
        Err(std::io::Error::other(message))
    }
}

/// borg's `eval_escapes` for `--paths-delimiter` (`\n`, `\0`, `\t`, `\xHH`, ...).
fn eval_escapes(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('r') => out.push(b'\r'),
            Some('a') => out.push(7),
            Some('b') => out.push(8),
            Some('f') => out.push(12),
            Some('v') => out.push(11),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = (0..2).filter_map(|_| chars.next()).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(format!("\\x{hex}").as_bytes()),
                }
            }
            Some(d @ '0'..='7') => {
                let mut v = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(x) => {
                            v = v * 8 + x;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            Some(other) => {
                out.push(b'\\');
                let mut b = [0u8; 4];
                out.extend_from_slice(other.encode_utf8(&mut b).as_bytes());
            }
            None => out.push(b'\\'),
        }
    }
    out
}

/// borg's `iter_separated`: the parts between delimiters; a trailing empty part is dropped.
fn split_paths<'a>(data: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    if delimiter.is_empty() {
        if !data.is_empty() {
            parts.push(data);
        }
        return parts;
    }
    let mut rest = data;
    while let Some(pos) = rest.windows(delimiter.len()).position(|w| w == delimiter) {
        parts.push(&rest[..pos]);
        rest = &rest[pos + delimiter.len()..];
    }
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8).map_err(|e| format!("invalid octal number {s:?}: {e}"))
}

/// borg's "Archive options" group, shared by `create` and `import-tar`.
#[derive(Debug, Args)]
pub(super) struct ArchiveOptions {
    /// add a comment text to the archive
    #[arg(long, value_name = "COMMENT", default_value = "")]
    pub(super) comment: String,
    /// manually specify the archive creation date/time (UTC, yyyy-mm-ddThh:mm:ss format), or a reference file/directory
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_timestamp_arg)]
    pub(super) timestamp: Option<NaiveDateTime>,
    /// write checkpoint every SECONDS seconds (Default: 1800)
    #[arg(
        short = 'c',
        long = "checkpoint-interval",
        value_name = "SECONDS",
        default_value_t = 1800
    )]
    pub(super) checkpoint_interval: u64,
    /// specify the chunker parameters (ALGO, CHUNK_MIN_EXP, CHUNK_MAX_EXP, HASH_MASK_BITS, HASH_WINDOW_SIZE)
    #[arg(long = "chunker-params", value_name = "PARAMS", default_value = "buzhash,19,23,21,4095", value_parser = parse_chunker_params)]
    pub(super) chunker_params: ChunkerParams,
    /// select compression algorithm, see the output of the "borg help compression" command for details.
    #[arg(short = 'C', long = "compression", value_name = "COMPRESSION", default_value = "lz4", value_parser = parse_compression)]
    pub(super) compression: CompressionSpec,
}

pub(super) fn parse_chunker_params(s: &str) -> Result<ChunkerParams, String> {
    if s == "default" {
        return Ok(ChunkerParams::DEFAULT);
    }
    s.parse::<ChunkerParams>().map_err(|e| e.to_string())
}

pub(super) fn parse_compression(s: &str) -> Result<CompressionSpec, String> {
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
pub(super) fn parse_timestamp_arg(s: &str) -> Result<NaiveDateTime, String> {
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

pub(super) fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

pub(super) fn os_user_name() -> String {
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

/// `--list` lines and warnings as borg prints them ([`FileStatusPrinter`]), plus `--progress`.
struct CliReporter<'a> {
    files: FileStatusPrinter<'a>,
    progress: Option<CreateProgress>,
}

impl Reporter for CliReporter<'_> {
    fn status(&mut self, status: char, path: &[u8]) {
        self.files.status(status, path);
    }

    fn warning(&mut self, message: &str) {
        self.files.warning(message);
    }

    fn progress(&mut self, stats: &Stats, path: &[u8]) {
        if let Some(p) = &mut self.progress {
            let path = String::from_utf8_lossy(path);
            p.show(stats.osize, stats.csize, stats.usize, stats.nfiles, &path);
        }
    }
}

/// borg 1.2's `sig_int` (`helpers/process.py` `SigIntManager`, entered around the whole
/// command): while armed, the first SIGINT only raises the flag, which `create` turns into a
/// checkpoint and a clean stop; a second SIGINT, or one while nothing is armed, does what
/// SIGINT does by default (borg restores the original handler after the first).
struct SigInt(Arc<AtomicBool>);

impl SigInt {
    /// Installs the handlers once per process (through `signal-hook`, no `unsafe` here) and
    /// lowers the flag; `None` if they could not be installed (SIGINT then keeps its default).
    fn arm() -> Option<SigInt> {
        static FLAG: OnceLock<Option<Arc<AtomicBool>>> = OnceLock::new();
        let flag = FLAG
            .get_or_init(|| {
                use signal_hook::consts::SIGINT;
                let flag = Arc::new(AtomicBool::new(true));
                // registered first, so it sees the flag as it was before this signal
                signal_hook::flag::register_conditional_default(SIGINT, flag.clone()).ok()?;
                signal_hook::flag::register(SIGINT, flag.clone()).ok()?;
                Some(flag)
            })
            .clone()?;
        flag.store(false, Ordering::SeqCst);
        Some(SigInt(flag))
    }
}

impl Drop for SigInt {
    /// Disarms: the next SIGINT terminates again.
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub fn run(ctx: &mut Context, args: CreateArgs) -> CmdResult {
    let sigint = SigInt::arm();
    let loc = location(Some(&args.location))?;
    let Some(raw_name) = loc.archive.clone() else {
        return Err(CmdError::new(
            "No archive specified (use REPOSITORY::ARCHIVE)".to_string(),
        ));
    };
    let name = replace_placeholders(&raw_name).map_err(CmdError::new)?;
    let exclusion = args.exclusion.load()?;
    // `R` roots come first, then the PATH arguments (borg's `paths` with action "extend")
    let mut paths = exclusion.roots.clone();
    paths.extend(args.paths.iter().cloned());
    if !paths.is_empty() && args.paths_from_stdin {
        return Err(CmdError::new(
            "Must not pass PATH with ``--paths-from-stdin``.",
        ));
    }
    if paths.is_empty() {
        if args.content_from_command || args.paths_from_command {
            return Err(CmdError::new("No command given."));
        }
        if !args.paths_from_stdin {
            return Err(CmdError::new("Need at least one PATH argument."));
        }
    }
    let mut patterns = PatternMatcher::new();
    patterns.add_inclexcl(exclusion.rules);
    let comment = replace_placeholders(&args.archive.comment).map_err(CmdError::new)?;

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
    ctx.log.debug("Processing files ...");

    let mut sources = Vec::new();
    let mut stdin_used = false;
    let command_failure = Arc::new(Mutex::new(None::<String>));
    if args.content_from_command {
        if !args.dry_run {
            let child = spawn_command(&paths)?;
            sources.push(Source::Stream {
                reader: Box::new(CommandOutput {
                    child,
                    name: paths[0].clone(),
                    failure: command_failure.clone(),
                }),
                name: args.stdin_name.clone(),
                mode: args.stdin_mode,
                user: args.stdin_user.clone(),
                group: args.stdin_group.clone(),
            });
        }
    } else if args.paths_from_stdin || args.paths_from_command {
        let delimiter = match &args.paths_delimiter {
            Some(d) => eval_escapes(d),
            None => b"\n".to_vec(),
        };
        let data = if args.paths_from_command {
            command_output(&paths)?
        } else {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut data)?;
            data
        };
        for path in split_paths(&data, &delimiter) {
            use std::os::unix::ffi::OsStrExt;
            sources.push(Source::Single(PathBuf::from(std::ffi::OsStr::from_bytes(
                path,
            ))));
        }
    }
    let paths = if args.content_from_command || args.paths_from_command {
        Vec::new()
    } else {
        paths
    };
    for p in &paths {
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
        chunker_params: args.archive.chunker_params,
        compression: args.archive.compression.clone(),
        numeric_ids: args.numeric_ids,
        one_file_system: args.one_file_system,
        read_special: args.read_special,
        patterns,
        exclude_caches: args.exclude_caches,
        exclude_nodump: args.exclude_nodump,
        exclude_if_present: args.exclude_if_present.clone(),
        keep_exclude_tags: args.keep_exclude_tags,
        noatime: !args.atime,
        noctime: args.noctime,
        noflags: args.noflags,
        noxattrs: args.noxattrs,
        noacls: args.noacls,
        sparse: args.sparse,
        comment,
        timestamp: args.archive.timestamp,
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
        files: FileStatusPrinter {
            ctx,
            list: args.output_list,
            filter: args.output_filter.clone(),
        },
        progress: ctx.common.progress.then(|| CreateProgress::new(ctx)),
    };
    let key = opened.key.key.clone();
    // borg's Cache(..., permit_adhoc_cache=--no-cache-sync): the local cache unless
    // --no-cache-sync is given and it is out of sync; none for a dry run
    let use_cache = !args.dry_run
        && (!args.no_cache_sync
            || rborg_archive::cache::local::cache_in_sync(
                &std_env,
                &opened.repository.id(),
                &manifest.id,
            ));
    let mut cache_warning = false;
    let mut cache = if use_cache {
        let (c, w) = super::info::open_cache(
            reporter.files.ctx,
            &mut opened.repository,
            &key,
            &manifest,
            &location_text,
            &args.files_cache,
        )?;
        cache_warning = w;
        Some(c)
    } else {
        None
    };
    let opts = CreateOptions {
        files_cache_mode: args.files_cache.clone(),
        // borg: `self.checkpoint_interval and ...`: 0 disables the timed checkpoints
        checkpoint_interval: (args.archive.checkpoint_interval > 0)
            .then(|| std::time::Duration::from_secs(args.archive.checkpoint_interval)),
        // database dumps streaming into this run can stop it before the archive is saved
        interrupt: crate::orchestrator::databases::commit_gate(
            sigint.as_ref().map(|s| s.0.clone()),
        ),
        ..opts
    };
    let created = match create_archive_cached(
        &mut opened.repository,
        &key,
        &mut manifest,
        security.nonce_file(),
        &name,
        sources,
        &opts,
        &mut reporter,
        cache.as_mut(),
    ) {
        Ok(c) => c,
        Err(CreateError::AlreadyExists(n)) => {
            return Err(CmdError::new(format!("Archive {n} already exists")))
        }
        Err(CreateError::Interrupted) => {
            // a checkpoint may have changed the manifest (borg's cache.commit saves it)
            security.remember_manifest(&location_text, key.key_type(), &manifest)?;
            return Err(CmdError::new(CreateError::Interrupted.to_string()));
        }
        Err(_) if command_failure.lock().is_ok_and(|f| f.is_some()) => {
            let message = command_failure.lock().ok().and_then(|mut f| f.take());
            return Err(CmdError::new(message.unwrap_or_default()));
        }
        Err(e) => return Err(CmdError::new(e.to_string())),
    };
    if let Some(p) = &mut reporter.progress {
        p.finish();
    }
    if args.dry_run {
        return Ok(if created.warnings > 0 {
            EXIT_WARNING
        } else {
            EXIT_SUCCESS
        });
    }
    security.remember_manifest(&location_text, key.key_type(), &manifest)?;

    let iec = ctx.common.iec;
    // the repository totals borg takes from its chunks cache ("All archives", JSON "cache")
    let all = if args.json || args.stats {
        let err = |e: rborg_archive::ReadError| CmdError::new(e.to_string());
        let refs = RefCounts::build(&mut opened.repository, &key, &manifest).map_err(err)?;
        let parts = ctx.common.consider_part_files;
        Some(repository_stats(&mut opened.repository, &key, &manifest, &refs, parts).map_err(err)?)
    } else {
        None
    };
    let all = all.unwrap_or_default();
    let cache_path = rborg_archive::cache::repository_cache_dir(&std_env, &opened.repository.id());
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
            "cache": {
                "path": cache_path.display().to_string(),
                "stats": {
                    "total_chunks": all.total_chunks,
                    "total_csize": all.total_csize,
                    "total_size": all.total_size,
                    "total_unique_chunks": all.total_unique_chunks,
                    "unique_csize": all.unique_csize,
                    "unique_size": all.unique_size,
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
        let _ = writeln!(
            crate::output::stdout(),
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
            super::info::cache_str(&all, iec),
            dashes,
        ];
        for l in lines {
            eprintln!("{l}");
        }
    }
    Ok(if created.warnings > 0 || cache_warning {
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
    fn path_delimiters() {
        assert_eq!(eval_escapes("\\0"), b"\0");
        assert_eq!(eval_escapes("\\n"), b"\n");
        assert_eq!(eval_escapes("::"), b"::");
        assert_eq!(eval_escapes("\\x2c\\t"), b",\t");
        assert_eq!(eval_escapes("\\q"), b"\\q");
        let parts = split_paths(b"a\0b\0\0c\0", b"\0");
        assert_eq!(parts, [&b"a"[..], b"b", b"", b"c"]);
        assert_eq!(split_paths(b"x::y", b"::"), [&b"x"[..], b"y"]);
        assert!(split_paths(b"", b"\n").is_empty());
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
