//! `borg config`: get, set, delete and list the repository's config values.

use clap::Args;

use super::common::{CmdError, CmdResult, Context, EXIT_ERROR, EXIT_SUCCESS, EXIT_WARNING};
use super::open::{location, open_repository, LockMode};

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
    if args.cache {
        return Err(CmdError::new(
            "borg config --cache is not supported by this rborg version yet.",
        ));
    }
    let (section, name) = if args.list {
        (String::from("repository"), String::new())
    } else {
        let Some(full) = args.name.as_deref() else {
            ctx.log.error("No config key name was provided.");
            return Ok(EXIT_ERROR);
        };
        match full.split_once('.') {
            Some((s, n)) if !n.contains('.') => (s.to_string(), n.to_string()),
            _ => ("repository".to_string(), full.to_string()),
        }
    };
    let loc = location(args.location.as_deref())?;
    let mut repository = open_repository(ctx, &loc, LockMode::Exclusive)?;
    if !args.list && section != "repository" {
        return Err(CmdError::new("Invalid section"));
    }
    if args.delete {
        repository
            .config_mut()
            .delete(&name)
            .map_err(|e| CmdError::new(e.to_string()))?;
        repository.save_config()?;
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
        match repository.config().get(&name) {
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
