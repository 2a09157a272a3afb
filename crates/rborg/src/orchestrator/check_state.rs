//! Which consistency checks run, and when each last ran (borgmatic's `actions/check.py`).
//!
//! A check with a `frequency` (such as `2 weeks`) is skipped until that much time has passed
//! since it last ran; `only_run_on` limits checks to days of the week. The time a check last
//! ran is the modification time of a file in borgmatic's state directory,
//! `~/.local/state/borgmatic/checks/<repository id>/<check>[/<archives filter hash|all>]`, the
//! same files borgmatic uses, so switching between borgmatic and rborg keeps the schedule.

use std::path::PathBuf;

use chrono::{DateTime, Datelike, Local, TimeDelta};
use rborg_config::{Config, Repository};
use sha2::{Digest, Sha256};

use super::borg_call::ActionError;
use super::log;

/// The checks borgmatic runs when none are configured.
const DEFAULT_CHECKS: [&str; 2] = ["repository", "archives"];
/// Their default frequency.
const DEFAULT_FREQUENCY: &str = "1 month";

/// Whether `check` applies to `repository` (`check_repositories` lists labels or paths; all
/// repositories when empty).
pub fn repository_enabled(config: &Config, repository: &Repository) -> bool {
    config.check_repositories.is_empty()
        || config.check_repositories.iter().any(|wanted| {
            rborg_config::repository_matches(wanted, repository.label.as_deref(), &repository.path)
        })
}

/// The names of the checks to consider: `--only` ones, else the configured ones, else the
/// defaults; `disabled` means none.
pub fn configured_checks(config: &Config, only: &[String]) -> Vec<String> {
    let names: Vec<String> = if !only.is_empty() {
        only.to_vec()
    } else if config.checks.is_empty() {
        DEFAULT_CHECKS.iter().map(|s| s.to_string()).collect()
    } else {
        config.checks.iter().map(|c| c.name.clone()).collect()
    };
    let names: Vec<String> = names.into_iter().map(|n| n.to_lowercase()).collect();
    if names.iter().any(|n| n == "disabled") {
        log::warning(
            "The \"disabled\" value for the \"checks\" option is deprecated and will be removed from a future release; use \"skip_actions\" instead",
        );
        return Vec::new();
    }
    names
}

/// The hash that names the check-time file of an archives check with these filter flags
/// (sha256 of the flags joined by spaces), `None` without flags.
pub fn archives_check_id(filter_flags: &[String]) -> Option<String> {
    if filter_flags.is_empty() {
        return None;
    }
    Some(hex::encode(Sha256::digest(
        filter_flags.join(" ").as_bytes(),
    )))
}

/// Parses a frequency such as `2 weeks`, `1 month` (30 days), `always` (`None`).
pub fn parse_frequency(frequency: &str) -> Result<Option<TimeDelta>, ActionError> {
    let f = frequency.trim().to_lowercase();
    if f.is_empty() || f == "always" {
        return Ok(None);
    }
    let bad = || ActionError::new(format!("Could not parse consistency check frequency '{f}'"));
    let (number, unit) = f.split_once(' ').ok_or_else(bad)?;
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim_end_matches('s');
    let delta = match unit {
        "second" => TimeDelta::try_seconds(number),
        "minute" => TimeDelta::try_minutes(number),
        "hour" => TimeDelta::try_hours(number),
        "day" => TimeDelta::try_days(number),
        "week" => TimeDelta::try_weeks(number),
        "month" => TimeDelta::try_days(number.saturating_mul(30)),
        "year" => TimeDelta::try_days(number.saturating_mul(365)),
        _ => None,
    };
    delta.map(Some).ok_or_else(bad)
}

/// borgmatic's state directory and the check-time files in it.
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `user_state_directory`, else `$XDG_STATE_HOME`, else systemd's `$STATE_DIRECTORY`, else
    /// `~/.local/state`; then `borgmatic`.
    pub fn for_config(config: &Config) -> StateDir {
        let base = config
            .user_state_directory
            .clone()
            .or_else(|| std::env::var("XDG_STATE_HOME").ok())
            .or_else(|| {
                std::env::var("STATE_DIRECTORY")
                    .ok()
                    .and_then(|s| s.split(':').next().map(str::to_string))
            })
            .unwrap_or_else(|| "~/.local/state".to_string());
        StateDir {
            root: PathBuf::from(super::actions::expand_home(&base)).join("borgmatic"),
        }
    }

    fn path(&self, repository_id: &str, check: &str, archives_check_id: Option<&str>) -> PathBuf {
        let dir = self.root.join("checks").join(repository_id).join(check);
        if matches!(check, "archives" | "data") {
            dir.join(archives_check_id.unwrap_or("all"))
        } else {
            dir
        }
    }

    /// When `check` last ran: the newest of the filter-specific and the `all` record.
    fn check_time(
        &self,
        repository_id: &str,
        check: &str,
        archives_check_id: Option<&str>,
    ) -> Option<DateTime<Local>> {
        [
            self.path(repository_id, check, archives_check_id),
            self.path(repository_id, check, None),
        ]
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
        .map(DateTime::<Local>::from)
    }

    /// Records that `check` ran now.
    pub fn write_check_time(
        &self,
        repository_id: &str,
        check: &str,
        archives_check_id: Option<&str>,
    ) -> Result<(), ActionError> {
        let path = self.path(repository_id, check, archives_check_id);
        log::debug(&format!("Writing check time at {}", path.display()));
        let fail = |e: std::io::Error| {
            ActionError::new(format!(
                "{}: cannot record the check time: {e}",
                path.display()
            ))
        };
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(fail)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(fail)?;
        file.set_modified(std::time::SystemTime::now())
            .map_err(fail)
    }
}

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

