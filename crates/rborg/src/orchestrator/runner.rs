//! A run: every configuration file, every repository in it, every action, with command hooks
//! and monitoring around them (borgmatic's `commands/borgmatic.py`: `run_configuration`,
//! `run_actions`).
//!
//! Order for one configuration file: monitoring `start`; `before configuration` hooks; for each
//! repository: `before repository` hooks, then for each action `before action` hooks, the
//! action, `after action` hooks; `after repository` hooks. A failing repository is logged and
//! retried (`retries`, `retry_wait`); the other repositories still run. Then `after
//! configuration` hooks, monitoring `log` and `finish` or `fail`, and on failure the `after
//! error` hooks with `{error}` and `{output}`. A hook exiting 75 skips the rest of its
//! repository without failing the run.

use std::path::Path;

use rborg_config::{Config, LoadedConfig, Repository};

use super::actions::{self, expand_home, ActionContext};
use super::arguments::{Action, Arguments};
use super::borg_call::ActionError;
use super::hooks::{Filter, HookError, Runner, Variables};
use super::log;
use super::monitor::{Level as MonitorLevel, Monitors, State};

/// What a configuration file's run produced.
#[derive(Default)]
pub struct ConfigOutcome {
    /// Whether anything failed.
    pub failed: bool,
    /// JSON collected from actions run with `--json`.
    pub json: Vec<serde_json::Value>,
}

/// The actions' names, for hook `when` filters.
fn action_names(actions: &[Action]) -> Vec<&'static str> {
    actions.iter().map(Action::name).collect()
}

fn hook_runner<'a>(config: &'a Config, dry_run: bool, working: Option<&'a Path>) -> Runner<'a> {
    Runner {
        umask: config.umask.map(|u| format!("{u:o}")),
        working_directory: working,
        dry_run,
    }
}

/// Runs `before everything` (`before: true`) or `after everything` hooks of one configuration.
pub fn run_everything_hooks(loaded: &LoadedConfig, arguments: &Arguments, before: bool) -> bool {
    let config = &loaded.config;
    let working = config.working_directory.as_deref().map(Path::new);
    let runner = hook_runner(config, arguments.global.dry_run, working);
    let names = action_names(&arguments.actions);
    let filter = Filter {
        before: before.then_some("everything"),
        after: (!before).then_some("everything"),
        actions: Some(&names),
        state: None,
    };
    let vars = file_variables(&loaded.path, config);
    match runner.run(&config.commands, filter, &vars) {
        Ok(()) | Err(HookError::SoftFailure) => true,
        Err(HookError::Failed { message, .. }) => {
            let point = if before { "before" } else { "after" };
            log::error(&format!(
                "{}: Error running {point} everything hook: {message}",
                loaded.path.display()
            ));
            false
        }
    }
}

/// The hook variables of a configuration file: `{configuration_filename}` and `{log_file}`.
fn file_variables(path: &Path, config: &Config) -> Variables {
    let mut vars = Variables::new();
    vars.insert("configuration_filename", path.display().to_string());
    vars.insert("log_file", log_file_option(config));
    vars
}

