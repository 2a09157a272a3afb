//! `borg list`: the archives of a repository, or the items of an archive (borg 1.2.4
//! `archiver.py` `do_list` / `_list_repository` / `_list_archive`, formats from
//! `helpers/parseformat.py` `ArchiveFormatter` / `ItemFormatter`).

use std::io::Write;

use clap::Args;
use rborg_archive::archive::{ArchiveMeta, ContentHash, ContentReader, ItemIter, ReadError};
use rborg_archive::format::{self, Template, Value};
use rborg_archive::item::Item;
use rborg_archive::keys::KeyLocation;
use rborg_archive::manifest::{parse_timestamp, Operation};
use rborg_archive::patterns::PatternMatcher;
use rborg_archive::refcount::RefCounts;
use rborg_archive::Manifest;
use rborg_repository::Repository;

use super::archives::ArchiveFilterArgs;
use super::common::{CmdError, CmdResult, Context, ExclusionArgs, EXIT_ERROR, EXIT_SUCCESS};
use super::open::{location, open_with_manifest, LockMode};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show checkpoint archives in the repository contents list (default: hidden).
    #[arg(long = "consider-checkpoints")]
    consider_checkpoints: bool,
    /// only print file/directory names, nothing else
    #[arg(long)]
    short: bool,
    /// specify format for file or archive listing
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Only valid for listing repository contents. Format output as JSON.
    #[arg(long)]
    json: bool,
    /// Only valid for listing archive contents. Format output as JSON Lines.
    #[arg(long = "json-lines")]
    json_lines: bool,
    #[command(flatten)]
    filter: ArchiveFilterArgs,
    /// repository or archive to list contents of
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    location: Option<String>,
    /// paths to list; patterns are supported
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
    #[command(flatten)]
    exclusion: ExclusionArgs,
}

pub fn run(ctx: &mut Context, args: ListArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    if loc.archive.is_some() && args.json {
        ctx.log
            .error("The --json option is only valid for listing archives, not archive contents.");
        return Ok(EXIT_ERROR);
    }
    if loc.archive.is_none() && args.json_lines {
        ctx.log.error(
            "The --json-lines option is only valid for listing archive contents, not archives.",
        );
        return Ok(EXIT_ERROR);
    }
    let mut opened = open_with_manifest(ctx, &loc, LockMode::Shared, &[Operation::Read])?;
    let location_text = opened.repository.path().display().to_string();
    let manifest = Manifest::load(
        &mut opened.repository,
        &opened.key.key,
        &[Operation::Read],
        &location_text,
    )?;
    let mut out = std::io::BufWriter::new(crate::output::stdout());
    match &loc.archive {
        Some(name) => list_archive(
            ctx,
            &args,
            &mut opened.repository,
            &opened.key.key,
            &manifest,
            name,
            &mut out,
        ),
        None => {
            let keyfile = match &opened.key.location {
                KeyLocation::File(p) => Some(p.display().to_string()),
                _ => None,
            };
            let repo_info = RepoInfo {
                id: hex::encode(opened.repository.id()),
                location: json_location(&loc),
                mode: opened.key.key.key_type().arg_name(),
                keyfile,
            };
            list_repository(
                &args,
                &mut opened.repository,
                &opened.key.key,
                &manifest,
                &repo_info,
                &mut out,
            )
        }
    }
}

fn read_err(e: ReadError) -> CmdError {
    CmdError::new(e.to_string())
}

fn fmt_err(e: format::FormatError) -> CmdError {
    CmdError::new(e.to_string())
}

fn io_err(e: std::io::Error) -> CmdError {
    CmdError {
        message: e.to_string(),
        exit_code: EXIT_ERROR,
    }
}

