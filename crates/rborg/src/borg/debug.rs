//! `borg debug ...`: low-level access to repository objects, with borg 1.2's exact arguments
//! and output.

use clap::{Args, Subcommand};
use rborg_archive::archive::fetch_object;
use rborg_archive::keys::load_key;
use rborg_archive::refcount::RefCounts;
use rborg_archive::ArchiveMeta;
use rborg_archive::MANIFEST_ID;
use rborg_compress::MAX_DATA_SIZE;
use rborg_crypto::paths::std_env;
use rborg_crypto::Key;
use rborg_repository::segment::{TAG_COMMIT, TAG_DELETE, TAG_PUT};
use rborg_repository::{ObjectId, Repository};
use rmpv::Value;

use super::common::{
    CmdError, CmdResult, Context, InteractivePassphrase, EXIT_ERROR, EXIT_SUCCESS,
};
use super::open::{location, open_repository, AnyRepository, LockMode};

/// How many IDs one `list`/`scan` call returns (borg's `LIST_SCAN_LIMIT`).
const LIST_SCAN_LIMIT: usize = 100_000;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// get object contents from the repository and write it into file
    GetObj(ObjArgs),
    /// put file contents into the repository
    PutObj(ObjArgs),
    /// delete the objects with the given IDs from the repo
    DeleteObj(DeleteObjArgs),
    /// dump repository hints
    DumpHints(DumpHintsArgs),
    /// dump (decrypted, decompressed) repo objects, repo index MUST be current/correct
    DumpRepoObjs(DumpRepoObjsArgs),
    /// search for byte sequences in repo objects, repo index MUST be current/correct
    SearchRepoObjs(SearchRepoObjsArgs),
    /// show system infos for debugging / bug reports (debug)
    Info,
    /// dump (decrypted, decompressed) archive items metadata (not: data)
    DumpArchiveItems(ArchiveArgs),
    /// dump decoded archive metadata (not: data)
    DumpArchive(DumpArchiveArgs),
    /// dump decoded repository metadata
    DumpManifest(DumpHintsArgs),
    /// compute id-hash for some file content
    IdHash(IdHashArgs),
    /// show refcount for object from repository (debug)
    RefcountObj(RefcountObjArgs),
    /// convert Borg profile to Python profile (debug)
    ConvertProfile(ConvertProfileArgs),
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// archive to dump
    #[arg(value_name = "ARCHIVE")]
    location: String,
}

#[derive(Debug, Args)]
pub struct DumpArchiveArgs {
    /// archive to dump
    #[arg(value_name = "ARCHIVE")]
    location: String,
    /// file to dump data into
    #[arg(value_name = "PATH")]
    path: String,
}

#[derive(Debug, Args)]
pub struct IdHashArgs {
    /// repository to use
    #[arg(value_name = "REPOSITORY")]
    location: String,
    /// content for which the id-hash shall get computed
    #[arg(value_name = "PATH")]
    path: String,
}

#[derive(Debug, Args)]
pub struct SearchRepoObjsArgs {
    /// repository to search
    #[arg(value_name = "REPOSITORY")]
    location: String,
    /// term to search the repo for, either 0x1234abcd hex term or a string
    #[arg(value_name = "WANTED")]
    wanted: String,
}

#[derive(Debug, Args)]
pub struct ConvertProfileArgs {
    /// Borg profile
    #[arg(value_name = "INPUT")]
    input: String,
    /// Output file
    #[arg(value_name = "OUTPUT")]
    output: String,
}

#[derive(Debug, Args)]
pub struct ObjArgs {
    /// repository to use
    #[arg(value_name = "REPOSITORY")]
    location: String,
    /// hex object ID
    #[arg(value_name = "ID")]
    id: String,
    /// file to read from / write to
    #[arg(value_name = "PATH")]
    path: String,
}

