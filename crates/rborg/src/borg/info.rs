//! `borg info`: details and sizes of archives or of the repository (borg 1.2.4 `archiver.py`
//! `do_info` / `_info_archives` / `_info_repository`; numbers from `rborg_archive::info`, which
//! rebuilds borg's chunk reference counts from all archives).
//!
//! `--json` output is laid out as Python's `json.dumps(sort_keys=True, indent=4)` writes it.

use clap::Args;
use rborg_archive::archive::ArchiveMeta;
use rborg_archive::cache::{CacheError, CacheOptions, Level as CacheLevel, LocalCache};
use rborg_archive::format;
use rborg_archive::info::{
    archive_stats, chunker_params, repository_stats, ChunkerParam, RepositoryStats,
};
use rborg_archive::keys::KeyLocation;
use rborg_archive::manifest::{parse_timestamp, Operation};
use rborg_archive::refcount::RefCounts;
use rborg_archive::security::SecurityDir;
use rborg_archive::Manifest;
use rborg_crypto::paths::std_env;
use rborg_crypto::KeyType;
use rborg_repository::Repository;

use super::archives::ArchiveFilterArgs;
use super::common::{
    format_file_size, format_timedelta, CmdError, CmdResult, Context, EXIT_SUCCESS,
};
use super::open::{location, open_with_manifest, LockMode};

const DASHES: &str =
    "------------------------------------------------------------------------------";
pub const STATS_HEADER: &str =
    "                       Original size      Compressed size    Deduplicated size";
/// borg's `MAX_DATA_SIZE` (constants.py), the limit of one object.
const MAX_DATA_SIZE: f64 = 20_971_479.0;

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// format output as JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: ArchiveFilterArgs,
    /// repository or archive to display information about
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    location: Option<String>,
}

