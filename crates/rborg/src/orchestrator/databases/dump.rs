//! Streaming dumps: one named pipe per database, a dump process writing into it, and the
//! commit gate that keeps a failed dump out of the archive.
//!
//! borgmatic (`hooks/data_source/dump.py`, `create_named_pipe_for_dump`) makes a FIFO per
//! database, starts `pg_dump ... > FIFO` through a shell, and runs `borg create --read-special`
//! with the dump directory as an extra source, so the dump streams into the archive without a
//! copy on disk. The shell opens the FIFO for writing, which blocks until borg opens it for
//! reading, so each dump starts when borg reaches its file.
//!
//! rborg does the same with one difference that matters because borg runs in this process: a
//! thread per dump opens the FIFO for writing (blocking like the shell's `>`), hands it to the
//! dump process as its standard output, and **keeps a second descriptor of it open until the
//! process has exited**. So borg never sees the end of a dump before rborg knows whether the
//! dump succeeded: when it failed, the thread first raises the commit gate's flag (the flag
//! `borg create` polls, see [`commit_gate`]), then closes the pipe; the create run ends without
//! saving the archive, as on borg's SIGINT. A partial dump is never committed as a finished
//! archive.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rborg_config::interpolate::shell_quote;

use super::super::log;

/// A command to run: program, arguments and extra environment (passwords go here, never into
/// the arguments, so they are not in the process list or the log).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandSpec {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Variables added to the environment (e.g. `PGPASSWORD`, `MYSQL_PWD`).
    pub env: Vec<(String, String)>,
}

impl CommandSpec {
    /// `base` (a configured command override, split like a shell would, e.g. `docker exec db
    /// pg_dump`) followed by `args`.
    pub fn new(base: &str, args: Vec<String>) -> CommandSpec {
        let mut argv = rborg_remote::client::shell_split(base);
        argv.extend(args);
        CommandSpec {
            argv,
            env: Vec::new(),
        }
    }

    /// Adds `name=value` to the environment when `value` is set.
    pub fn with_env(mut self, name: &str, value: Option<&str>) -> CommandSpec {
        if let Some(v) = value {
            log::redact(v);
            self.env.push((name.to_string(), v.to_string()));
        }
        self
    }

    /// The command line for the log (shell-quoted; never holds a password).
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A [`Command`] for it, or `None` for an empty command line.
    pub fn command(&self) -> Option<Command> {
        let (program, args) = self.argv.split_first()?;
        let mut command = Command::new(program);
        command.args(args);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        Some(command)
    }
}

/// One database dump to stream into the archive.
#[derive(Clone, Debug)]
pub struct DumpJob {
    /// What the log and errors call it, e.g. `PostgreSQL database "app"`.
    pub label: String,
    /// The named pipe (its path becomes the dump's path in the archive).
    pub fifo: PathBuf,
    /// The dump command (its standard output is the pipe).
    pub command: CommandSpec,
    /// Files the command needs while it runs (a 0600 password file), removed afterwards.
    pub keep: Vec<Arc<tempfile::TempPath>>,
}

/// The flag of the running `borg create` that, once raised, ends the run without saving the
/// archive (set by [`commit_gate`]).
static GATE: Mutex<Option<Arc<AtomicBool>>> = Mutex::new(None);
/// Number of dump sessions alive (the gate is armed only while one is).
static SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// The commit gate, called by `borg create` (`crate::borg::create`) with its interrupt flag
/// (borg's `sig_int`) before it starts reading. While database dumps stream into this run, the
/// flag is kept here (a new one when the caller has none) and a failed dump raises it before
/// the dump's pipe reaches its end, so the run stops without saving the archive. Without
/// dumps, the flag is returned unchanged.
pub fn commit_gate(flag: Option<Arc<AtomicBool>>) -> Option<Arc<AtomicBool>> {
    if SESSIONS.load(Ordering::SeqCst) == 0 {
        return flag;
    }
    let flag = flag.unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    *GATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(flag.clone());
    Some(flag)
}

fn close_gate() {
    if let Some(flag) = GATE.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        flag.store(true, Ordering::SeqCst);
    }
}

