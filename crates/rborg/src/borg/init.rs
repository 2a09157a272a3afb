//! `borg init`: create a repository with a new key and an empty manifest.

use clap::Args;
use rborg_archive::init::init_repository;
use rborg_archive::keys::KeyLocation;
use rborg_crypto::paths::{key_filename, std_env};
use rborg_crypto::KeyType;
use rborg_repository::location::Protocol;
use rborg_repository::{LocalRepository, OpenOptions, Repository};

use super::common::{
    parse_file_size, CmdError, CmdResult, Context, InteractivePassphrase, EXIT_SUCCESS,
};
use super::open::{location, open_remote, AnyRepository};
use rborg_remote::OpenArgs;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// select encryption key mode **(required)**
    #[arg(short = 'e', long = "encryption", value_name = "MODE", required = true,
          value_parser = ["none", "authenticated", "authenticated-blake2", "repokey", "keyfile", "repokey-blake2", "keyfile-blake2"])]
    encryption: String,
    /// create an append-only mode repository.
    #[arg(long = "append-only")]
    append_only: bool,
    /// Set storage quota of the new repository (e.g. 5G, 1.5T). Default: no quota.
    #[arg(long = "storage-quota", value_name = "QUOTA", value_parser = parse_file_size)]
    storage_quota: Option<u64>,
    /// create the parent directories of the repository directory, if they are missing.
    #[arg(long = "make-parent-dirs")]
    make_parent_dirs: bool,
    /// repository to create
    #[arg(value_name = "REPOSITORY")]
    location: Option<String>,
}

pub fn run(ctx: &mut Context, args: InitArgs) -> CmdResult {
    let loc = location(args.location.as_deref())?;
    if loc.archive.is_some() {
        return Err(CmdError::new(format!(
            "{}: repository must not contain an archive name",
            loc.processed
        )));
    }
    let key_type = KeyType::from_arg_name(&args.encryption)
        .ok_or_else(|| CmdError::new(format!("invalid encryption mode {}", args.encryption)))?;
    let opts = OpenOptions {
        exclusive: Some(true),
        lock_wait: Some(ctx.lock_wait()),
        lock: !ctx.common.bypass_lock,
        append_only: args.append_only,
        storage_quota: args.storage_quota,
        make_parent_dirs: args.make_parent_dirs,
        ..OpenOptions::default()
    };
    let mut repository = if loc.proto == Protocol::Ssh {
        let open = OpenArgs {
            create: true,
            lock_wait: opts.lock_wait.map(|d| d.as_secs_f64()),
            lock: opts.lock,
            exclusive: Some(true),
            append_only: args.append_only,
            make_parent_dirs: args.make_parent_dirs,
            ..OpenArgs::new(&loc.path)
        };
        open_remote(ctx, &loc, &open, args.storage_quota)?
    } else {
        AnyRepository::Local(LocalRepository::create(
            std::path::Path::new(&loc.path),
            &opts,
        )?)
    };
    let path = repository.path().display().to_string();
    ctx.log
        .info(&format!("Initializing repository at \"{path}\""));
    let host = (loc.proto == Protocol::Ssh)
        .then_some(loc.host.as_deref())
        .flatten();
    let key_name = key_filename(&loc.path, host);
    let made = match init_repository(
        &mut repository,
        key_type,
        &path,
        &key_name,
        &mut InteractivePassphrase,
        &std_env,
    ) {
        Ok(made) => made,
        Err(e) => {
            // borg destroys the half-made repository when the key could not be created.
            let _ = repository.destroy();
            return Err(e.into());
        }
    };
    repository.close()?;
    if made.tam_required {
        ctx.log.warning(&format!(
            "\nBy default repositories initialized with this version will produce security\n\
             errors if written to with an older version (up to and including Borg 1.0.8).\n\n\
             If you want to use these older versions, you can disable the check by running:\n\
             borg upgrade --disable-tam {}\n\n\
             See https://borgbackup.readthedocs.io/en/stable/changes.html#pre-1-0-9-manifest-spoofing-vulnerability \
             for details about the security implications.",
            shell_quote(&path)
        ));
    }
    if key_type != KeyType::Plaintext {
        ctx.log.warning(
            "\nIMPORTANT: you will need both KEY AND PASSPHRASE to access this repo!\n\
             If you used a repokey mode, the key is stored in the repo, but you should back it up separately.\n\
             Use \"borg key export\" to export the key, optionally in printable format.\n\
             Write down the passphrase. Store both at safe place(s).\n",
        );
    }
    if let KeyLocation::File(p) = &made.key_location {
        ctx.log
            .info(&format!("Key in \"{}\" created.", p.display()));
    }
    Ok(EXIT_SUCCESS)
}

/// Python's `shlex.quote`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}
