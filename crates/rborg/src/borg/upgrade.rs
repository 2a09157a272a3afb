//! `borg upgrade --tam | --disable-tam`: switch manifest authentication on or off in the
//! manifest, the key and the security database (borg 1.2.4 `archiver.py` `do_upgrade`,
//! `docs/usage/upgrade.rst`); `--archives-tam` (borg >= 1.2.5) adds TAMs to archives. Upgrading Attic or borg 0.xx repositories (`borg upgrade` without
//! these options) is not implemented.

use clap::Args;
use rborg_archive::archive::fetch_object;
use rborg_archive::keys::{load_key, store_key, KeyLocation};
use rborg_archive::manifest::{put_metadata_object, read_manifest_object, Operation};
use rborg_archive::security::SecurityDir;
use rborg_archive::{ArchiveEntry, Manifest};
use rborg_crypto::paths::{key_filename, std_env};
use rborg_crypto::{KeyType, TamContext};
use rborg_repository::location::Protocol;
use rborg_repository::Repository;
use rmpv::Value;

use super::common::{
    CmdError, CmdResult, Context, InteractivePassphrase, EXIT_ERROR, EXIT_SUCCESS, EXIT_WARNING,
};
use super::delete::format_archive;
use super::open::{location, open_repository, LockMode};

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// do not change repository
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// rewrite repository in place, with no chance of going back to older versions of the repository.
    #[arg(long)]
    inplace: bool,
    /// Force upgrade
    #[arg(long)]
    force: bool,
    /// Enable manifest authentication (in key and cache) (Borg 1.0.9 and later).
    #[arg(long)]
    tam: bool,
    /// Disable manifest authentication (in key and cache).
    #[arg(long = "disable-tam")]
    disable_tam: bool,
    /// add TAM authentication for all archives (borg 1.2.5 and later).
    #[arg(long = "archives-tam")]
    archives_tam: bool,
    /// path to the repository to be upgraded
    #[arg(value_name = "REPOSITORY")]
    location: Option<String>,
}

pub fn run(ctx: &mut Context, args: UpgradeArgs) -> CmdResult {
    if !args.tam && !args.disable_tam && !args.archives_tam {
        let _ = (args.dry_run, args.inplace);
        return Err(CmdError::new(
            "rborg cannot upgrade Attic or borg 0.xx repositories; use borg 1.2 for that, or pass --tam / --disable-tam",
        ));
    }
    let loc = location(args.location.as_deref())?;
    let mut repository = open_repository(ctx, &loc, LockMode::Exclusive)?;
    let path = repository.path().display().to_string();
    let cdata = read_manifest_object(&mut repository)?;
    let mut unlocked = load_key(
        &mut repository,
        &cdata,
        &mut InteractivePassphrase,
        &std_env,
    )?;
    let security = SecurityDir::open(&std_env, &repository.id())?;
    let host = (loc.proto == Protocol::Ssh)
        .then_some(loc.host.as_deref())
        .flatten();
    let keyfile_name = key_filename(&loc.path, host);
    if args.archives_tam {
        let mut manifest = if args.force {
            let mut lenient = unlocked.key.clone();
            lenient.set_tam_required(false);
            Manifest::decode(&lenient, &cdata, &path)?
        } else {
            Manifest::decode(&unlocked.key, &cdata, &path)?
        };
        manifest.check_repository_compatibility(&[Operation::Check])?;
        let code = add_archive_tams(&mut repository, &unlocked.key, &mut manifest)?;
        manifest.write(&mut repository, &unlocked.key, security.nonce_file())?;
        repository.commit(false, 0.1)?;
        repository.close()?;
        return Ok(code);
    }
    if args.tam {
        // `--force` accepts a manifest without TAM although one is required (borg's
        // `force_tam_not_required`): decode with a key that does not require it
        let mut manifest = if args.force {
            let mut lenient = unlocked.key.clone();
            lenient.set_tam_required(false);
            Manifest::decode(&lenient, &cdata, &path)?
        } else {
            Manifest::decode(&unlocked.key, &cdata, &path)?
        };
        manifest.check_repository_compatibility(&[Operation::Check])?;
        if unlocked.key.key_type() == KeyType::Plaintext {
            println!("This repository is not encrypted, cannot enable TAM.");
            return Ok(EXIT_ERROR);
        }
        if !manifest.tam_verified || !manifest.tam_required() {
            println!("Manifest contents:");
            let mut archives: Vec<_> = manifest.archives.iter().collect();
            archives.sort_by_key(|(_, e)| rborg_archive::manifest::parse_timestamp(&e.time));
            for (name, entry) in archives {
                println!(
                    "{} [{}]",
                    format_archive(name, entry),
                    hex::encode(entry.id)
                );
            }
            set_config_flag(&mut manifest, "tam_required", true);
            manifest.write(&mut repository, &unlocked.key, security.nonce_file())?;
            repository.commit(false, 0.1)?;
        }
        if !unlocked.key.tam_required() {
            unlocked.key.set_tam_required(true);
            save_key(&mut repository, &unlocked, &keyfile_name)?;
        }
        if !security.tam_required() {
            security.set_tam_required(true)?;
            println!("Updated security database");
        }
    } else {
        let mut lenient = unlocked.key.clone();
        lenient.set_tam_required(false);
        let mut manifest = Manifest::decode(&lenient, &cdata, &path)?;
        if security.tam_required() {
            security.set_tam_required(false)?;
        }
        if unlocked.key.tam_required() {
            unlocked.key.set_tam_required(false);
            save_key(&mut repository, &unlocked, &keyfile_name)?;
        }
        set_config_flag(&mut manifest, "tam_required", false);
        manifest.write(&mut repository, &unlocked.key, security.nonce_file())?;
        repository.commit(false, 0.1)?;
    }
    repository.close()?;
    Ok(EXIT_SUCCESS)
}

