//! Command hooks: shell commands run before and after each configuration file, repository and
//! action, on error, and around everything (borgmatic's `hooks/command.py`).
//!
//! Both hook syntaxes end up as [`CommandHook`]s: the 1.7 names (`before_backup`, `on_error`,
//! ...) are normalised into 2.x `commands:` entries by `rborg-config`, which also marks the 1.7
//! `after_*` hooks as running on success only (their 1.7 meaning). A hook command exiting with
//! 75 is a *soft failure*: the remaining actions of the repository are skipped and the run
//! does not fail.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use rborg_config::CommandHook;

use super::log;

/// borgmatic's soft-failure exit code.
pub const SOFT_FAIL_EXIT_CODE: i32 = 75;

/// Names a hook command may leave for borg to expand (`{hostname}` in a hook is not an error).
const BORG_PLACEHOLDERS: [&str; 12] = [
    "hostname",
    "fqdn",
    "reverse-fqdn",
    "now",
    "utcnow",
    "unixtime",
    "user",
    "pid",
    "borgversion",
    "borgmajor",
    "borgminor",
    "borgpatch",
];

/// Why running hooks stopped.
#[derive(Debug)]
pub enum HookError {
    /// A command exited with 75: skip the rest of the repository, not an error.
    SoftFailure,
    /// A command failed.
    Failed {
        /// What went wrong, for the log and `{error}`.
        message: String,
        /// The command's output, for `{output}`.
        output: String,
    },
}

/// Which hooks to run: `before`/`after` point, the actions in play and the outcome so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filter<'a> {
    /// `before: <point>` hooks.
    pub before: Option<&'a str>,
    /// `after: <point>` hooks.
    pub after: Option<&'a str>,
    /// The actions the hook's `when` must intersect (any hook without `when` matches).
    pub actions: Option<&'a [&'a str]>,
    /// `finish` or `fail`, matched against the hook's `states`.
    pub state: Option<&'a str>,
}

impl Filter<'_> {
    fn matches(&self, hook: &CommandHook) -> bool {
        (self.before.is_none() || hook.before.as_deref() == self.before)
            && (self.after.is_none() || hook.after.as_deref() == self.after)
            && match self.actions {
                Some(actions) if !hook.when.is_empty() => {
                    hook.when.iter().any(|w| actions.contains(&w.as_str()))
                }
                _ => true,
            }
            && match self.state {
                Some(state) if !hook.states.is_empty() => hook.states.iter().any(|s| s == state),
                _ => true,
            }
    }
}

/// Variables a hook command may use (`{repository}`, `{configuration_filename}`, ...).
pub type Variables = BTreeMap<&'static str, String>;

/// Where and how hook commands run.
#[derive(Clone, Debug, Default)]
pub struct Runner<'a> {
    /// The `umask` option, octal text.
    pub umask: Option<String>,
    /// The `working_directory` option.
    pub working_directory: Option<&'a Path>,
    /// `--dry-run`: log, do not run.
    pub dry_run: bool,
}

impl Runner<'_> {
    /// Runs every hook of `hooks` that `filter` selects, in order, with `variables`.
    pub fn run(
        &self,
        hooks: &[CommandHook],
        filter: Filter<'_>,
        variables: &Variables,
    ) -> Result<(), HookError> {
        for hook in hooks.iter().filter(|h| filter.matches(h)) {
            self.run_hook(hook, variables)?;
        }
        Ok(())
    }

    fn run_hook(&self, hook: &CommandHook, variables: &Variables) -> Result<(), HookError> {
        let when = if hook.when.is_empty() {
            String::new()
        } else {
            format!("{} ", hook.when.join("/"))
        };
        let description = match (&hook.before, &hook.after) {
            (Some(point), _) => format!("before {when}{point}"),
            (None, Some(point)) => format!("after {when}{point}"),
            (None, None) => {
                return Err(HookError::Failed {
                    message: "Invalid hook configuration: neither before nor after".into(),
                    output: String::new(),
                })
            }
        };
        if hook.run.is_empty() {
            log::debug(&format!("No commands to run for {description} hook"));
            return Ok(());
        }
        let dry = if self.dry_run {
            " (dry run; not actually running hooks)"
        } else {
            ""
        };
        if hook.run.len() == 1 {
            log::info(&format!("Running {description} command hook{dry}"));
        } else {
            log::info(&format!(
                "Running {} commands for {description} hook{dry}",
                hook.run.len()
            ));
        }
        if self.dry_run {
            return Ok(());
        }
        let is_error_hook = hook.after.as_deref() == Some("error");
        for command in &hook.run {
            let command = interpolate(command, variables, &description);
            self.execute(&command, is_error_hook)?;
        }
        Ok(())
    }

    fn execute(&self, command: &str, is_error_hook: bool) -> Result<(), HookError> {
        let mut shell = Command::new("/bin/sh");
        shell
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = self.working_directory {
            shell.current_dir(dir);
        }
        let umask = self
            .umask
            .as_deref()
            .and_then(|u| u32::from_str_radix(u.trim(), 8).ok());
        let previous = umask.map(|u| {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
                u as nix::libc::mode_t,
            ))
        });
        let result = shell.output();
        if let Some(previous) = previous {
            nix::sys::stat::umask(previous);
        }
        let out = result.map_err(|e| HookError::Failed {
            message: format!("{command}: cannot run the shell: {e}"),
            output: String::new(),
        })?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        for line in output.lines() {
            if is_error_hook {
                log::error(line);
            } else {
                log::answer(line);
            }
        }
        match out.status.code() {
            Some(0) => Ok(()),
            Some(SOFT_FAIL_EXIT_CODE) => {
                log::info(&format!(
                    "Command hook exited with soft failure exit code ({SOFT_FAIL_EXIT_CODE}); skipping remaining repository actions"
                ));
                Err(HookError::SoftFailure)
            }
            code => Err(HookError::Failed {
                message: format!(
                    "Command '{command}' returned non-zero exit status {}.",
                    code.map_or_else(|| "(killed by a signal)".to_string(), |c| c.to_string())
                ),
                output,
            }),
        }
    }
}