#[derive(Debug, Args)]
pub struct DeleteObjArgs {
    /// repository to use
    #[arg(value_name = "REPOSITORY")]
    location: String,
    /// hex object ID(s) to delete from the repo
    #[arg(value_name = "IDs", required = true)]
    ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RefcountObjArgs {
    /// repository to use
    #[arg(value_name = "REPOSITORY")]
    location: String,
    /// hex object ID(s) to show refcounts for
    #[arg(value_name = "IDs", required = true)]
    ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DumpHintsArgs {
    /// repository to dump
    #[arg(value_name = "REPOSITORY")]
    location: String,
    /// file to dump data into
    #[arg(value_name = "PATH")]
    path: String,
}

#[derive(Debug, Args)]
pub struct DumpRepoObjsArgs {
    /// dump all segment file contents, including deleted/uncommitted objects and commits.
    #[arg(long)]
    ghost: bool,
    /// used together with --ghost: limit processing to given segment.
    #[arg(long, value_name = "SEG")]
    segment: Option<u32>,
    /// used together with --ghost: limit processing to given offset.
    #[arg(long, value_name = "OFFS")]
    offset: Option<u32>,
    /// repository to dump
    #[arg(value_name = "REPOSITORY")]
    location: String,
}

pub fn run(ctx: &mut Context, cmd: DebugCommand) -> CmdResult {
    match cmd {
        DebugCommand::GetObj(a) => get_obj(ctx, a),
        DebugCommand::PutObj(a) => put_obj(ctx, a),
        DebugCommand::DeleteObj(a) => delete_obj(ctx, a),
        DebugCommand::DumpHints(a) => dump_hints(ctx, a),
        DebugCommand::DumpRepoObjs(a) => dump_repo_objs(ctx, a),
        DebugCommand::SearchRepoObjs(a) => search_repo_objs(ctx, a),
        DebugCommand::Info => info(),
        DebugCommand::DumpArchiveItems(a) => dump_archive_items(ctx, a),
        DebugCommand::DumpArchive(a) => dump_archive(ctx, a),
        DebugCommand::DumpManifest(a) => dump_manifest(ctx, a),
        DebugCommand::IdHash(a) => id_hash(ctx, a),
        DebugCommand::RefcountObj(a) => refcount_obj(ctx, a),
        DebugCommand::ConvertProfile(a) => convert_profile(a),
    }
}

/// The local repository behind `repository`: segment files and hints exist only there
/// (borg's remote repository object lacks these internals as well).
fn local_only<'r>(
    repository: &'r mut AnyRepository,
    what: &str,
) -> Result<&'r mut rborg_repository::LocalRepository, CmdError> {
    repository.as_local_mut().ok_or_else(|| {
        CmdError::new(format!(
            "borg debug {what} only works on local repositories"
        ))
    })
}

/// Parses a 64-digit hex ID, with borg's message when it is not one.
fn parse_id(hex_id: &str) -> Result<ObjectId, String> {
    let bytes = hex::decode(hex_id).map_err(|_| "Non-hexadecimal digit found".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "id must be 256bits or 64 hex digits".to_string())
}

fn get_obj(ctx: &mut Context, args: ObjArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let mut repository = open_repository(ctx, &loc, LockMode::Shared)?;
    let id = match parse_id(&args.id) {
        Ok(id) => id,
        Err(e) => {
            println!("object id {} is invalid [{e}].", args.id);
            return Ok(EXIT_ERROR);
        }
    };
    let data = match repository.get(&id) {
        Ok(d) => d,
        Err(rborg_repository::Error::ObjectNotFound { .. }) => {
            println!("object {} not found.", args.id);
            return Ok(EXIT_ERROR);
        }
        Err(e) => return Err(e.into()),
    };
    std::fs::write(&args.path, data)?;
    println!("object {} fetched.", args.id);
    Ok(EXIT_SUCCESS)
}

fn put_obj(ctx: &mut Context, args: ObjArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let mut repository = open_repository(ctx, &loc, LockMode::Exclusive)?;
    let data = std::fs::read(&args.path)?;
    let id = match parse_id(&args.id) {
        Ok(id) => id,
        Err(e) => {
            println!("object id {} is invalid [{e}].", args.id);
            return Ok(EXIT_ERROR);
        }
    };
    repository.put(&id, &data)?;
    println!("object {} put.", args.id);
    repository.commit(false, rborg_repository::DEFAULT_COMPACT_THRESHOLD)?;
    repository.close()?;
    Ok(EXIT_SUCCESS)
}