fn local_time(utc: &str) -> String {
    parse_timestamp(utc)
        .and_then(|t| format::utc_to_local(&t))
        .map(|t| t.format("%a, %Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| utc.to_string())
}

/// The cache's `__str__`: "All archives" and "Chunk index".
pub fn cache_str(s: &RepositoryStats, iec: bool) -> String {
    format!(
        "All archives:   {:>20} {:>20} {:>20}\n\n                       Unique chunks         Total chunks\nChunk index:    {:>20} {:>20}",
        format_file_size(s.total_size, iec),
        format_file_size(s.total_csize, iec),
        format_file_size(s.unique_csize, iec),
        s.total_unique_chunks,
        s.total_chunks
    )
}

/// Opens (creating or synchronising it as needed) the client cache of the repository, as
/// borg's `Cache(...)` does for every command that uses it, and logs what the cache
/// reported. Returns the cache and whether an error was logged (exit code "warning").
pub fn open_cache(
    ctx: &Context,
    repository: &mut dyn Repository,
    key: &rborg_crypto::Key,
    manifest: &Manifest,
    location: &str,
    files_cache_mode: &str,
) -> Result<(LocalCache, bool), CmdError> {
    let opts = CacheOptions {
        env: &std_env,
        files_cache_mode: files_cache_mode.to_string(),
        location: location.to_string(),
        lock_wait: Some(ctx.lock_wait()),
        sync: true,
    };
    let mut cache = LocalCache::open(repository, key, manifest, &opts).map_err(cache_error)?;
    let mut warning = false;
    for (level, msg) in std::mem::take(&mut cache.messages) {
        match level {
            CacheLevel::Info => ctx.log.info(&msg),
            CacheLevel::Warning => ctx.log.warning(&msg),
            CacheLevel::Error => {
                warning = true;
                ctx.log.error(&msg)
            }
        }
    }
    Ok((cache, warning))
}

/// A cache error as the command's error (unknown features keep borg's message and code).
pub fn cache_error(e: CacheError) -> CmdError {
    match e {
        CacheError::Archive(e) => e.into(),
        CacheError::Repository(e) => e.into(),
        CacheError::Lock(e) => e.into(),
        e => CmdError::new(e.to_string()),
    }
}

/// Python's `'{:.0%}'.format(x)` (round half to even).
fn percent(x: f64) -> String {
    let v = x * 100.0;
    let r = v.round();
    let r = if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - v.signum()
    } else {
        r
    };
    format!("{r:.0}%")
}

/// A JSON value, printed as Python's `json.dumps(sort_keys=True, indent=4)`.
enum Json {
    Str(String),
    Int(u64),
    Float(f64),
    List(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

/// Python's `repr(float)`: the shortest round-tripping digits, positional notation for
/// exponents in -4..16, otherwise `d.ddde-XX`.
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return "0.0".into();
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let text = if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if exp + 1 >= n {
            format!("{digits}{}.0", "0".repeat((exp + 1 - n) as usize))
        } else {
            let (a, b) = digits.split_at((exp + 1) as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{text}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

impl Json {
    fn write(&self, out: &mut String, indent: usize) {
        let pad = |n: usize| " ".repeat(n);
        match self {
            Json::Str(s) => out.push_str(&format::json_str(s)),
            Json::Int(i) => out.push_str(&i.to_string()),
            Json::Float(f) => out.push_str(&python_float(*f)),
            Json::List(items) if items.is_empty() => out.push_str("[]"),
            Json::List(items) => {
                out.push_str("[\n");
                for (i, v) in items.iter().enumerate() {
                    out.push_str(&pad(indent + 4));
                    v.write(out, indent + 4);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push(']');
            }
            Json::Obj(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Obj(fields) => {
                let mut fields: Vec<&(&str, Json)> = fields.iter().collect();
                fields.sort_by_key(|(k, _)| *k);
                out.push_str("{\n");
                for (i, (k, v)) in fields.iter().enumerate() {
                    out.push_str(&pad(indent + 4));
                    out.push_str(&format::json_str(k));
                    out.push_str(": ");
                    v.write(out, indent + 4);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push('}');
            }
        }
    }
}

fn iso_local(utc: &str) -> Json {
    match parse_timestamp(utc).and_then(|t| format::utc_to_local(&t)) {
        Some(t) => Json::Str(format::isoformat(&t)),
        None => Json::Str(utc.to_string()),
    }
}

/// borg's `normalize_chunker_params` as JSON (`""` when the archive has none).
fn chunker_params_json(meta: &ArchiveMeta) -> Json {
    match chunker_params(meta) {
        None => Json::Str(String::new()),
        Some(list) => Json::List(
            list.into_iter()
                .map(|p| match p {
                    ChunkerParam::Name(n) => Json::Str(n),
                    ChunkerParam::Int(i) => Json::Int(i),
                })
                .collect(),
        ),
    }
}

pub fn run(ctx: &mut Context, args: InfoArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    let mut opened = open_with_manifest(ctx, &loc, LockMode::Shared, &[Operation::Read])?;
    let location_text = opened.repository.path().display().to_string();
    let key = opened.key.key.clone();
    let repo = &mut opened.repository;
    let manifest = Manifest::load(repo, &key, &[Operation::Read], &location_text)?;
    // borg opens (and if needed creates or syncs) the cache; the numbers below are
    // rebuilt from the archives, which is what a synchronised chunks cache holds
    let (cache, cache_warning) = open_cache(ctx, repo, &key, &manifest, &location_text, "d")?;
    drop(cache);
    let err = |e: rborg_archive::ReadError| CmdError::new(e.to_string());
    let refs = RefCounts::build(repo, &key, &manifest).map_err(err)?;
    let parts = ctx.common.consider_part_files;
    let iec = ctx.common.iec;
    let all = repository_stats(repo, &key, &manifest, &refs, parts).map_err(err)?;
    let mut out = String::new();
    let mut json_archives: Vec<Json> = Vec::new();
    let by_archive = loc.archive.is_some() || args.filter.any();
    if by_archive {
        let names = match &loc.archive {
            Some(n) => vec![n.clone()],
            None => args.filter.select_names(&manifest)?,
        };
        for (i, name) in names.iter().enumerate() {
            let meta =
                ArchiveMeta::load_by_name(repo, &key, &manifest, name, false).map_err(err)?;
            let stats = archive_stats(repo, &key, &meta, &refs, parts).map_err(err)?;
            let end = meta.time_end.clone().unwrap_or_else(|| meta.time.clone());
            let duration = match (parse_timestamp(&meta.time), parse_timestamp(&end)) {
                (Some(s), Some(e)) => (e - s).num_microseconds().unwrap_or(0) as f64 / 1e6,
                _ => 0.0,
            };
            let cmdline = format::remove_surrogates(
                meta.cmdline
                    .iter()
                    .map(|a| format::shlex_quote(&String::from_utf8_lossy(a)))
                    .collect::<Vec<_>>()
                    .join(" ")
                    .as_bytes(),
            );
            let meta_csize = refs.get(&meta.id).map(|e| e.csize).unwrap_or(0);
            if args.json {
                let rs = |b: &[u8]| Json::Str(format::remove_surrogates(b));
                json_archives.push(Json::Obj(vec![
                    ("name", rs(&meta.name)),
                    ("id", Json::Str(hex::encode(meta.id))),
                    ("start", iso_local(&meta.time)),
                    ("end", iso_local(&end)),
                    ("duration", Json::Float(duration)),
                    (
                        "stats",
                        Json::Obj(vec![
                            ("original_size", Json::Int(stats.original_size)),
                            ("compressed_size", Json::Int(stats.compressed_size)),
                            ("deduplicated_size", Json::Int(stats.deduplicated_size)),
                            ("nfiles", Json::Int(stats.nfiles)),
                        ]),
                    ),
                    (
                        "limits",
                        Json::Obj(vec![(
                            "max_archive_size",
                            Json::Float(meta_csize as f64 / MAX_DATA_SIZE),
                        )]),
                    ),
                    (
                        "command_line",
                        Json::List(meta.cmdline.iter().map(|a| rs(a)).collect()),
                    ),
                    ("hostname", rs(&meta.hostname)),
                    ("username", rs(&meta.username)),
                    ("comment", rs(&meta.comment)),
                    ("chunker_params", chunker_params_json(&meta)),
                ]));
                continue;
            }
            out.push_str(&format!(
                "Archive name: {}\nArchive fingerprint: {}\nComment: {}\nHostname: {}\nUsername: {}\nTime (start): {}\nTime (end): {}\nDuration: {}\nNumber of files: {}\nCommand line: {}\nUtilization of maximum supported archive size: {}\n{DASHES}\n{STATS_HEADER}\nThis archive:   {:>20} {:>20} {:>20}\n{}\n",
                format::remove_surrogates(&meta.name),
                hex::encode(meta.id),
                format::remove_surrogates(&meta.comment),
                format::remove_surrogates(&meta.hostname),
                format::remove_surrogates(&meta.username),
                local_time(&meta.time),
                local_time(&end),
                format_timedelta(duration),
                stats.nfiles,
                cmdline,
                percent(meta_csize as f64 / MAX_DATA_SIZE),
                format_file_size(stats.original_size, iec),
                format_file_size(stats.compressed_size, iec),
                format_file_size(stats.deduplicated_size, iec),
                cache_str(&all, iec),
            ));
            if i + 1 < names.len() {
                out.push('\n');
            }
        }
    } else if !args.json {
        let kt = key.key_type();
        let mut encryption = String::from("Encrypted: ");
        if matches!(kt, KeyType::Plaintext | KeyType::Authenticated) {
            encryption.push_str("No");
        } else {
            encryption.push_str(&format!("Yes ({})", kt.name()));
        }
        if kt.name().starts_with("key file") {
            if let KeyLocation::File(p) = &opened.key.location {
                encryption.push_str(&format!("\nKey file: {}", p.display()));
            }
        }
        let id = opened.repository.id();
        let cache = rborg_archive::cache::repository_cache_dir(&std_env, &id);
        let security = SecurityDir::open(&std_env, &id)?;
        out.push_str(&format!(
            "Repository ID: {}\nLocation: {}\n{encryption}\nCache: {}\nSecurity dir: {}\n{DASHES}\n{STATS_HEADER}\n{}\n",
            hex::encode(id),
            loc.canonical_path(),
            cache.display(),
            security.path().display(),
            cache_str(&all, iec),
        ));
    }
    if args.json {
        let id = opened.repository.id();
        let mut encryption = vec![("mode", Json::Str(key.key_type().arg_name().to_string()))];
        if key.key_type().name().starts_with("key file") {
            if let KeyLocation::File(p) = &opened.key.location {
                encryption.push(("keyfile", Json::Str(p.display().to_string())));
            }
        }
        let cache = rborg_archive::cache::repository_cache_dir(&std_env, &id);
        let mut top = vec![
            (
                "repository",
                Json::Obj(vec![
                    ("id", Json::Str(hex::encode(id))),
                    ("location", Json::Str(loc.canonical_path())),
                    (
                        "last_modified",
                        iso_local(manifest.timestamp.as_deref().unwrap_or("")),
                    ),
                ]),
            ),
            ("encryption", Json::Obj(encryption)),
            (
                "cache",
                Json::Obj(vec![
                    ("path", Json::Str(cache.display().to_string())),
                    (
                        "stats",
                        Json::Obj(vec![
                            ("total_chunks", Json::Int(all.total_chunks)),
                            ("total_csize", Json::Int(all.total_csize)),
                            ("total_size", Json::Int(all.total_size)),
                            ("total_unique_chunks", Json::Int(all.total_unique_chunks)),
                            ("unique_csize", Json::Int(all.unique_csize)),
                            ("unique_size", Json::Int(all.unique_size)),
                        ]),
                    ),
                ]),
            ),
        ];
        if by_archive {
            top.push(("archives", Json::List(json_archives)));
        } else {
            let security = SecurityDir::open(&std_env, &id)?;
            top.push((
                "security_dir",
                Json::Str(security.path().display().to_string()),
            ));
        }
        Json::Obj(top).write(&mut out, 0);
        out.push('\n');
    }
    let _ = std::io::Write::write_all(&mut crate::output::stdout(), out.as_bytes());
    Ok(if cache_warning {
        super::common::EXIT_WARNING
    } else {
        EXIT_SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python_repr() {
        assert_eq!(python_float(2.403263975802565e-05), "2.403263975802565e-05");
        assert_eq!(python_float(0.0001), "0.0001");
        assert_eq!(python_float(0.063691), "0.063691");
        assert_eq!(python_float(0.0), "0.0");
        assert_eq!(python_float(3.0), "3.0");
        assert_eq!(python_float(123.5), "123.5");
        assert_eq!(python_float(1e16), "1e+16");
        assert_eq!(python_float(1e15), "1000000000000000.0");
    }

    #[test]
    fn sizes_like_borg() {
        assert_eq!(format_file_size(870, false), "870 B");
        assert_eq!(format_file_size(3_000_002, false), "3.00 MB");
        assert_eq!(format_file_size(500_990, false), "500.99 kB");
        assert_eq!(format_file_size(999_999, false), "1.00 MB");
        assert_eq!(format_file_size(1536, true), "1.50 KiB");
    }

    #[test]
    fn durations_like_borg() {
        assert_eq!(format_timedelta(0.063691), "0.06 seconds");
        assert_eq!(format_timedelta(3723.5), "1 hours 2 minutes 3.50 seconds");
        assert_eq!(format_timedelta(90000.0), "1 days 1 hours 0.00 seconds");
    }
}