/// The repository location as borg's JSON shows it: for local repositories the absolute,
/// normalized path (Python's `os.path.abspath`).
fn json_location(loc: &rborg_repository::location::Location) -> String {
    if loc.proto != rborg_repository::location::Protocol::File
        || loc.path.starts_with('/') && !loc.path.contains("/.")
    {
        return loc.canonical_path();
    }
    let joined = match std::env::current_dir() {
        Ok(cwd) if !loc.path.starts_with('/') => format!("{}/{}", cwd.display(), loc.path),
        _ => loc.path.clone(),
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

struct RepoInfo {
    id: String,
    location: String,
    mode: &'static str,
    keyfile: Option<String>,
}

fn archive_time(entry_time: &str) -> Value {
    match parse_timestamp(entry_time).and_then(|t| format::utc_to_local(&t)) {
        Some(t) => Value::Time(t),
        None => Value::Str(entry_time.to_string()),
    }
}

/// Marks a value that is already JSON text (the `command_line` list in `--json` output).
const JSON_RAW: &str = "\u{0}JSON:";

fn list_repository(
    args: &ListArgs,
    repository: &mut dyn Repository,
    key: &rborg_crypto::Key,
    manifest: &Manifest,
    repo: &RepoInfo,
    out: &mut dyn Write,
) -> CmdResult {
    let fmt = match (&args.format, args.short) {
        (Some(f), _) => f.clone(),
        (None, true) => "{archive}{NL}".into(),
        (None, false) => "{archive:<36} {time} [{id}]{NL}".into(),
    };
    let template = Template::parse(&fmt).map_err(fmt_err)?;
    let used: Vec<String> = template.keys().map(str::to_string).collect();
    let needs_meta = used.iter().any(|k| {
        matches!(
            k.as_str(),
            "hostname" | "username" | "comment" | "bcomment" | "end" | "command_line"
        )
    });
    let mut json_archives: Vec<Vec<(String, String)>> = Vec::new();
    for (name, entry) in args.filter.select(manifest, args.consider_checkpoints)? {
        let meta = if needs_meta {
            Some(ArchiveMeta::load(repository, key, &entry.id, false).map_err(read_err)?)
        } else {
            None
        };
        let mut data: Vec<(String, Value)> = vec![
            ("archive".into(), Value::Str(name.clone())),
            ("barchive".into(), Value::Str(name.clone())),
            ("id".into(), Value::Str(hex::encode(entry.id))),
            ("name".into(), Value::Str(name.clone())),
            ("start".into(), archive_time(&entry.time)),
            ("time".into(), archive_time(&entry.time)),
        ];
        if let Some(meta) = &meta {
            let rs = |b: &[u8]| Value::Str(format::remove_surrogates(b));
            for k in &used {
                let v = match k.as_str() {
                    "hostname" => rs(&meta.hostname),
                    "username" => rs(&meta.username),
                    "comment" => rs(&meta.comment),
                    "bcomment" => Value::Str(String::from_utf8_lossy(&meta.comment).into_owned()),
                    "end" => archive_time(meta.time_end.as_deref().unwrap_or(&meta.time)),
                    "command_line" if !args.json => Value::Str(
                        meta.cmdline
                            .iter()
                            .map(|a| format::shlex_quote(&format::remove_surrogates(a)))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    "command_line" => {
                        // JSON: a list of strings, laid out as json.dumps(indent=4) nests it.
                        let list: Vec<String> = meta
                            .cmdline
                            .iter()
                            .map(|a| {
                                format!(
                                    "                {}",
                                    format::json_str(&format::remove_surrogates(a))
                                )
                            })
                            .collect();
                        let text = if list.is_empty() {
                            "[]".to_string()
                        } else {
                            format!("[\n{}\n            ]", list.join(",\n"))
                        };
                        Value::Str(format!("{JSON_RAW}{text}"))
                    }
                    _ => continue,
                };
                data.retain(|(n, _)| n != k);
                data.push((k.clone(), v));
            }
        }
        if args.json {
            data.sort_by(|a, b| a.0.cmp(&b.0));
            json_archives.push(
                data.into_iter()
                    .map(|(k, v)| {
                        let text = match &v {
                            Value::Str(s) if s.starts_with(JSON_RAW) => {
                                s[JSON_RAW.len()..].to_string()
                            }
                            v => format::json_value(v),
                        };
                        (k, text)
                    })
                    .collect(),
            );
        } else {
            let line = template
                .render(&|k: &str| {
                    if let Some(f) = format::fixed_key(k) {
                        return Some(Value::Str(f.to_string()));
                    }
                    data.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
                })
                .map_err(fmt_err)?;
            out.write_all(line.as_bytes()).map_err(io_err)?;
        }
    }
    if args.json {
        let last_modified = manifest
            .timestamp
            .as_deref()
            .and_then(parse_timestamp)
            .and_then(|t| format::utc_to_local(&t))
            .map(|t| format::json_str(&format::isoformat(&t)))
            .unwrap_or_else(|| "null".into());
        let mut s = String::from("{\n    \"archives\": [");
        for (i, a) in json_archives.iter().enumerate() {
            s.push_str(if i == 0 {
                "\n        {\n"
            } else {
                ",\n        {\n"
            });
            let body: Vec<String> = a
                .iter()
                .map(|(k, v)| format!("            {}: {}", format::json_str(k), v))
                .collect();
            s.push_str(&body.join(",\n"));
            s.push_str("\n        }");
        }
        s.push_str(if json_archives.is_empty() {
            "],\n"
        } else {
            "\n    ],\n"
        });
        s.push_str("    \"encryption\": {\n");
        if let Some(kf) = &repo.keyfile {
            s.push_str(&format!("        \"keyfile\": {},\n", format::json_str(kf)));
        }
        s.push_str(&format!(
            "        \"mode\": {}\n    }},\n",
            format::json_str(repo.mode)
        ));
        s.push_str(&format!(
            "    \"repository\": {{\n        \"id\": {},\n        \"last_modified\": {},\n        \"location\": {}\n    }}\n}}\n",
            format::json_str(&repo.id),
            last_modified,
            format::json_str(&repo.location)
        ));
        out.write_all(s.as_bytes()).map_err(io_err)?;
    }
    Ok(EXIT_SUCCESS)
}

/// The placeholders of borg's `ItemFormatter` that rborg computes; hashes rborg has no
/// implementation of are refused rather than faked. `chunk_index` (the reference counts of
/// all archives, borg's chunks cache) is there when a key needs it.
fn item_value(
    key: &str,
    item: &Item,
    archive_name: &str,
    archive_id: &str,
    json: bool,
    chunk_index: Option<&RefCounts>,
) -> Option<Value> {
    if !json {
        if let Some(f) = format::fixed_key(key) {
            return Some(Value::Str(f.to_string()));
        }
        match key {
            "archivename" => return Some(Value::Str(archive_name.to_string())),
            "archiveid" => return Some(Value::Str(archive_id.to_string())),
            _ => {}
        }
    }
    let mode = item.mode.unwrap_or(0);
    let mut filemode = format::filemode(mode);
    let item_type = filemode[..1].to_string();
    let source = item
        .source
        .as_deref()
        .map(format::remove_surrogates)
        .unwrap_or_default();
    let mut extra = String::new();
    if !source.is_empty() {
        if item_type == "l" {
            extra = format!(" -> {source}");
        } else {
            filemode = format!("h{}", &filemode[1..]);
            extra = format!(" link to {source}");
        }
    }
    let text = |b: &Option<Vec<u8>>| {
        b.as_deref()
            .filter(|b| !b.is_empty())
            .map(format::remove_surrogates)
    };
    let time = |t: Option<i64>| {
        t.or(item.mtime)
            .and_then(format::ns_to_local)
            .map(Value::Time)
    };
    Some(match key {
        "type" => Value::Str(item_type),
        "mode" => Value::Str(filemode),
        "user" => text(&item.user)
            .map(Value::Str)
            .unwrap_or(Value::Int(item.uid.map(i128::from).unwrap_or(0))),
        "group" => text(&item.group)
            .map(Value::Str)
            .unwrap_or(Value::Int(item.gid.map(i128::from).unwrap_or(0))),
        "uid" => Value::Int(item.uid.map(i128::from).unwrap_or(0)),
        "gid" => Value::Int(item.gid.map(i128::from).unwrap_or(0)),
        "path" => Value::Str(format::remove_surrogates(&item.path)),
        "bpath" if !json => Value::Str(String::from_utf8_lossy(&item.path).into_owned()),
        "extra" if !json => Value::Str(extra),
        "health" if !json => Value::Str(
            if item.chunks_healthy.is_some() {
                "broken"
            } else {
                "healthy"
            }
            .to_string(),
        ),
        "healthy" if json => Value::Bool(item.chunks_healthy.is_none()),
        "source" | "linktarget" => Value::Str(source),
        "flags" => Value::Int(item.bsdflags.map(i128::from).unwrap_or(0)),
        "size" => Value::Int(i128::from(item.get_size(false))),
        "csize" => Value::Int(i128::from(item.get_size(true))),
        "num_chunks" => Value::Int(item.chunks.as_ref().map(|c| c.len()).unwrap_or(0) as i128),
        // borg's `calculate_unique_chunks` / `calculate_dsize` / `calculate_dcsize`: the
        // chunks only this item's archive references once
        "unique_chunks" | "dsize" | "dcsize" => {
            let index = chunk_index?;
            let unique = item.chunks.iter().flatten().filter_map(|c| {
                index
                    .get(&c.id)
                    .filter(|r| r.refcount == 1)
                    .map(|r| (c.size, r.csize))
            });
            Value::Int(match key {
                "unique_chunks" => unique.count() as i128,
                "dsize" => unique.map(|(s, _)| i128::from(s)).sum(),
                _ => unique.map(|(_, c)| i128::from(c)).sum(),
            })
        }
        "mtime" => time(item.mtime)?,
        "ctime" => time(item.ctime)?,
        "atime" => time(item.atime)?,
        "isomtime" => Value::Str(format::isoformat(&format::ns_to_local(item.mtime?)?)),
        "isoctime" => time(item.ctime).map(|v| match v {
            Value::Time(t) => Value::Str(format::isoformat(&t)),
            v => v,
        })?,
        "isoatime" => time(item.atime).map(|v| match v {
            Value::Time(t) => Value::Str(format::isoformat(&t)),
            v => v,
        })?,
        _ => return None,
    })
}

/// Keys `get_item_data` always produces in JSON Lines mode, in borg's order.
const JSON_BASE_KEYS: &[&str] = &[
    "type",
    "mode",
    "user",
    "group",
    "uid",
    "gid",
    "path",
    "healthy",
    "source",
    "linktarget",
    "flags",
];
/// borg's `ItemFormatter.call_keys` that rborg computes.
const CALL_KEYS: &[&str] = &[
    "size",
    "csize",
    "num_chunks",
    "unique_chunks",
    "dsize",
    "dcsize",
    "isomtime",
    "isoctime",
    "isoatime",
    "mtime",
    "ctime",
    "atime",
];
/// Call keys that need data rborg does not compute in `list` (the chunks cache for the
/// deduplicated sizes; hash algorithms without an implementation here).
const UNSUPPORTED_KEYS: &[&str] = &[
    "md5", "sha1", "sha3_224", "sha3_256", "sha3_384", "sha3_512",
];
/// Content hash keys rborg computes.
const HASH_KEYS: &[&str] = &[
    "sha224", "sha256", "sha384", "sha512", "blake2b", "blake2s", "xxh64",
];

fn list_archive(
    ctx: &Context,
    args: &ListArgs,
    repository: &mut dyn Repository,
    key: &rborg_crypto::Key,
    manifest: &Manifest,
    name: &str,
    out: &mut dyn Write,
) -> CmdResult {
    let fmt = match (&args.format, args.short) {
        (Some(f), _) => f.clone(),
        (None, true) => "{path}{NL}".into(),
        (None, false) => "{mode} {user:6} {group:6} {size:8} {mtime} {path}{extra}{NL}".into(),
    };
    let template = Template::parse(&fmt).map_err(fmt_err)?;
    let used: Vec<&str> = template.keys().collect();
    if let Some(k) = used.iter().find(|k| UNSUPPORTED_KEYS.contains(k)) {
        return Err(CmdError::new(format!(
            "format key {{{k}}} is not supported by rborg list yet"
        )));
    }
    let options = args.exclusion.load()?;
    let matcher =
        PatternMatcher::build(&options, &args.paths).map_err(|e| CmdError::new(e.to_string()))?;
    let chunk_index = if used
        .iter()
        .any(|k| matches!(*k, "unique_chunks" | "dsize" | "dcsize"))
    {
        Some(RefCounts::build(repository, key, manifest).map_err(read_err)?)
    } else {
        None
    };
    let entry = manifest
        .archives
        .get(name)
        .ok_or_else(|| CmdError::new(format!("Archive {name} does not exist")))?;
    let meta = ArchiveMeta::load(repository, key, &entry.id, false).map_err(read_err)?;
    let archive_name = format::remove_surrogates(&meta.name);
    let archive_id = hex::encode(entry.id);
    let consider_parts = ctx.common.consider_part_files;
    let hash_keys: Vec<&str> = HASH_KEYS
        .iter()
        .copied()
        .filter(|k| used.contains(k))
        .collect();
    let selected =
        |item: &Item| (consider_parts || item.part.is_none()) && matcher.matches(&item.path);
    let mut emit = |item: &Item, hashes: &[(&str, String)]| -> Result<(), CmdError> {
        let line = if args.json_lines {
            let keys = JSON_BASE_KEYS
                .iter()
                .chain(CALL_KEYS.iter().filter(|k| used.contains(k)));
            let mut fields: Vec<String> = keys
                .filter_map(|k| {
                    item_value(
                        k,
                        item,
                        &archive_name,
                        &archive_id,
                        true,
                        chunk_index.as_ref(),
                    )
                    .map(|v| format!("{}: {}", format::json_str(k), format::json_value(&v)))
                })
                .collect();
            fields.extend(
                hashes
                    .iter()
                    .map(|(k, h)| format!("{}: {}", format::json_str(k), format::json_str(h))),
            );
            format!("{{{}}}\n", fields.join(", "))
        } else {
            template
                .render(&|k: &str| {
                    if let Some((_, h)) = hashes.iter().find(|(n, _)| *n == k) {
                        return Some(Value::Str(h.clone()));
                    }
                    item_value(
                        k,
                        item,
                        &archive_name,
                        &archive_id,
                        false,
                        chunk_index.as_ref(),
                    )
                })
                .map_err(fmt_err)?
        };
        out.write_all(line.as_bytes()).map_err(io_err)
    };
    if hash_keys.is_empty() {
        for item in ItemIter::new(repository, key, meta.items.clone()) {
            let item = item.map_err(read_err)?;
            if selected(&item) {
                emit(&item, &[])?;
            }
        }
    } else {
        // Hashing reads content chunks from the same repository the item stream comes from,
        // so the items are read first (borg's `hash_item` in `ItemFormatter`).
        let items: Vec<Item> = ItemIter::new(repository, key, meta.items.clone())
            .collect::<Result<_, _>>()
            .map_err(read_err)?;
        for item in items.iter().filter(|i| selected(i)) {
            let mut hashes = Vec::new();
            for k in &hash_keys {
                let digest = match (&item.chunks, ContentHash::from_name(k)) {
                    (Some(chunks), Some(algo)) => algo
                        .hexdigest(ContentReader::new(repository, key, chunks))
                        .map_err(io_err)?,
                    _ => String::new(),
                };
                hashes.push((*k, digest));
            }
            emit(item, &hashes)?;
        }
    }
    Ok(EXIT_SUCCESS)
}
