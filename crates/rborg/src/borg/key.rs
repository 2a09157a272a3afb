//! `borg key export|import|change-passphrase`: back up, restore and re-protect the key.

use std::io::{Read, Write};

use clap::{Args, Subcommand};
use rborg_archive::keys::{store_key, KeyLocation, PassphraseProvider};
use rborg_archive::manifest::read_manifest_object;
use rborg_archive::manifest::Operation;
use rborg_crypto::keymanager::{self, PaperKeyImport, PaperKeyState};
use rborg_crypto::paths::{find_keyfile, key_filename, std_env};
use rborg_crypto::{KeyStorage, KeyType};
use rborg_repository::location::{Location, Protocol};
use rborg_repository::Repository;

use super::common::{
    yes, CmdError, CmdResult, Context, InteractivePassphrase, EXIT_ERROR, EXIT_SUCCESS,
};
use super::open::{location, open_repository, open_with_manifest, AnyRepository, LockMode};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Export the repository key for backup
    Export(ExportArgs),
    /// Import the repository key from backup
    Import(ImportArgs),
    /// Change repository key file passphrase
    ChangePassphrase(ChangePassphraseArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Create an export suitable for printing and later type-in
    #[arg(long)]
    paper: bool,
    /// Create an html file suitable for printing and later type-in or qr scan
    #[arg(long = "qr-html")]
    qr_html: bool,
    #[arg(value_name = "REPOSITORY")]
    location: Option<String>,
    /// where to store the backup
    #[arg(value_name = "PATH")]
    path: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// interactively import from a backup done with ``--paper``
    #[arg(long)]
    paper: bool,
    #[arg(value_name = "REPOSITORY")]
    location: Option<String>,
    /// path to the backup ('-' to read from stdin)
    #[arg(value_name = "PATH")]
    path: Option<String>,
}

#[derive(Debug, Args)]
pub struct ChangePassphraseArgs {
    #[arg(value_name = "REPOSITORY")]
    location: Option<String>,
}

pub fn run(ctx: &mut Context, cmd: KeyCommand) -> CmdResult {
    match cmd {
        KeyCommand::Export(a) => export(ctx, a),
        KeyCommand::Import(a) => import(ctx, a),
        KeyCommand::ChangePassphrase(a) => change_passphrase(ctx, a),
    }
}

/// The key type of a repository, refusing unencrypted ones as borg's `KeyManager` does.
fn key_type_of(repository: &mut AnyRepository) -> Result<KeyType, CmdError> {
    let cdata = read_manifest_object(repository)?;
    let key_type = KeyType::from_manifest(&cdata)?;
    if key_type.storage() == KeyStorage::None {
        return Err(CmdError::new(
            "Keymanagement not available for unencrypted repositories.",
        ));
    }
    Ok(key_type)
}

/// The stored key text (base64 of the encrypted key blob), from the key file or the config.
fn load_keyblob(repository: &mut AnyRepository, key_type: KeyType) -> Result<String, CmdError> {
    match key_type.storage() {
        KeyStorage::Keyfile => {
            let id = repository.id();
            let path = find_keyfile(&std_env, &id)?.ok_or_else(|| {
                CmdError::new(format!(
                    "No key file for repository {} found in {}.",
                    hex::encode(id),
                    rborg_crypto::paths::keys_dir(&std_env).display()
                ))
            })?;
            let text = std::fs::read_to_string(&path)?;
            Ok(text
                .split_once('\n')
                .map(|(_, body)| body.to_string())
                .unwrap_or_default())
        }
        _ => {
            let text = String::from_utf8_lossy(&repository.load_key()?).into_owned();
            if text.is_empty() {
                return Err(CmdError::new(format!(
                    "No key entry found in the config of repository {}.",
                    repository.path().display()
                )));
            }
            Ok(text)
        }
    }
}

/// Writes to `path`, or to stdout for `-` or no path (borg's `dash_open`).
fn write_output(path: Option<&str>, data: &[u8]) -> Result<(), CmdError> {
    match path {
        None | Some("-") => {
            std::io::stdout().write_all(data)?;
            Ok(())
        }
        Some(p) => {
            if std::path::Path::new(p).is_dir() {
                return Err(CmdError::new(format!(
                    "'{p}' must be a file, not a directory"
                )));
            }
            std::fs::write(p, data)?;
            Ok(())
        }
    }
}

fn export(ctx: &mut Context, args: ExportArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    let mut repository = open_repository(ctx, &loc, LockMode::Shared)?;
    let key_type = key_type_of(&mut repository)?;
    let blob = load_keyblob(&mut repository, key_type)?;
    let id = repository.id();
    let out = if args.paper {
        keymanager::export_paperkey(&id, &blob)?.into_bytes()
    } else if args.qr_html {
        keymanager::export_qr_html(&id, &blob)
    } else {
        keymanager::export_keyfile(&id, &blob).into_bytes()
    };
    write_output(args.path.as_deref(), &out)?;
    Ok(EXIT_SUCCESS)
}