fn delete_obj(ctx: &mut Context, args: DeleteObjArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let mut repository = open_repository(ctx, &loc, LockMode::Exclusive)?;
    let mut modified = false;
    for hex_id in &args.ids {
        // borg only checks that the ID is hex here, not its length.
        let Ok(id) = hex::decode(hex_id) else {
            println!("object id {hex_id} is invalid.");
            continue;
        };
        let found = match <ObjectId>::try_from(id.as_slice()) {
            // a remote repository deletes asynchronously and reports a missing object only
            // later, so look first (borg waits for the reply of this one delete)
            Ok(id) if !repository.contains(&id)? => false,
            Ok(id) => match repository.delete(&id) {
                Ok(()) => true,
                Err(rborg_repository::Error::ObjectNotFound { .. }) => false,
                Err(e) => return Err(e.into()),
            },
            Err(_) => false,
        };
        if found {
            modified = true;
            println!("object {hex_id} deleted.");
        } else {
            println!("object {hex_id} not found.");
        }
    }
    if modified {
        repository.commit(false, rborg_repository::DEFAULT_COMPACT_THRESHOLD)?;
    }
    repository.close()?;
    println!("Done.");
    Ok(EXIT_SUCCESS)
}

fn dump_hints(ctx: &mut Context, args: DumpHintsArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let mut repository = open_repository(ctx, &loc, LockMode::Exclusive)?;
    let hints = local_only(&mut repository, "dump-hints")?.hints()?;
    let map =
        |m: &std::collections::BTreeMap<u32, u32>| -> serde_json::Map<String, serde_json::Value> {
            m.iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect()
        };
    let mut shadow: Vec<_> = hints.shadow_index.iter().collect();
    shadow.sort();
    let shadow: serde_json::Map<String, serde_json::Value> = shadow
        .into_iter()
        .map(|(k, v)| (hex::encode(k), serde_json::Value::from(v.clone())))
        .collect();
    let doc = serde_json::json!({
        "segments": map(&hints.segments),
        "compact": map(&hints.compact),
        "storage_quota_use": hints.storage_quota_use,
        "shadow_index": shadow,
    });
    let text = python_json_indent4(&doc);
    if args.path == "-" {
        print!("{text}");
    } else {
        std::fs::write(&args.path, text)?;
    }
    repository.rollback()?;
    repository.close()?;
    Ok(EXIT_SUCCESS)
}

/// `json.dump(obj, fd, indent=4)` as Python writes it (no trailing newline, `", "`-free
/// separators at line ends).
fn python_json_indent4(value: &serde_json::Value) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    serde::Serialize::serialize(value, &mut ser).expect("serializing a JSON value cannot fail");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

fn dump_repo_objs(ctx: &mut Context, args: DumpRepoObjsArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let mut repository = open_repository(ctx, &loc, LockMode::Shared)?;
    let mut i = 0usize;
    if args.ghost {
        let (entries, errors) = local_only(&mut repository, "dump-repo-objs --ghost")?
            .scan_low_level(args.segment, args.offset)?;
        for e in errors {
            ctx.log.error(&e);
        }
        let first_put = entries
            .iter()
            .find(|e| e.2 == TAG_PUT)
            .and_then(|e| e.1.clone());
        let key = match first_put {
            Some(cdata) => Some(
                load_key(
                    &mut repository,
                    &cdata,
                    &mut InteractivePassphrase,
                    &std_env,
                )?
                .key,
            ),
            None => None,
        };
        for (id, cdata, tag, segment, offset) in entries {
            let (data, tag_name, id) = match tag {
                TAG_PUT => {
                    let key = key.as_ref().ok_or_else(|| CmdError::new("no key"))?;
                    (
                        decrypt_object(key, &id, cdata.as_deref().unwrap_or_default())?,
                        "put",
                        Some(id),
                    )
                }
                TAG_DELETE => (Vec::new(), "del", Some(id)),
                TAG_COMMIT => (Vec::new(), "commit", None),
                _ => continue,
            };
            write_dump(
                i,
                id.as_ref(),
                Some(tag_name),
                Some((segment, offset)),
                &data,
            )?;
            i += 1;
        }
    } else {
        let first = repository.list(Some(1), None)?;
        let Some(first) = first.first() else {
            println!("Done.");
            return Ok(EXIT_SUCCESS);
        };
        let cdata = repository.get(first)?;
        let key = load_key(
            &mut repository,
            &cdata,
            &mut InteractivePassphrase,
            &std_env,
        )?
        .key;
        let mut marker: Option<ObjectId> = None;
        loop {
            let ids = repository.scan(Some(LIST_SCAN_LIMIT), marker.as_ref())?;
            let Some(last) = ids.last().copied() else {
                break;
            };
            marker = Some(last);
            for id in ids {
                let cdata = repository.get(&id)?;
                write_dump(
                    i,
                    Some(&id),
                    None,
                    None,
                    &decrypt_object(&key, &id, &cdata)?,
                )?;
                i += 1;
            }
        }
    }
    println!("Done.");
    Ok(EXIT_SUCCESS)
}