/// The last `limit` bytes of a command's error output, as text.
fn tail(bytes: &[u8], limit: usize) -> String {
    let start = bytes.len().saturating_sub(limit);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// Describes how a process ended.
pub fn describe_status(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "failed".to_string(),
    }
}

struct Running {
    label: String,
    fifo: PathBuf,
    cancelled: Arc<AtomicBool>,
    pid: Arc<Mutex<Option<i32>>>,
    thread: Option<JoinHandle<Result<(), String>>>,
    /// The job's files (a password file), removed when the session ends.
    _keep: Vec<Arc<tempfile::TempPath>>,
}

/// The dumps of one `create` action: started before borg runs, finished (or aborted) after.
pub struct DumpSession {
    directories: Vec<PathBuf>,
    running: Vec<Running>,
}

impl DumpSession {
    /// Makes each job's FIFO (mode 0600, parents 0700, as borgmatic) and starts its feeder
    /// thread. `directories` are removed (with every FIFO) when the session ends.
    pub fn start(jobs: Vec<DumpJob>, directories: Vec<PathBuf>) -> Result<DumpSession, String> {
        SESSIONS.fetch_add(1, Ordering::SeqCst);
        let mut session = DumpSession {
            directories,
            running: Vec::new(),
        };
        for dir in &session.directories {
            remove_tree(dir);
        }
        for job in jobs {
            if job.fifo.symlink_metadata().is_ok() {
                log::warning(&format!(
                    "Skipping duplicate dump of {} to {}",
                    job.label,
                    job.fifo.display()
                ));
                continue;
            }
            if let Some(parent) = job.fifo.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| format!("{}: cannot create it: {e}", parent.display()))?;
            }
            nix::unistd::mkfifo(&job.fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| format!("{}: cannot make a named pipe: {e}", job.fifo.display()))?;
            log::debug(&format!(
                "Dumping {} to {}: {}",
                job.label,
                job.fifo.display(),
                job.command.display()
            ));
            let cancelled = Arc::new(AtomicBool::new(false));
            let pid = Arc::new(Mutex::new(None));
            let thread = {
                let (job, cancelled, pid) = (job.clone(), cancelled.clone(), pid.clone());
                std::thread::Builder::new()
                    .name("rborg-dump".into())
                    .spawn(move || feed(&job, &cancelled, &pid))
                    .map_err(|e| format!("cannot start a dump thread: {e}"))?
            };
            session.running.push(Running {
                label: job.label,
                fifo: job.fifo,
                cancelled,
                pid,
                thread: Some(thread),
                _keep: job.keep,
            });
        }
        Ok(session)
    }

    /// Waits for every dump after `borg create` returned (`create_ok`: it succeeded) and
    /// returns the failures, each naming the database and the command's error output. A dump
    /// borg never read counts as failed. After a failed create the dump processes still
    /// running are terminated.
    pub fn finish(mut self, create_ok: bool) -> Vec<String> {
        self.stop(!create_ok)
    }

    fn stop(&mut self, kill: bool) -> Vec<String> {
        let mut failures = Vec::new();
        for r in &mut self.running {
            let Some(thread) = r.thread.take() else {
                continue;
            };
            if !thread.is_finished() {
                // a thread still waiting for borg to open its pipe: release it, it starts nothing
                r.cancelled.store(true, Ordering::SeqCst);
                // the thread may not have reached its blocking open yet: open and close the
                // reading end until it has come through (it then sees `cancelled`), or it has
                // started its dump (which is then killed or waited for below)
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while r.pid.lock().unwrap_or_else(|e| e.into_inner()).is_none()
                    && !thread.is_finished()
                    && std::time::Instant::now() < deadline
                {
                    if let Ok(reader) = OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&r.fifo)
                    {
                        drop(reader);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                if kill {
                    if let Some(pid) = *r.pid.lock().unwrap_or_else(|e| e.into_inner()) {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                }
            }
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("{}: {e}", r.label)),
                Err(_) => failures.push(format!("{}: the dump thread panicked", r.label)),
            }
        }
        for dir in &self.directories {
            remove_tree(dir);
        }
        failures
    }
}