/// The checks of `checks` due now: those not restricted to other days of the week by
/// `only_run_on`, and whose `frequency` has passed since they last ran (all with `force`).
pub fn filter_on_frequency(
    config: &Config,
    state: &StateDir,
    repository_id: Option<&str>,
    checks: &[String],
    force: bool,
    archives_check_id: Option<&str>,
    now: DateTime<Local>,
) -> Result<Vec<String>, ActionError> {
    if force {
        return Ok(checks.to_vec());
    }
    let mut due = checks.to_vec();
    let configured: Vec<(String, Option<String>, Vec<String>)> = if config.checks.is_empty() {
        DEFAULT_CHECKS
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Some(DEFAULT_FREQUENCY.to_string()),
                    Vec::new(),
                )
            })
            .collect()
    } else {
        config
            .checks
            .iter()
            .map(|c| {
                (
                    c.name.to_lowercase(),
                    c.frequency.clone(),
                    c.only_run_on.clone(),
                )
            })
            .collect()
    };
    for (name, frequency, only_run_on) in configured {
        if !due.contains(&name) {
            continue;
        }
        if !only_run_on.is_empty() {
            let today = now.weekday();
            let allowed = only_run_on.iter().any(|d| day_matches(d, today));
            if !allowed {
                log::info(&format!(
                    "Skipping {name} check due to day of the week; check only runs on {} (use --force to check anyway)",
                    only_run_on.join("/")
                ));
                due.retain(|c| c != &name);
                continue;
            }
        }
        let Some(delta) = parse_frequency(frequency.as_deref().unwrap_or(""))? else {
            continue;
        };
        let Some(id) = repository_id else { continue };
        let Some(last) = state.check_time(id, &name, archives_check_id) else {
            continue;
        };
        let next = last + delta;
        if now < next {
            log::info(&format!(
                "Skipping {name} check due to configured frequency; {} until next check (use --force to check anyway)",
                format_remaining(next - now)
            ));
            due.retain(|c| c != &name);
        }
    }
    Ok(due)
}

fn day_matches(day: &str, today: chrono::Weekday) -> bool {
    use chrono::Weekday::*;
    let weekend = matches!(today, Sat | Sun);
    match day.to_lowercase().as_str() {
        "weekday" => !weekend,
        "weekend" => weekend,
        d => d.parse::<chrono::Weekday>().is_ok_and(|w| w == today),
    }
}

/// A duration as Python prints a `timedelta` (`13 days, 23:59:58`).
fn format_remaining(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let hms = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    match days {
        0 => hms,
        1 => format!("1 day, {hms}"),
        n => format!("{n} days, {hms}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rborg_config::Check;

    #[test]
    fn frequencies() {
        assert_eq!(parse_frequency("always").unwrap(), None);
        assert_eq!(parse_frequency("2 weeks").unwrap(), TimeDelta::try_weeks(2));
        assert_eq!(parse_frequency("1 month").unwrap(), TimeDelta::try_days(30));
        assert_eq!(parse_frequency("3 Day").unwrap(), TimeDelta::try_days(3));
        assert!(parse_frequency("soon").is_err());
        assert!(parse_frequency("2 fortnights").is_err());
    }

    #[test]
    fn a_recent_check_is_skipped_until_its_frequency_passes() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            user_state_directory: Some(dir.path().display().to_string()),
            checks: vec![
                Check {
                    name: "repository".into(),
                    ..Check::default()
                },
                Check {
                    name: "archives".into(),
                    frequency: Some("2 weeks".into()),
                    ..Check::default()
                },
            ],
            ..Config::default()
        };
        let state = StateDir::for_config(&config);
        let checks = configured_checks(&config, &[]);
        let now = Local::now();
        let due = |now| {
            filter_on_frequency(&config, &state, Some("ab12"), &checks, false, None, now).unwrap()
        };
        assert_eq!(due(now), ["repository", "archives"]);
        state.write_check_time("ab12", "archives", None).unwrap();
        assert!(dir
            .path()
            .join("borgmatic/checks/ab12/archives/all")
            .is_file());
        assert_eq!(due(now), ["repository"]);
        assert_eq!(
            due(now + TimeDelta::try_days(15).unwrap()),
            ["repository", "archives"]
        );
        let forced = filter_on_frequency(&config, &state, Some("ab12"), &checks, true, None, now);
        assert_eq!(forced.unwrap(), ["repository", "archives"]);
    }

    #[test]
    fn archives_check_ids_hash_the_flags() {
        assert_eq!(archives_check_id(&[]), None);
        let id = archives_check_id(&["--last".into(), "3".into()]).unwrap();
        assert_eq!(id, hex::encode(Sha256::digest(b"--last 3")));
    }

    #[test]
    fn week_days() {
        use chrono::Weekday::*;
        assert!(day_matches("Monday", Mon));
        assert!(day_matches("weekday", Tue));
        assert!(!day_matches("weekend", Tue));
        assert!(day_matches("weekend", Sun));
    }
}