/// Decrypts and decompresses an object; the manifest is not checked against its ID (borg
/// passes `None` for it).
fn decrypt_object(key: &Key, id: &ObjectId, cdata: &[u8]) -> Result<Vec<u8>, CmdError> {
    let give_id = (id != &MANIFEST_ID).then_some(id);
    let compressed = key.decrypt(give_id, cdata)?;
    let data = rborg_compress::decompress(&compressed, None, MAX_DATA_SIZE)
        .map_err(|e| CmdError::new(e.to_string()))?;
    if let Some(id) = give_id {
        key.assert_id(id, &data)?;
    }
    Ok(data)
}

fn write_dump(
    i: usize,
    id: Option<&ObjectId>,
    tag: Option<&str>,
    position: Option<(u32, u32)>,
    data: &[u8],
) -> Result<(), CmdError> {
    let mut name = format!("{i:08}");
    if let Some((segment, offset)) = position {
        name.push_str(&format!("_{segment}_{offset}"));
    }
    if let Some(tag) = tag {
        name.push_str(&format!("_{tag}"));
    }
    if let Some(id) = id {
        name.push_str(&format!("_{}", hex::encode(id)));
    }
    name.push_str(".obj");
    println!("Dumping {name}");
    std::fs::write(&name, data)?;
    Ok(())
}

