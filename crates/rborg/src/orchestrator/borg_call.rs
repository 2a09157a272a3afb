//! Running a borg operation in-process for an action, the way borgmatic runs `borg`.
//!
//! borgmatic builds a borg command line and an environment from the configuration
//! (`borgmatic/borg/environment.py`: `BORG_PASSPHRASE`, `BORG_PASSCOMMAND`, `BORG_RSH`,
//! `BORG_*_DIR`, the `*_IS_OK` answers) and runs it. rborg builds the same command line and
//! runs rborg's own borg command line ([`crate::borg::run`]) in this process, with the
//! environment set for the duration of the call and restored afterwards, so behaviour,
//! messages and exit codes are exactly those of `rborg borg ...`. No `borg` binary is needed.
//!
//! The orchestrator is single-threaded between borg calls (the engine's worker threads only
//! live inside a call), so setting the process environment around a call is safe here.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rborg_config::Config;

use super::log;

/// A failed action: its message (for the log and `{error}`) and the output of the command that
/// failed (for `{output}`).
#[derive(Debug)]
pub struct ActionError {
    /// What went wrong.
    pub message: String,
    /// The failed command's log output.
    pub output: String,
}

impl ActionError {
    /// An error with no command output.
    pub fn new(message: impl Into<String>) -> Self {
        ActionError {
            message: message.into(),
            output: String::new(),
        }
    }
}

/// Environment variables set while borg runs, restored afterwards.
struct EnvGuard {
    saved: Vec<(String, Option<OsString>)>,
}

impl EnvGuard {
    fn set(vars: &[(String, Option<String>)]) -> EnvGuard {
        let mut saved = Vec::new();
        for (name, value) in vars {
            saved.push((name.clone(), std::env::var_os(name)));
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
        EnvGuard { saved }
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (name, value) in self.saved.drain(..).rev() {
            match value {
                Some(v) => std::env::set_var(&name, v),
                None => std::env::remove_var(&name),
            }
        }
    }
}

/// Restores the working directory when dropped.
struct CwdGuard(Option<PathBuf>);

impl Drop for CwdGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::env::set_current_dir(dir);
        }
    }
}

/// How borg is run for one repository of one configuration.
pub struct Borg<'a> {
    /// The configuration as it applies to the repository.
    pub config: &'a Config,
    /// The environment borg runs with.
    env: Vec<(String, Option<String>)>,
}

/// What a borg call returned (a warning exit code was logged already).
pub struct Outcome {
    /// What borg printed on standard output, when captured.
    pub stdout: Vec<u8>,
}