/// Replaces `{name}` in `command` with the shell-quoted variable, as borgmatic's
/// `interpolate_context`: `\{name\}` stays literal `{name}`; an unknown name stays as written,
/// with a warning unless borg expands it.
pub fn interpolate(command: &str, variables: &Variables, description: &str) -> String {
    let mut out = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(open) = rest.find('{') {
        let escaped_left = rest[..open].ends_with('\\');
        let after = &rest[open + 1..];
        let name_len = after
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(after.len(), |(i, _)| i);
        let name = &after[..name_len];
        let tail = &after[name_len..];
        let (escaped_right, close) = if tail.starts_with("\\}") {
            (true, 2)
        } else if tail.starts_with('}') {
            (false, 1)
        } else {
            (false, 0)
        };
        if name.is_empty() || close == 0 {
            out.push_str(&rest[..=open]);
            rest = after;
            continue;
        }
        let whole_end = open + 1 + name_len + close;
        if escaped_left && escaped_right {
            out.push_str(&rest[..open - 1]);
            out.push('{');
            out.push_str(name);
            out.push('}');
        } else {
            out.push_str(&rest[..open]);
            match variables.get(name) {
                Some(value) => out.push_str(&rborg_config::interpolate::shell_quote(value)),
                None => {
                    if !BORG_PLACEHOLDERS.contains(&name) {
                        log::warning(&format!(
                            "Variable \"{name}\" is not supported in the {description} hook"
                        ));
                    }
                    out.push_str(&rest[open..whole_end]);
                }
            }
        }
        rest = &rest[whole_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        let mut v = Variables::new();
        v.insert("repository", "/srv/repo one".into());
        v.insert("error", "it's broken".into());
        v
    }

    #[test]
    fn variables_are_shell_quoted() {
        assert_eq!(
            interpolate("echo {repository} {error}", &vars(), "t"),
            "echo '/srv/repo one' 'it'\"'\"'s broken'"
        );
    }

    #[test]
    fn escapes_and_unknown_names_stay() {
        assert_eq!(
            interpolate("echo \\{repository\\} {hostname} {nope} {", &vars(), "t"),
            "echo {repository} {hostname} {nope} {"
        );
    }

    fn hook(
        before: Option<&str>,
        after: Option<&str>,
        when: &[&str],
        states: &[&str],
    ) -> CommandHook {
        CommandHook {
            before: before.map(str::to_string),
            after: after.map(str::to_string),
            when: when.iter().map(|s| s.to_string()).collect(),
            states: states.iter().map(|s| s.to_string()).collect(),
            run: vec!["true".into()],
            ..CommandHook::default()
        }
    }

    #[test]
    fn filter_matches_point_actions_and_state() {
        let after_create_ok = hook(None, Some("action"), &["create"], &["finish"]);
        let f = |actions: &'static [&'static str], state| Filter {
            after: Some("action"),
            actions: Some(actions),
            state: Some(state),
            ..Filter::default()
        };
        assert!(f(&["create"], "finish").matches(&after_create_ok));
        assert!(!f(&["create"], "fail").matches(&after_create_ok));
        assert!(!f(&["prune"], "finish").matches(&after_create_ok));
        let any = hook(None, Some("action"), &[], &[]);
        assert!(f(&["prune"], "fail").matches(&any));
        let before = hook(Some("action"), None, &[], &[]);
        assert!(!f(&["prune"], "finish").matches(&before));
    }

    #[test]
    fn soft_failure_and_failure() {
        let runner = Runner::default();
        assert!(matches!(
            runner.execute("exit 75", false),
            Err(HookError::SoftFailure)
        ));
        match runner.execute("echo oops; exit 3", false) {
            Err(HookError::Failed { message, output }) => {
                assert!(message.contains("exit status 3"), "{message}");
                assert_eq!(output, "oops\n");
            }
            other => panic!("{other:?}"),
        }
        assert!(runner.execute("true", false).is_ok());
    }
}