/// `--archives-tam` (borg >= 1.2.5 `do_upgrade`): every archive metadata object without a TAM
/// is re-stored with one (a new object ID, the manifest entry updated, the old object deleted).
/// An archive whose TAM does not verify is reported and left alone, as borg does.
fn add_archive_tams(
    repository: &mut dyn Repository,
    key: &rborg_crypto::Key,
    manifest: &mut Manifest,
) -> CmdResult {
    let nonce_file = SecurityDir::open(&std_env, &repository.id())?.nonce_file();
    let mut archives: Vec<(String, ArchiveEntry)> = manifest
        .archives
        .iter()
        .map(|(n, e)| (n.clone(), e.clone()))
        .collect();
    archives.sort_by_key(|(_, e)| rborg_archive::manifest::parse_timestamp(&e.time));
    let mut code = EXIT_SUCCESS;
    for (name, entry) in archives {
        let formatted = format_archive(&name, &entry);
        let data =
            fetch_object(repository, key, &entry.id).map_err(|e| CmdError::new(e.to_string()))?;
        match rborg_crypto::verify_archive(key, &data, true) {
            Ok(v) if v.verified => println!("Archive TAM present: {formatted}"),
            Ok(v) => {
                let data = rborg_crypto::pack_and_authenticate(key, &v.value, TamContext::Archive)?;
                let new_id = key.id_hash(&data);
                put_metadata_object(repository, key, &new_id, &data, nonce_file.clone())?;
                if new_id != entry.id {
                    repository.delete(&entry.id)?;
                }
                manifest.archives.insert(
                    name,
                    ArchiveEntry {
                        id: new_id,
                        time: entry.time,
                    },
                );
                println!(
                    "Added archive TAM:   {formatted} -> [{}]",
                    hex::encode(new_id)
                );
            }
            Err(e) => {
                println!("Archive TAM invalid: {formatted}: {e}");
                code = EXIT_WARNING;
            }
        }
    }
    Ok(code)
}

/// Rewrites the key with its new `tam_required` flag where it lives (borg's
/// `key.change_passphrase(key._passphrase)`), printing what borg prints.
fn save_key(
    repository: &mut dyn Repository,
    unlocked: &rborg_archive::keys::UnlockedKey,
    keyfile_name: &str,
) -> Result<(), CmdError> {
    let stored = store_key(
        repository,
        &unlocked.key,
        &unlocked.passphrase,
        &unlocked.location,
        keyfile_name,
        &std_env,
    )?;
    println!("Key updated");
    if let KeyLocation::File(p) = stored {
        println!("Key location: {}", p.display());
    }
    Ok(())
}

/// Sets a boolean in the manifest's `config` map, replacing an existing entry.
fn set_config_flag(manifest: &mut Manifest, name: &str, value: bool) {
    match manifest
        .config
        .iter_mut()
        .find(|(k, _)| rborg_crypto::msgpack::key_bytes(k) == name.as_bytes())
    {
        Some((_, v)) => *v = Value::Boolean(value),
        None => manifest
            .config
            .push((Value::from(name), Value::Boolean(value))),
    }
}
