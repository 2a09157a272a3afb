//! Opening the repository a command names, with its key and manifest (borg's
//! `with_repository` decorator).

use rborg_archive::keys::{load_key, UnlockedKey};
use rborg_archive::manifest::{read_manifest_object, Operation};
use rborg_archive::security::SecurityDir;
use rborg_archive::Manifest;
use rborg_crypto::paths::std_env;
use rborg_repository::location::{Location, Protocol};
use rborg_repository::{LocalRepository, OpenOptions};

use super::common::{yes, CmdError, Context, InteractivePassphrase};

/// Parses a location argument (or `BORG_REPO` when absent) like borg's `location_validator`.
pub fn location(arg: Option<&str>) -> Result<Location, CmdError> {
    Ok(Location::parse(arg.unwrap_or(""))?)
}

/// How a command wants the repository locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// No lock at all (`lock=False` in borg, e.g. `break-lock`, `key import`).
    None,
    /// Shared lock, for reading.
    Shared,
    /// Exclusive lock, for writing.
    Exclusive,
}

/// Options for opening an existing repository.
pub fn open_options(ctx: &Context, lock: LockMode) -> OpenOptions {
    OpenOptions {
        exclusive: Some(lock == LockMode::Exclusive),
        lock_wait: Some(ctx.lock_wait()),
        lock: lock != LockMode::None && !ctx.common.bypass_lock,
        ..OpenOptions::default()
    }
}

/// Refuses remote locations until the RPC client exists.
pub fn require_local(loc: &Location) -> Result<(), CmdError> {
    if loc.proto == Protocol::Ssh {
        return Err(CmdError::new(format!(
            "{}: remote repositories (ssh://) are not supported by this rborg version yet; run the command on the repository's host",
            loc.canonical_path()
        )));
    }
    Ok(())
}

/// Opens the local repository at `loc`.
pub fn open_repository(
    ctx: &Context,
    loc: &Location,
    lock: LockMode,
) -> Result<LocalRepository, CmdError> {
    require_local(loc)?;
    Ok(LocalRepository::open(
        std::path::Path::new(&loc.path),
        &open_options(ctx, lock),
    )?)
}

/// A repository opened with its key and manifest.
pub struct Opened {
    pub repository: LocalRepository,
    pub key: UnlockedKey,
    pub manifest: Manifest,
}

/// Opens the repository, unlocks its key, loads and verifies the manifest for `operations`,
/// and runs the security database checks (borg's `with_repository(manifest=True)`).
pub fn open_with_manifest(
    ctx: &Context,
    loc: &Location,
    lock: LockMode,
    operations: &[Operation],
) -> Result<Opened, CmdError> {
    let mut repository = open_repository(ctx, loc, lock)?;
    let location = repository.path().display().to_string();
    let cdata = read_manifest_object(&mut repository)?;
    let key = load_key(
        &mut repository,
        &cdata,
        &mut InteractivePassphrase,
        &std_env,
    )?;
    let manifest = Manifest::decode(&key.key, &cdata, &location)?;
    manifest.check_repository_compatibility(operations)?;
    let security = SecurityDir::open(&std_env, &rborg_repository::Repository::id(&repository))?;
    security.assert_secure(&location, &manifest, &key.key, true, &mut |q, env| {
        yes(q, env)
    })?;
    ctx.log
        .debug("security: repository checks ok, allowing access");
    Ok(Opened {
        repository,
        key,
        manifest,
    })
}
