//! `borg rename`: give an archive a new name (borg 1.2.4 `archiver.py` `do_rename`; the
//! metadata rewrite is `rborg_archive::delete::rename_archive`).

use clap::Args;
use rborg_archive::delete::rename_archive;
use rborg_archive::manifest::Operation;
use rborg_archive::security::SecurityDir;
use rborg_archive::Manifest;
use rborg_crypto::paths::std_env;
use rborg_repository::Repository;

use super::common::{CmdError, CmdResult, Context, EXIT_SUCCESS};
use super::open::{location, open_with_manifest, LockMode};

#[derive(Debug, Args)]
pub struct RenameArgs {
    /// archive to rename
    #[arg(value_name = "ARCHIVE")]
    location: String,
    /// the new archive name to use
    #[arg(value_name = "NEWNAME")]
    name: String,
}

pub fn run(ctx: &mut Context, args: RenameArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let Some(old) = loc.archive.clone() else {
        return Err(CmdError::new("No archive specified."));
    };
    if args.name.contains('/') {
        return Err(CmdError::new(format!(
            "argument NEWNAME: Invalid archive name: \"{}\" [/ not allowed]",
            args.name
        )));
    }
    let mut opened = open_with_manifest(ctx, &loc, LockMode::Exclusive, &[Operation::Check])?;
    let location_text = opened.repository.path().display().to_string();
    let key = opened.key.key;
    let repo = &mut opened.repository;
    let mut manifest = Manifest::load(repo, &key, &[Operation::Check], &location_text)?;
    let security = SecurityDir::open(&std_env, &repo.id())?;
    rename_archive(
        repo,
        &key,
        &mut manifest,
        &old,
        &args.name,
        security.nonce_file(),
    )
    .map_err(|e| CmdError::new(e.to_string()))?;
    manifest.write(repo, &key, security.nonce_file())?;
    repo.commit(false, 0.1)?;
    security.remember_manifest(&location_text, key.key_type(), &manifest)?;
    Ok(EXIT_SUCCESS)
}