/// Stores an imported key text where the repository's mode keeps it.
fn store_keyblob(
    repository: &mut AnyRepository,
    loc: &Location,
    key_type: KeyType,
    blob: &str,
) -> Result<(), CmdError> {
    match key_type.storage() {
        KeyStorage::Keyfile => {
            let id = repository.id();
            // borg's `get_existing_or_new_target`: BORG_KEY_FILE wins, even when it does not
            // exist yet
            let from_env = std_env("BORG_KEY_FILE")
                .filter(|p| !p.is_empty())
                .map(|p| std::path::absolute(&p).unwrap_or_else(|_| p.into()));
            let found = match from_env {
                Some(p) => Ok(Some(p)),
                None => find_keyfile(&std_env, &id),
            };
            let target = match found {
                Ok(Some(existing)) => existing,
                _ => {
                    let dir = rborg_crypto::paths::keys_dir(&std_env);
                    rborg_crypto::paths::ensure_dir(&dir)?;
                    let host = (loc.proto == Protocol::Ssh)
                        .then_some(loc.host.as_deref())
                        .flatten();
                    rborg_crypto::paths::new_keyfile_target(&dir, &key_filename(&loc.path, host))
                }
            };
            std::fs::write(&target, keymanager::export_keyfile(&id, blob))?;
        }
        _ => repository.save_key(blob.as_bytes())?,
    }
    Ok(())
}

fn import(ctx: &mut Context, args: ImportArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    let mut repository = open_repository(ctx, &loc, LockMode::None)?;
    let key_type = key_type_of(&mut repository)?;
    let id = repository.id();
    let blob = if args.paper {
        if args.path.is_some() {
            ctx.log
                .error("with --paper import from file is not supported");
            return Ok(EXIT_ERROR);
        }
        match import_paper_interactively(&id)? {
            Some(blob) => blob,
            None => return Ok(EXIT_SUCCESS),
        }
    } else {
        let Some(path) = args.path.as_deref() else {
            ctx.log.error("input file to import key from expected");
            return Ok(EXIT_ERROR);
        };
        let text = if path == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        } else {
            if !std::path::Path::new(path).exists() {
                ctx.log.error(&format!("input file does not exist: {path}"));
                return Ok(EXIT_ERROR);
            }
            std::fs::read_to_string(path)?
        };
        keymanager::import_keyfile(&id, &text)?
    };
    store_keyblob(&mut repository, &loc, key_type, &blob)?;
    Ok(EXIT_SUCCESS)
}

/// borg's `import_paperkey` dialogue: prompts for the id line and each data line, re-asking on
/// a checksum error. `None` when the user aborts.
fn import_paper_interactively(repository_id: &[u8; 32]) -> Result<Option<String>, CmdError> {
    let mut importer = PaperKeyImport::new(repository_id);
    loop {
        let prompt = match importer.state() {
            PaperKeyState::NeedIdLine => "id: ".to_string(),
            PaperKeyState::NeedLine(n) => format!("{n:2}: "),
            PaperKeyState::Done(blob) => return Ok(Some(blob)),
        };
        print!("{prompt}");
        std::io::stdout().flush()?;
        // One short lock per line: the "Abort import?" question reads stdin too, and stdin's
        // lock is not reentrant.
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line.trim().is_empty() {
            if yes("Abort import? [yN]:", "BORG_ABORT_PAPER_IMPORT") {
                return Ok(None);
            }
            continue;
        }
        match importer.feed(&line) {
            Ok(PaperKeyState::Done(blob)) => return Ok(Some(blob)),
            Ok(_) => {}
            Err(rborg_crypto::Error::RepoIdMismatch) => {
                return Err(rborg_crypto::Error::RepoIdMismatch.into())
            }
            Err(e) => println!("{}", e.to_string().trim_start_matches("paper key: ")),
        }
    }
}

fn change_passphrase(ctx: &mut Context, args: ChangePassphraseArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    let mut repository = open_repository(ctx, &loc, LockMode::Exclusive)?;
    if key_type_of(&mut repository).is_err() {
        println!("This repository is not encrypted, cannot change the passphrase.");
        return Ok(EXIT_ERROR);
    }
    drop(repository);
    let mut opened = open_with_manifest(ctx, &loc, LockMode::Exclusive, &[Operation::Check])?;
    let new = InteractivePassphrase.new_passphrase()?;
    let host = (loc.proto == Protocol::Ssh)
        .then_some(loc.host.as_deref())
        .flatten();
    let stored = store_key(
        &mut opened.repository,
        &opened.key.key,
        &new,
        &opened.key.location,
        &key_filename(&loc.path, host),
        &std_env,
    )?;
    ctx.log.info("Key updated");
    if let KeyLocation::File(p) = stored {
        ctx.log.info(&format!("Key location: {}", p.display()));
    }
    opened.repository.close()?;
    Ok(EXIT_SUCCESS)
}