impl<'a> Borg<'a> {
    /// Prepares the environment borgmatic would give borg for `config`.
    pub fn new(config: &'a Config) -> Result<Borg<'a>, ActionError> {
        let mut env: Vec<(String, Option<String>)> = Vec::new();
        let mut set = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                env.push((name.to_string(), Some(v)));
            }
        };
        set("BORG_HOSTNAME", other_str(config, "archive_hostname"));
        set("BORG_USERNAME", other_str(config, "archive_username"));
        set("BORG_BASE_DIR", config.borg_base_directory.clone());
        set("BORG_CONFIG_DIR", config.borg_config_directory.clone());
        set("BORG_CACHE_DIR", config.borg_cache_directory.clone());
        set(
            "BORG_FILES_CACHE_TTL",
            config.borg_files_cache_ttl.map(|v| v.to_string()),
        );
        set("BORG_SECURITY_DIR", config.borg_security_directory.clone());
        set("BORG_KEYS_DIR", config.borg_keys_directory.clone());
        set("BORG_KEY_FILE", config.borg_key_file.clone());
        set("BORG_RSH", config.ssh_command.clone());
        set("TMPDIR", config.temporary_directory.clone());
        let yes_no = |b: bool| if b { "YES" } else { "NO" }.to_string();
        for (name, value) in [
            (
                "BORG_RELOCATED_REPO_ACCESS_IS_OK",
                config.relocated_repo_access_is_ok,
            ),
            (
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK",
                config.unknown_unencrypted_repo_access_is_ok,
            ),
        ] {
            if std::env::var_os(name).is_none() {
                if let Some(v) = value {
                    env.push((name.to_string(), Some(yes_no(v))));
                }
            }
        }
        if let Some(v) = config.check_i_know_what_i_am_doing {
            env.push(("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING".into(), Some(yes_no(v))));
        }
        // the passphrase: configured (maybe a credential reference) wins over the environment
        if let Some(configured) = &config.encryption_passphrase {
            let passphrase = rborg_config::resolve_credential(
                configured,
                config.working_directory.as_deref(),
                &|name| std::env::var(name).ok(),
            )
            .map_err(|e| ActionError::new(format!("encryption_passphrase: {e}")))?;
            log::redact(&passphrase);
            env.push(("BORG_PASSPHRASE".into(), Some(passphrase)));
            env.push(("BORG_PASSCOMMAND".into(), None));
        } else if let Some(command) = &config.encryption_passcommand {
            env.push(("BORG_PASSPHRASE".into(), None));
            env.push(("BORG_PASSCOMMAND".into(), Some(command.clone())));
        }
        Ok(Borg { config, env })
    }

    /// The flags borgmatic puts on every borg command: lock wait, remote path, umask, and the
    /// verbosity that matches the console's.
    pub fn common_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(w) = self.config.lock_wait {
            flags.extend(["--lock-wait".into(), w.to_string()]);
        }
        if let Some(r) = &self.config.remote_path {
            flags.extend(["--remote-path".into(), r.clone()]);
        }
        if let Some(u) = self.config.umask {
            flags.extend(["--umask".into(), format!("{u:o}")]);
        }
        match log::verbosity() {
            1 => flags.push("--info".into()),
            2 => flags.extend(["--debug".into(), "--show-rc".into()]),
            _ => {}
        }
        flags
    }

    /// [`Borg::common_flags`] for a borg call whose output is read rather than shown (the
    /// archive `latest` names, whether a repository exists): no `--info` chatter.
    pub fn probe_flags(&self) -> Vec<String> {
        self.common_flags()
            .into_iter()
            .filter(|f| f != "--info")
            .collect()
    }

    /// `extra_borg_options.<command>` split like a shell would.
    pub fn extra_options(&self, command: &str) -> Vec<String> {
        self.config
            .extra_borg_options
            .get(command)
            .map(|s| rborg_remote::client::shell_split(s))
            .unwrap_or_default()
    }

    /// Runs `borg ARGS` in-process; exit code 1 counts as success unless `warning_is_error`.
    pub fn run(&self, args: Vec<String>, warning_is_error: bool) -> Result<Outcome, ActionError> {
        self.run_in(args, warning_is_error, false, None)
    }

    /// Like [`Borg::run`], collecting borg's standard output.
    pub fn run_captured(&self, args: Vec<String>) -> Result<Outcome, ActionError> {
        self.run_in(args, false, true, None)
    }

    /// Like [`Borg::run`], in directory `cwd` (extract's `--destination`).
    pub fn run_at(&self, args: Vec<String>, cwd: &Path) -> Result<Outcome, ActionError> {
        self.run_in(args, false, false, Some(cwd))
    }

    fn run_in(
        &self,
        args: Vec<String>,
        warning_is_error: bool,
        capture: bool,
        cwd: Option<&Path>,
    ) -> Result<Outcome, ActionError> {
        log::debug(&format!("borg {}", args.join(" ")));
        let _env = EnvGuard::set(&self.env);
        let _cwd = match cwd {
            Some(dir) => {
                let previous = std::env::current_dir().ok();
                std::env::set_current_dir(dir).map_err(|e| {
                    ActionError::new(format!("{}: cannot change into it: {e}", dir.display()))
                })?;
                CwdGuard(previous)
            }
            None => CwdGuard(None),
        };
        log::begin_command_output();
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        let (code, stdout) = if capture {
            crate::output::capture_stdout(|| crate::borg::run(argv))
        } else {
            (crate::borg::run(argv), Vec::new())
        };
        let output = log::end_command_output();
        let code = self.map_exit_code(code);
        let failed = code >= 2 || (code == 1 && warning_is_error);
        if failed {
            let command = args.first().map(String::as_str).unwrap_or("borg");
            let reason = output
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with("terminating with"))
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            return Err(ActionError {
                message: format!("borg {command} exited with status {code}{reason}"),
                output,
            });
        }
        if code == 1 {
            log::warning(&format!(
                "borg {} finished with warnings",
                args.first().map(String::as_str).unwrap_or_default()
            ));
        }
        Ok(Outcome { stdout })
    }

    /// `borg_exit_codes`: a configured code may be treated as a warning or an error.
    fn map_exit_code(&self, code: u8) -> u8 {
        let Some(serde_json::Value::Array(rules)) = self.config.other.get("borg_exit_codes") else {
            return code;
        };
        for rule in rules {
            if rule.get("code").and_then(|c| c.as_u64()) == Some(u64::from(code)) {
                match rule.get("treat_as").and_then(|t| t.as_str()) {
                    Some("warning") => return 1,
                    Some("error") => return 2,
                    _ => {}
                }
            }
        }
        code
    }
}

fn other_str(config: &Config, name: &str) -> Option<String> {
    config
        .other
        .get(name)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}
