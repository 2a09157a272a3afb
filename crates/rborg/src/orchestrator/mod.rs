//! The borgmatic-compatible orchestrator: `rborg [ACTION...]` runs the actions of each
//! borgmatic configuration file against each of its repositories, with command hooks and
//! monitoring, calling the engine in-process (issue 6; see docs/orchestrator.md).
//!
//! Modules: [`arguments`] (the command line), [`runner`] (files → repositories → actions,
//! hooks and monitoring around them), [`actions`] (what each action asks of borg),
//! [`borg_call`] (running rborg's borg command line in-process with borgmatic's environment),
//! [`check_state`] (check frequencies), [`hooks`] (command hooks), [`monitor`] (monitoring
//! services), [`log`] (verbosity, log file, syslog), [`config_cmd`] (`rborg config ...`).

pub mod actions;
pub mod arguments;
pub mod borg_call;
pub mod check_state;
pub mod config_cmd;
pub mod databases;
pub mod hooks;
pub mod log;
pub mod monitor;
pub mod runner;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::output::{EXIT_ERROR, EXIT_SUCCESS};

/// Runs the orchestrator with `args` (without the program name).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let arguments = match arguments::parse(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                EXIT_ERROR
            } else {
                EXIT_SUCCESS
            });
        }
    };
    let g = &arguments.global;
    let options = log::LogOptions {
        verbosity: g.verbosity.unwrap_or(0),
        syslog_verbosity: g.syslog_verbosity.unwrap_or(-2),
        log_file: g.log_file.clone(),
        log_file_verbosity: g.log_file_verbosity.unwrap_or(1),
        monitoring_verbosity: g.monitoring_verbosity.unwrap_or(1),
        json: g.log_json,
    };
    if let Err(e) = log::init(options) {
        eprintln!(
            "{}: cannot open the log file: {e}",
            g.log_file
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        );
        return ExitCode::from(EXIT_ERROR);
    }
    ExitCode::from(run(&arguments))
}

/// Loads every configuration file and runs the actions; borg's exit codes: 0 when everything
/// succeeded, 2 when a configuration could not be loaded or any repository failed.
fn run(arguments: &arguments::Arguments) -> u8 {
    let g = &arguments.global;
    let env = |name: &str| std::env::var(name).ok();
    let files: Vec<PathBuf> = rborg_config::config_files(&g.config_paths, &env);
    if files.is_empty() {
        log::error(
            "No configuration files found: give -c/--config, or create /etc/borgmatic/config.yaml \
             (`rborg config generate` writes a commented template)",
        );
        return EXIT_ERROR;
    }
    let mut failed = false;
    let mut loaded = Vec::new();
    for file in &files {
        let result = if g.no_environment_interpolation {
            rborg_config::load_config_with_env(file, None)
        } else {
            rborg_config::load_config(file)
        };
        match result {
            Ok(mut config) => {
                for warning in &config.warnings {
                    log::warning(warning);
                }
                let mut ok = true;
                for o in &g.overrides {
                    if let Err(e) = config.apply_override(o) {
                        log::error(&format!("{}: --override {o}: {e}", file.display()));
                        ok = false;
                    }
                }
                if ok {
                    loaded.push(config);
                } else {
                    failed = true;
                }
            }
            Err(e) => {
                log::error(&format!(
                    "{}: Error parsing configuration file",
                    file.display()
                ));
                for line in e.to_string().lines() {
                    log::error(line);
                }
                failed = true;
            }
        }
    }
    let mut json = Vec::new();
    for config in &loaded {
        failed |= !runner::run_everything_hooks(config, arguments, true);
    }
    for config in &loaded {
        log::set_prefix(None);
        log::info(&format!("{}: Running actions", config.path.display()));
        let outcome = runner::run_configuration(config, arguments);
        failed |= outcome.failed;
        json.extend(outcome.json);
    }
    for config in &loaded {
        failed |= !runner::run_everything_hooks(config, arguments, false);
    }
    if arguments.actions.iter().any(arguments::Action::json) {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Array(json)).unwrap_or_default()
        );
    }
    if failed {
        log::error("rborg: at least one configuration or repository failed; see the errors above");
        EXIT_ERROR
    } else {
        log::info("summary: all configurations and repositories succeeded");
        EXIT_SUCCESS
    }
}
