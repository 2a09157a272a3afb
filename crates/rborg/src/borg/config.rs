//! `borg config`: get, set, delete and list the repository's config values.

use clap::Args;

use super::common::{CmdError, CmdResult, Context, EXIT_ERROR, EXIT_SUCCESS, EXIT_WARNING};
use super::open::{location, open_repository, open_with_manifest, LockMode};
use rborg_archive::cache::config::Ini;
use rborg_archive::manifest::Operation;
use rborg_archive::Manifest;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// get and set values from the repo cache
    #[arg(short = 'c', long)]
    cache: bool,
    /// delete the key from the config file
    #[arg(short = 'd', long, conflicts_with = "list")]
    delete: bool,
    /// list the configuration of the repo
    #[arg(short = 'l', long)]
    list: bool,
    /// repository to configure
    #[arg(value_name = "REPOSITORY")]
    location: Option<String>,
    /// name of config key
    #[arg(value_name = "NAME")]
    name: Option<String>,
    /// new value for key
    #[arg(value_name = "VALUE")]
    value: Option<String>,
}

/// The keys `borg config --list` prints, in its order.
const LISTED_KEYS: [&str; 7] = [
    "version",
    "segments_per_dir",
    "max_segment_size",
    "storage_quota",
    "additional_free_space",
    "append_only",
    "id",
];

pub fn run(ctx: &mut Context, args: ConfigArgs) -> CmdResult {
    let (section, name) = if args.list {
        (String::from("repository"), String::new())
    } else {
        let Some(full) = args.name.as_deref() else {
            ctx.log.error("No config key name was provided.");
            return Ok(EXIT_ERROR);
        };
        match full.split_once('.') {
            Some((s, n)) if !n.contains('.') => (s.to_string(), n.to_string()),
            _ => (
                if args.cache { "cache" } else { "repository" }.to_string(),
                full.to_string(),
            ),
        }
    };
    let loc = location(args.location.as_deref())?;
    if args.cache {
        return run_cache(ctx, &loc, &args, &section, &name);
    }
    let mut repository = open_repository(ctx, &loc, LockMode::Exclusive)?;
    let repository = repository.local_mut("borg config")?;
    if !args.list && section != "repository" {
        return Err(CmdError::new("Invalid section"));
    }
    if args.delete {
        repository
            .config_mut()
            .delete(&name)
            .map_err(|e| CmdError::new(e.to_string()))?;
        repository.save_config()?;
        // borg removes the option from the file; the repository layer writes every known
        // key back with its default, so take it out of the file again
        let path = repository.path().join("config");
        let text = std::fs::read_to_string(&path)?;
        if let Ok(mut ini) = Ini::parse(&text) {
            if ini.remove("repository", &name).is_some() {
                let tmp = repository.path().join("config.tmp");
                std::fs::write(&tmp, ini.to_text())?;
                std::fs::rename(&tmp, &path)?;
            }
        }
    } else if args.list {
        println!("[repository]");
        let config = repository.config();
        for key in LISTED_KEYS {
            let value = config.get(key).ok_or_else(|| {
                CmdError::new(format!(
                    "The repository config is missing the {key} key which has no default value"
                ))
            })?;
            println!("{key} = {value}");
        }
        if let Some(v) = config.get("last_segment_checked") {
            println!("last_segment_checked = {v}");
        }
    } else if let Some(value) = args.value.as_deref() {
        repository
            .config_mut()
            .set(&name, value)
            .map_err(|e| CmdError::new(e.to_string()))?;
        repository.save_config()?;
    } else {
        // borg reads the option from the file: a deleted one is missing, default or not
        let text = std::fs::read_to_string(repository.path().join("config"))?;
        let in_file = Ini::parse(&text)
            .ok()
            .is_some_and(|ini| ini.get("repository", &name).is_some());
        match repository.config().get(&name).filter(|_| in_file) {
            Some(v) => println!("{v}"),
            None => {
                eprintln!("No option '{name}' in section: '{section}'");
                return Ok(EXIT_WARNING);
            }
        }
    }
    repository.close()?;
    Ok(EXIT_SUCCESS)
}

/// `borg config --cache`: get, set (only `previous_location`, a valid location) or delete a
/// value of the client cache's config (borg's `cache_validate`, `CacheConfig`).
fn run_cache(
    ctx: &mut Context,
    loc: &rborg_repository::location::Location,
    args: &ConfigArgs,
    section: &str,
    name: &str,
) -> CmdResult {
    let mut opened = open_with_manifest(ctx, loc, LockMode::Exclusive, &[Operation::Write])?;
    let location_text = opened.repository.path().display().to_string();
    let key = opened.key.key.clone();
    let manifest = Manifest::load(
        &mut opened.repository,
        &key,
        &[Operation::Write],
        &location_text,
    )?;
    let (mut cache, _) = super::info::open_cache(
        ctx,
        &mut opened.repository,
        &key,
        &manifest,
        &location_text,
        "d",
    )?;
    if args.list {
        // borg lists the [repository] keys of the cache config, which has none
        println!("[repository]");
        for key in LISTED_KEYS {
            println!("{key} = False");
        }
        return Ok(EXIT_SUCCESS);
    }
    let validate = |check: Option<&str>| -> Result<(), CmdError> {
        if section != "cache" {
            return Err(CmdError::new("Invalid section"));
        }
        if name != "previous_location" {
            return Err(CmdError::new("Invalid name"));
        }
        if let Some(v) = check {
            location(Some(v))?;
        }
        Ok(())
    };
    let err = super::info::cache_error;
    if args.delete {
        validate(None)?;
        cache.config_remove(section, name).map_err(err)?;
    } else if let Some(value) = args.value.as_deref() {
        validate(Some(value))?;
        cache.config_set(section, name, value).map_err(err)?;
    } else {
        match cache.config_get(section, name) {
            Some(v) => println!("{v}"),
            None => {
                eprintln!("No option '{name}' in section: '{section}'");
                return Ok(EXIT_WARNING);
            }
        }
    }
    Ok(EXIT_SUCCESS)
}
