//! `borg debug ...`: low-level access to repository objects, with borg 1.2's exact arguments
//! and output.

use clap::{Args, Subcommand};
use rborg_archive::keys::load_key;
use rborg_archive::MANIFEST_ID;
use rborg_compress::MAX_DATA_SIZE;
use rborg_crypto::paths::std_env;
use rborg_crypto::Key;
use rborg_repository::segment::{TAG_COMMIT, TAG_DELETE, TAG_PUT};
use rborg_repository::{ObjectId, Repository};

use super::common::{
    CmdError, CmdResult, Context, InteractivePassphrase, EXIT_ERROR, EXIT_SUCCESS,
};
use super::open::{location, open_repository, LockMode};

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
    }
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
    let hints = repository.hints()?;
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
        let (entries, errors) = repository.scan_low_level(args.segment, args.offset)?;
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