/// `borg debug info`: borg's `sysinfo()` block, adapted to what rborg is, and the CRC and
/// process id lines.
fn info() -> CmdResult {
    let uname = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uname
            .as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    println!(
        "Platform: {} {} {} {} {}",
        field(|u| u.sysname()),
        field(|u| u.nodename()),
        field(|u| u.release()),
        field(|u| u.version()),
        field(|u| u.machine())
    );
    println!(
        "Borg: {}  Python: none (rborg {}, a Rust implementation of borg)",
        super::BORG_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("PID: {}  CWD: {cwd}", std::process::id());
    let argv: Vec<String> = std::env::args().map(|a| py_str_repr(&a)).collect();
    println!("sys.argv: [{}]", argv.join(", "));
    println!(
        "SSH_ORIGINAL_COMMAND: {}",
        std::env::var("SSH_ORIGINAL_COMMAND")
            .map(|c| py_str_repr(&c))
            .unwrap_or_else(|_| "None".into())
    );
    println!();
    println!("CRC implementation: crc32fast");
    let pid = rborg_repository::lock::ProcessId::current();
    println!(
        "Process ID: ({}, {}, {})",
        py_str_repr(&pid.host),
        pid.pid,
        pid.thread
    );
    Ok(EXIT_SUCCESS)
}

/// Python's `repr()` of a str (single quotes unless the text has one and no double quote).
fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr()` of a bytes object.
fn py_bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::from("b");
    out.push(quote as char);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push(quote as char);
    out
}

/// Python's `seq[start:end]` for possibly negative or out-of-range bounds.
fn py_slice(data: &[u8], start: i64, end: i64) -> &[u8] {
    let len = data.len() as i64;
    let norm = |i: i64| (if i < 0 { i + len } else { i }).clamp(0, len) as usize;
    let (s, e) = (norm(start), norm(end));
    if s >= e {
        &[]
    } else {
        &data[s..e]
    }
}

/// `borg debug search-repo-objs`: finds a byte string in the plaintext of every object, also
/// across the boundary of two consecutive objects in on-disk order.
fn search_repo_objs(ctx: &mut Context, args: SearchRepoObjsArgs) -> CmdResult {
    const CONTEXT: i64 = 32;
    let wanted = if let Some(h) = args.wanted.strip_prefix("hex:") {
        hex::decode(h).ok()
    } else {
        args.wanted
            .strip_prefix("str:")
            .map(|s| s.as_bytes().to_vec())
    };
    let Some(wanted) = wanted.filter(|w| !w.is_empty()) else {
        ctx.log
            .error("search term needs to be hex:123abc or str:foobar style");
        return Ok(EXIT_ERROR);
    };
    let loc = location(Some(&args.location))?;
    let mut repository = open_repository(ctx, &loc, LockMode::Shared)?;
    let first = repository.list(Some(1), None)?;
    let Some(first) = first.first() else {
        println!("Done.");
        return Ok(EXIT_SUCCESS);
    };
    let cdata = repository.get(first)?;
    let key = load_key(
        &mut repository,
        &cdata,
        &mut InteractivePassphrase,
        &std_env,
    )?
    .key;
    let finding = |info: &str, data: &[u8], offset: usize| {
        let offset = offset as i64;
        let n = wanted.len() as i64;
        let before = py_slice(data, offset - CONTEXT, offset);
        let after = py_slice(data, offset + n, offset + n + CONTEXT);
        println!(
            "{info}: {} {} {} == {} {} {}",
            hex::encode(before),
            hex::encode(&wanted),
            hex::encode(after),
            py_bytes_repr(before),
            py_bytes_repr(&wanted),
            py_bytes_repr(after)
        );
    };
    let find = |hay: &[u8]| {
        hay.windows(wanted.len())
            .position(|w| w == wanted.as_slice())
    };
    let mut marker: Option<ObjectId> = None;
    let mut last: Option<(ObjectId, Vec<u8>)> = None;
    let mut i = 0usize;
    let k = wanted.len() as i64 - 1;
    loop {
        let ids = repository.scan(Some(LIST_SCAN_LIMIT), marker.as_ref())?;
        let Some(last_id) = ids.last().copied() else {
            break;
        };
        marker = Some(last_id);
        for id in ids {
            let cdata = repository.get(&id)?;
            let data = decrypt_object(&key, &id, &cdata)?;
            let last_data: &[u8] = last.as_ref().map(|(_, d)| d.as_slice()).unwrap_or(&[]);
            // Python's `last_data[-(len-1):]` is all of it when len-1 == 0
            let tail = |extra: i64| {
                if k + extra == 0 {
                    last_data
                } else {
                    py_slice(last_data, -(k + extra), i64::MAX)
                }
            };
            let boundary: Vec<u8> = [tail(0), py_slice(&data, 0, k)].concat();
            if find(&boundary).is_some() {
                let boundary: Vec<u8> = [tail(CONTEXT), py_slice(&data, 0, k + CONTEXT)].concat();
                if let (Some(offset), Some((last_id, _))) = (find(&boundary), last.as_ref()) {
                    let info = format!("{i} {} | {}", hex::encode(last_id), hex::encode(id));
                    finding(&info, &boundary, offset);
                }
            }
            if let Some(offset) = find(&data) {
                let count = count_non_overlapping(&data, &wanted);
                finding(&format!("{i} {} #{count}", hex::encode(id)), &data, offset);
            }
            last = Some((id, data));
            i += 1;
            if i.is_multiple_of(10000) {
                println!("{i} objects processed.");
            }
        }
    }
    println!("Done.");
    Ok(EXIT_SUCCESS)
}

/// Python's `bytes.count`: non-overlapping occurrences.
fn count_non_overlapping(hay: &[u8], needle: &[u8]) -> usize {
    let mut count = 0;
    let mut at = 0;
    while at + needle.len() <= hay.len() {
        if &hay[at..at + needle.len()] == needle {
            count += 1;
            at += needle.len();
        } else {
            at += 1;
        }
    }
    count
}

/// Opens the repository of `loc` with its key and manifest, without feature checks (borg's
/// `compatibility=Manifest.NO_OPERATION_CHECK`).
fn open_for_debug(
    ctx: &Context,
    loc: &rborg_repository::location::Location,
    lock: LockMode,
) -> Result<super::open::Opened, CmdError> {
    super::open::open_with_manifest(ctx, loc, lock, &[])
}

/// The archive named in `loc`, or borg's error.
fn archive_entry(
    opened: &super::open::Opened,
    loc: &rborg_repository::location::Location,
) -> Result<(String, rborg_archive::ArchiveEntry), CmdError> {
    let name = loc
        .archive
        .clone()
        .ok_or_else(|| CmdError::new("No archive specified"))?;
    let entry = opened
        .manifest
        .archives
        .get(&name)
        .cloned()
        .ok_or_else(|| CmdError::new(format!("Archive {name} does not exist")))?;
    Ok((name, entry))
}

/// `borg debug dump-archive-items`: writes each item-stream chunk of the archive, decrypted
/// and decompressed, to `NNNNNN_<id>.items` in the current directory.
fn dump_archive_items(ctx: &mut Context, args: ArchiveArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let mut opened = open_for_debug(ctx, &loc, LockMode::Shared)?;
    let (_, entry) = archive_entry(&opened, &loc)?;
    let key = opened.key.key;
    let repo = &mut opened.repository;
    let data = fetch_object(repo, &key, &entry.id).map_err(|e| CmdError::new(e.to_string()))?;
    let meta = ArchiveMeta::decode(&key, &entry.id, &data, false)
        .map_err(|e| CmdError::new(e.to_string()))?;
    for (i, item_id) in meta.items.iter().enumerate() {
        let data = fetch_object(repo, &key, item_id).map_err(|e| CmdError::new(e.to_string()))?;
        let name = format!("{i:06}_{}.items", hex::encode(item_id));
        println!("Dumping {name}");
        std::fs::write(&name, data)?;
    }
    println!("Done.");
    Ok(EXIT_SUCCESS)
}

/// Writes `text` to `path`, or to stdout for `-` (borg's `dash_open`).
fn write_dash(path: &str, text: &str) -> Result<(), CmdError> {
    if path == "-" {
        print!("{text}");
    } else {
        std::fs::write(path, text)?;
    }
    Ok(())
}

/// `borg debug dump-archive`: the manifest entry, metadata and all items of an archive as
/// JSON, with bytes shown as borg's `prepare_dump_dict` shows them.
fn dump_archive(ctx: &mut Context, args: DumpArchiveArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let mut opened = open_for_debug(ctx, &loc, LockMode::Shared)?;
    let (name, entry) = archive_entry(&opened, &loc)?;
    let key = opened.key.key;
    let repo = &mut opened.repository;
    let indented = |v: &Value| {
        pyjson::dumps(v, 4)
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
            .trim_end_matches('\n')
            .to_string()
    };
    let manifest_entry = Value::Map(vec![
        (Value::from("id"), Value::Binary(entry.id.to_vec())),
        (
            Value::from("time"),
            Value::Binary(entry.time.clone().into_bytes()),
        ),
    ]);
    let data = fetch_object(repo, &key, &entry.id).map_err(|e| CmdError::new(e.to_string()))?;
    let meta_value =
        rborg_crypto::msgpack::unpack(&data).map_err(|e| CmdError::new(e.to_string()))?;
    let meta = ArchiveMeta::decode(&key, &entry.id, &data, false)
        .map_err(|e| CmdError::new(e.to_string()))?;
    let mut out = String::from("{\n");
    out.push_str(&format!(
        "    \"_name\": {},\n",
        pyjson::dumps(&Value::from(name.as_str()), 4)
    ));
    out.push_str("    \"_manifest_entry\":\n");
    out.push_str(&indented(&manifest_entry));
    out.push_str(",\n    \"_meta\":\n");
    out.push_str(&indented(&meta_value));
    out.push_str(",\n    \"_items\": [\n");
    let mut stream = Vec::new();
    for item_id in &meta.items {
        stream.extend(fetch_object(repo, &key, item_id).map_err(|e| CmdError::new(e.to_string()))?);
    }
    let mut cursor = std::io::Cursor::new(stream.as_slice());
    let mut first = true;
    while (cursor.position() as usize) < stream.len() {
        let item = rmpv::decode::read_value(&mut cursor)
            .map_err(|e| CmdError::new(format!("item stream: {e}")))?;
        if !first {
            out.push_str(",\n");
        }
        first = false;
        out.push_str(&indented(&item));
    }
    out.push_str("\n    ]\n}\n");
    write_dash(&args.path, &out)?;
    Ok(EXIT_SUCCESS)
}

/// `borg debug dump-manifest`: the decrypted manifest as JSON (`json.dump(indent=4)`).
fn dump_manifest(ctx: &mut Context, args: DumpHintsArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let mut opened = open_for_debug(ctx, &loc, LockMode::Shared)?;
    let key = opened.key.key;
    let cdata = opened.repository.get(&MANIFEST_ID)?;
    let data = decrypt_object(&key, &MANIFEST_ID, &cdata)?;
    let value = rborg_crypto::msgpack::unpack(&data).map_err(|e| CmdError::new(e.to_string()))?;
    write_dash(&args.path, &pyjson::dumps(&value, 4))?;
    Ok(EXIT_SUCCESS)
}

/// `borg debug id-hash`: the key's ID hash of a file's content.
fn id_hash(ctx: &mut Context, args: IdHashArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let opened = open_for_debug(ctx, &loc, LockMode::Shared)?;
    let data = std::fs::read(&args.path)?;
    println!("{}", hex::encode(opened.key.key.id_hash(&data)));
    Ok(EXIT_SUCCESS)
}

/// `borg debug refcount-obj`: reference counts from the chunks index (rebuilt from the
/// archives, which is what borg's chunks cache holds after a sync).
fn refcount_obj(ctx: &mut Context, args: RefcountObjArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let mut opened = open_for_debug(ctx, &loc, LockMode::Exclusive)?;
    let key = opened.key.key;
    let refs = RefCounts::build(&mut opened.repository, &key, &opened.manifest)
        .map_err(|e| CmdError::new(e.to_string()))?;
    for hex_id in &args.ids {
        let Ok(id) = hex::decode(hex_id) else {
            println!("object id {hex_id} is invalid.");
            continue;
        };
        match <ObjectId>::try_from(id.as_slice())
            .ok()
            .and_then(|id| refs.get(&id))
        {
            Some(r) => println!(
                "object {hex_id} has {} referrers [info from chunks cache].",
                r.refcount
            ),
            None => println!("object {hex_id} not found [info from chunks cache]."),
        }
    }
    Ok(EXIT_SUCCESS)
}

/// `borg debug convert-profile`: turns a profile written by `--debug-profile FILE` (msgpack,
/// borg's format) into Python's `marshal` format that `pstats.Stats` loads.
fn convert_profile(args: ConvertProfileArgs) -> CmdResult {
    let data = std::fs::read(&args.input)?;
    let value = rborg_crypto::msgpack::unpack(&data).map_err(|e| CmdError::new(e.to_string()))?;
    let mut out = Vec::new();
    marshal::dump(&value, &mut out);
    std::fs::write(&args.output, out)?;
    Ok(EXIT_SUCCESS)
}

/// Python's `json.dumps(prepare_dump_dict(value), indent=N)` for msgpack values as borg 1.2
/// unpacks them (every string is bytes).
mod pyjson {
    use rmpv::Value;

    /// borg's `prepare_dump_dict` for one bytes value: UTF-8 text as is, anything else (or
    /// text starting with DEL) as DEL followed by hex.
    fn decode_bytes(b: &[u8]) -> String {
        match std::str::from_utf8(b) {
            Ok(s) if !b.starts_with(b"\x7f") => s.to_string(),
            _ => format!("\u{7f}{}", hex::encode(b)),
        }
    }

    /// JSON string literal with `ensure_ascii=True` (everything outside space..tilde
    /// escaped).
    fn string(s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                ' '..='~' => out.push(c),
                c => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        out.push('"');
    }

    /// Python's `float.__repr__` for the values JSON can show.
    fn float(f: f64) -> String {
        if f.is_nan() {
            "NaN".into()
        } else if f.is_infinite() {
            if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
        } else if f == f.trunc() && f.abs() < 1e16 {
            format!("{f:.1}")
        } else {
            let s = format!("{f:?}");
            // Rust writes 1e-5 where Python writes 1e-05
            match s.split_once('e') {
                Some((m, e)) => {
                    let (sign, digits) = match e.strip_prefix('-') {
                        Some(d) => ("-", d),
                        None => ("+", e),
                    };
                    format!("{m}e{sign}{digits:0>2}")
                }
                None => s,
            }
        }
    }

    fn key(k: &Value) -> String {
        match k {
            Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            Value::Integer(i) => i.to_string(),
            Value::Boolean(b) => if *b { "true" } else { "false" }.into(),
            Value::Nil => "null".into(),
            other => other.to_string(),
        }
    }

    fn write(v: &Value, indent: usize, level: usize, out: &mut String) {
        let pad = |n: usize| " ".repeat(indent * n);
        match v {
            Value::Nil => out.push_str("null"),
            Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Integer(i) => out.push_str(&i.to_string()),
            Value::F32(f) => out.push_str(&float(f64::from(*f))),
            Value::F64(f) => out.push_str(&float(*f)),
            Value::String(s) => string(&decode_bytes(s.as_bytes()), out),
            Value::Binary(b) => string(&decode_bytes(b), out),
            Value::Array(a) if a.is_empty() => out.push_str("[]"),
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&pad(level + 1));
                    write(x, indent, level + 1, out);
                }
                out.push('\n');
                out.push_str(&pad(level));
                out.push(']');
            }
            Value::Map(m) if m.is_empty() => out.push_str("{}"),
            Value::Map(m) => {
                out.push('{');
                for (i, (k, x)) in m.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&pad(level + 1));
                    string(&key(k), out);
                    out.push_str(": ");
                    write(x, indent, level + 1, out);
                }
                out.push('\n');
                out.push_str(&pad(level));
                out.push('}');
            }
            Value::Ext(_, _) => out.push_str("null"),
        }
    }

    /// The JSON text of `v`, indented by `indent` spaces per level.
    pub fn dumps(v: &Value, indent: usize) -> String {
        let mut out = String::new();
        write(v, indent, 0, &mut out);
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn like_python() {
            let v = Value::Map(vec![
                (Value::Binary(b"a".to_vec()), Value::Array(vec![])),
                (
                    Value::Binary(b"b".to_vec()),
                    Value::Array(vec![Value::from(1), Value::Binary(vec![0xff, 0])]),
                ),
                (Value::Binary(b"c".to_vec()), Value::F64(1e-5)),
                (Value::Binary(b"d".to_vec()), Value::from("\u{e9}\u{1F600}")),
            ]);
            assert_eq!(
                dumps(&v, 4),
                "{\n    \"a\": [],\n    \"b\": [\n        1,\n        \"\\u007fff00\"\n    ],\n    \"c\": 1e-05,\n    \"d\": \"\\u00e9\\ud83d\\ude00\"\n}"
            );
            assert_eq!(float(2.0), "2.0");
            assert_eq!(float(0.25), "0.25");
        }
    }
}

/// Python's `marshal.dump` (format version 4, without references) for the msgpack values a
/// profile holds; msgpack arrays become tuples (borg unpacks with `use_list=False`).
mod marshal {
    use rmpv::Value;

    fn len(n: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }

    pub fn dump(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Nil | Value::Ext(_, _) => out.push(b'N'),
            Value::Boolean(true) => out.push(b'T'),
            Value::Boolean(false) => out.push(b'F'),
            Value::Integer(i) => match i.as_i64().and_then(|x| i32::try_from(x).ok()) {
                Some(x) => {
                    out.push(b'i');
                    out.extend_from_slice(&x.to_le_bytes());
                }
                None => {
                    // TYPE_LONG: sign-carrying count of 15-bit digits, little end first
                    let (neg, mut mag) = match i.as_i64() {
                        Some(x) => (x < 0, x.unsigned_abs()),
                        None => (false, i.as_u64().unwrap_or_default()),
                    };
                    let mut digits = Vec::new();
                    while mag > 0 {
                        digits.push((mag & 0x7fff) as u16);
                        mag >>= 15;
                    }
                    out.push(b'l');
                    let n = digits.len() as i32;
                    out.extend_from_slice(&(if neg { -n } else { n }).to_le_bytes());
                    for d in digits {
                        out.extend_from_slice(&d.to_le_bytes());
                    }
                }
            },
            Value::F32(f) => {
                out.push(b'g');
                out.extend_from_slice(&f64::from(*f).to_le_bytes());
            }
            Value::F64(f) => {
                out.push(b'g');
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::String(s) => {
                out.push(b'u');
                len(s.as_bytes().len(), out);
                out.extend_from_slice(s.as_bytes());
            }
            Value::Binary(b) => {
                out.push(b's');
                len(b.len(), out);
                out.extend_from_slice(b);
            }
            Value::Array(a) => {
                out.push(b'(');
                len(a.len(), out);
                for x in a {
                    dump(x, out);
                }
            }
            Value::Map(m) => {
                out.push(b'{');
                for (k, x) in m {
                    dump(k, out);
                    dump(x, out);
                }
                out.push(b'0');
            }
        }
    }
}

/// Writes the `--debug-profile FILE` profile of a run that took `elapsed`: one pstats entry
/// for the whole command (rborg has no per-function profiler), in Python's `marshal` format
/// when the name ends in `.pyprof`, else msgpack (borg's `Archiver.run`), so `borg debug
/// convert-profile` and `pstats.Stats` read it.
pub fn write_profile(
    path: &str,
    command: &str,
    elapsed: std::time::Duration,
) -> std::io::Result<()> {
    let secs = elapsed.as_secs_f64();
    let stats = Value::Map(vec![(
        Value::Array(vec![
            Value::from("rborg"),
            Value::from(0),
            Value::from(command),
        ]),
        Value::Array(vec![
            Value::from(1),
            Value::from(1),
            Value::F64(secs),
            Value::F64(secs),
            Value::Map(Vec::new()),
        ]),
    )]);
    let mut out = Vec::new();
    if path.ends_with(".pyprof") {
        marshal::dump(&stats, &mut out);
    } else {
        rmpv::encode::write_value(&mut out, &stats).map_err(std::io::Error::other)?;
    }
    std::fs::write(path, out)
}