impl Drop for DumpSession {
    /// Aborts whatever still runs (an error between starting the dumps and running borg) and
    /// disarms the gate.
    fn drop(&mut self) {
        let _ = self.stop(true);
        if SESSIONS.fetch_sub(1, Ordering::SeqCst) == 1 {
            *GATE.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

fn remove_tree(dir: &Path) {
    if dir.symlink_metadata().is_ok() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            log::warning(&format!("{}: cannot remove it: {e}", dir.display()));
        }
    }
}

/// The feeder thread: waits for borg to open the pipe, runs the dump into it, and closes its
/// own end only after the dump's exit status is known (raising the gate first on failure).
fn feed(job: &DumpJob, cancelled: &AtomicBool, pid: &Mutex<Option<i32>>) -> Result<(), String> {
    let pipe = OpenOptions::new()
        .write(true)
        .open(&job.fifo)
        .map_err(|e| format!("{}: cannot open it: {e}", job.fifo.display()))?;
    if cancelled.load(Ordering::SeqCst) {
        return Err(format!(
            "the dump was not read by borg create ({} was not backed up)",
            job.fifo.display()
        ));
    }
    let keep: File = pipe
        .try_clone()
        .map_err(|e| format!("{}: {e}", job.fifo.display()))?;
    let Some(mut command) = job.command.command() else {
        close_gate();
        return Err("empty dump command".into());
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(pipe))
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            close_gate();
            drop(keep);
            return Err(format!("cannot run {}: {e}", job.command.display()));
        }
    };
    *pid.lock().unwrap_or_else(|e| e.into_inner()) = i32::try_from(child.id()).ok();
    drop(command);
    let mut errors = Vec::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_end(&mut errors);
    }
    let status = child.wait();
    let failure = match status {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!(
            "{} {}{}",
            job.command
                .argv
                .first()
                .map(String::as_str)
                .unwrap_or("dump"),
            describe_status(s),
            match tail(&errors, 2000) {
                t if t.is_empty() => String::new(),
                t => format!(": {t}"),
            }
        )),
        Err(e) => Some(format!("cannot wait for the dump: {e}")),
    };
    if failure.is_some() {
        // raise the gate before borg can see the end of the pipe
        close_gate();
    } else if !errors.is_empty() {
        log::debug(&format!("{}: {}", job.label, tail(&errors, 2000)));
    }
    drop(keep);
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_quoted_and_keep_passwords_out() {
        let spec = CommandSpec::new("docker exec 'my db' pg_dump", vec!["a b".into()])
            .with_env("PGPASSWORD", Some("s3cret-pass"));
        assert_eq!(spec.argv, ["docker", "exec", "my db", "pg_dump", "a b"]);
        assert_eq!(spec.display(), "docker exec 'my db' pg_dump 'a b'");
        assert!(!spec.display().contains("s3cret"));
        assert_eq!(spec.env, [("PGPASSWORD".into(), "s3cret-pass".into())]);
    }

    #[test]
    fn a_failing_dump_raises_the_gate_before_its_pipe_ends() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pg/localhost/db");
        let job = DumpJob {
            label: "test database \"db\"".into(),
            fifo: fifo.clone(),
            command: CommandSpec::new(
                "sh -c",
                vec!["printf partial; echo broken >&2; exit 3".into()],
            ),
            keep: Vec::new(),
        };
        let session = DumpSession::start(vec![job], vec![dir.path().join("pg")]).unwrap();
        let flag = commit_gate(None).unwrap();
        let mut data = Vec::new();
        File::open(&fifo).unwrap().read_to_end(&mut data).unwrap();
        // the end of the pipe came after the flag went up
        assert!(flag.load(Ordering::SeqCst));
        assert_eq!(data, b"partial");
        let failures = session.finish(false);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("exited with status 3"), "{failures:?}");
        assert!(failures[0].contains("broken"), "{failures:?}");
        assert!(!dir.path().join("pg").exists());
    }

    #[test]
    fn an_unread_dump_is_released_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x/h/db");
        let job = DumpJob {
            label: "db".into(),
            fifo,
            command: CommandSpec::new("true", vec![]),
            keep: Vec::new(),
        };
        let session = DumpSession::start(vec![job], vec![dir.path().join("x")]).unwrap();
        let failures = session.finish(true);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("not read"), "{failures:?}");
    }
}