fn log_file_option(config: &Config) -> String {
    config
        .other
        .get("log_file")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// An error in a repository's run: a real failure, or a soft failure that skips the rest.
enum RepositoryError {
    Soft,
    Failed(ActionError),
}

impl From<HookError> for RepositoryError {
    fn from(e: HookError) -> Self {
        match e {
            HookError::SoftFailure => RepositoryError::Soft,
            HookError::Failed { message, output } => {
                RepositoryError::Failed(ActionError { message, output })
            }
        }
    }
}

/// Runs every action of `arguments` for every repository of `loaded`.
pub fn run_configuration(loaded: &LoadedConfig, arguments: &Arguments) -> ConfigOutcome {
    let config = &loaded.config;
    let file = loaded.path.display().to_string();
    let dry_run = arguments.global.dry_run;
    let working = config.working_directory.as_deref().map(Path::new);
    let runner = hook_runner(config, dry_run, working);
    let names = action_names(&arguments.actions);
    let mut outcome = ConfigOutcome::default();

    let skip: Vec<String> = config
        .other
        .get("skip_actions")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !skip.is_empty() {
        log::debug(&format!(
            "{file}: Skipping {} action(s) due to configured skip_actions",
            skip.join("/")
        ));
    }

    let monitored = arguments.actions.iter().any(Action::is_primary)
        && arguments.global.monitoring_verbosity != Some(-2);
    let monitors = if monitored {
        Monitors::from_config(config, &loaded.path)
    } else {
        Monitors::from_config(&Config::default(), &loaded.path)
    };
    let ping = |state: State, tail: &str| {
        if monitors.is_empty() {
            return;
        }
        // logged like borgmatic's own ping messages, so they reach the log tail too
        for message in monitors.ping_messages(state, tail, dry_run) {
            let text = format!("{file}: {}", message.text);
            match message.level {
                MonitorLevel::Debug => log::debug(&text),
                MonitorLevel::Info => log::info(&text),
                MonitorLevel::Warning => log::warning(&text),
            }
        }
    };
    log::take_captured();
    ping(State::Start, "");

    let config_vars = file_variables(&loaded.path, config);

    let mut error: Option<(ActionError, Option<&Repository>)> = None;
    let mut soft = false;
    let before_config = Filter {
        before: Some("configuration"),
        actions: Some(&names),
        ..Filter::default()
    };
    match runner.run(&config.commands, before_config, &config_vars) {
        Err(HookError::SoftFailure) => soft = true,
        Err(HookError::Failed { message, output }) => {
            error = Some((
                ActionError {
                    message: format!("Error running before configuration hook: {message}"),
                    output,
                },
                None,
            ));
        }
        Ok(()) => {}
    }

    if error.is_none() && !soft {
        let requested = arguments
            .actions
            .iter()
            .find_map(Action::repository)
            .or(arguments.global.repository.as_deref());
        for (index, repository) in config.repositories.iter().enumerate() {
            if let Some(wanted) = requested {
                if !rborg_config::repository_matches(
                    wanted,
                    repository.label.as_deref(),
                    &repository.path,
                ) {
                    continue;
                }
            }
            let prefix = repository
                .label
                .clone()
                .unwrap_or_else(|| repository.path.clone());
            log::set_prefix(Some(&prefix));
            let merged = loaded
                .for_repository(index)
                .unwrap_or_else(|| config.clone());
            let retries = merged.retries.unwrap_or(0).max(0);
            let retry_wait = merged.retry_wait.unwrap_or(0).max(0);
            let mut attempt = 0;
            loop {
                if attempt > 0 && retry_wait > 0 {
                    let wait = attempt * retry_wait;
                    log::warning(&format!("Sleeping {wait}s before next retry"));
                    std::thread::sleep(std::time::Duration::from_secs(wait as u64));
                }
                let result = run_repository(
                    loaded,
                    &merged,
                    repository,
                    arguments,
                    &names,
                    &skip,
                    &mut outcome.json,
                );
                match result {
                    Ok(()) | Err(RepositoryError::Soft) => break,
                    Err(RepositoryError::Failed(e)) if attempt < retries => {
                        log::warning(&format!(
                            "Error running actions for repository: {}",
                            e.message
                        ));
                        attempt += 1;
                        log::warning(&format!("Retrying... attempt {attempt}/{retries}"));
                    }
                    Err(RepositoryError::Failed(e)) => {
                        log::error(&format!(
                            "Error running actions for repository: {}",
                            e.message
                        ));
                        if error.is_none() {
                            error = Some((e, Some(repository)));
                        }
                        break;
                    }
                }
            }
            log::set_prefix(None);
        }
        let state = if error.is_some() { "fail" } else { "finish" };
        let after_config = Filter {
            after: Some("configuration"),
            actions: Some(&names),
            state: Some(state),
            ..Filter::default()
        };
        match runner.run(&config.commands, after_config, &config_vars) {
            Ok(()) | Err(HookError::SoftFailure) => {}
            Err(HookError::Failed { message, output }) => {
                if error.is_none() {
                    error = Some((
                        ActionError {
                            message: format!("Error running after configuration hook: {message}"),
                            output,
                        },
                        None,
                    ));
                }
            }
        }
    }

    let tail = log::take_captured();
    ping(State::Log, &tail);
    ping(
        if error.is_some() {
            State::Fail
        } else {
            State::Finish
        },
        &tail,
    );

    if let Some((e, repository)) = error {
        outcome.failed = true;
        log::error(&format!("{file}: Error running configuration file"));
        let mut vars = config_vars.clone();
        vars.insert(
            "repository",
            repository.map(|r| r.path.clone()).unwrap_or_default(),
        );
        vars.insert(
            "repository_label",
            repository.and_then(|r| r.label.clone()).unwrap_or_default(),
        );
        vars.insert("error", e.message.clone());
        vars.insert("output", e.output.clone());
        let on_error = Filter {
            after: Some("error"),
            actions: Some(&names),
            state: Some("fail"),
            ..Filter::default()
        };
        if let Err(HookError::Failed { message, .. }) =
            runner.run(&config.commands, on_error, &vars)
        {
            log::error(&format!(
                "{file}: Error running after error hook: {message}"
            ));
        }
    }
    outcome
}

/// The actions for one repository, inside its `before/after repository` hooks.
fn run_repository(
    loaded: &LoadedConfig,
    config: &Config,
    repository: &Repository,
    arguments: &Arguments,
    names: &[&str],
    skip: &[String],
    json: &mut Vec<serde_json::Value>,
) -> Result<(), RepositoryError> {
    let dry_run = arguments.global.dry_run;
    let working = config.working_directory.as_deref().map(Path::new);
    let runner = hook_runner(config, dry_run, working);
    let mut vars = file_variables(&loaded.path, config);
    vars.insert("repository", expand_home(&repository.path));
    vars.insert(
        "repository_label",
        repository.label.clone().unwrap_or_default(),
    );
    vars.insert(
        "repositories",
        loaded
            .config
            .repositories
            .iter()
            .map(|r| r.path.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    log::debug("Running actions for repository");
    runner.run(
        &config.commands,
        Filter {
            before: Some("repository"),
            actions: Some(names),
            ..Filter::default()
        },
        &vars,
    )?;
    let result = run_actions(config, repository, arguments, skip, json, &runner, &vars);
    let state = match &result {
        Err(RepositoryError::Failed(_)) => "fail",
        _ => "finish",
    };
    let after = runner.run(
        &config.commands,
        Filter {
            after: Some("repository"),
            actions: Some(names),
            state: Some(state),
            ..Filter::default()
        },
        &vars,
    );
    result?;
    after?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_actions(
    config: &Config,
    repository: &Repository,
    arguments: &Arguments,
    skip: &[String],
    json: &mut Vec<serde_json::Value>,
    runner: &Runner<'_>,
    vars: &Variables,
) -> Result<(), RepositoryError> {
    for action in &arguments.actions {
        let name = action.name();
        if skip.iter().any(|s| s == name) {
            continue;
        }
        let this = [name];
        runner.run(
            &config.commands,
            Filter {
                before: Some("action"),
                actions: Some(&this),
                ..Filter::default()
            },
            vars,
        )?;
        let mut cx = ActionContext {
            repository,
            config,
            dry_run: arguments.global.dry_run,
            json,
        };
        let result = actions::run(action, &mut cx);
        let state = if result.is_err() { "fail" } else { "finish" };
        let after = runner.run(
            &config.commands,
            Filter {
                after: Some("action"),
                actions: Some(&this),
                state: Some(state),
                ..Filter::default()
            },
            vars,
        );
        result.map_err(RepositoryError::Failed)?;
        after?;
    }
    Ok(())
}
