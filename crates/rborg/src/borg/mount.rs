//! `borg mount` and `borg umount` (borg 1.2.4 `archiver.py` `do_mount`/`do_umount`; the file
//! system is `rborg_mount`).
//!
//! Without `-f`, borg forks a daemon once the file system is mounted and the foreground
//! process exits. rborg gets the same behaviour without `fork()`: it starts itself again in the
//! foreground (`RBORG_MOUNT_DAEMON=1`, its own process group), relays the child's messages, and
//! exits as soon as the child reports that the kernel has the mount (or with the child's exit
//! code if it failed first). The child opens the repository itself, so the repository lock
//! belongs to the process that serves the mount and goes away with it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Args;
use rborg_archive::manifest::{parse_timestamp, Operation};
use rborg_archive::patterns::PatternMatcher;
use rborg_mount::{mount, MountOptions, Selection};

use super::archives::ArchiveFilterArgs;
use super::common::{CmdError, CmdResult, Context, ExclusionArgs, EXIT_ERROR, EXIT_SUCCESS};
use super::open::{location, open_with_manifest, LockMode};

/// Set in the environment of the background process a non-foreground mount starts.
const DAEMON_ENV: &str = "RBORG_MOUNT_DAEMON";
/// The line the background process prints on stdout once the file system is mounted.
const READY_LINE: &str = "rborg-mount: mounted";

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Show checkpoint archives in the repository contents list (default: hidden).
    #[arg(long = "consider-checkpoints")]
    consider_checkpoints: bool,
    /// stay in foreground, do not daemonize
    #[arg(short = 'f', long = "foreground")]
    foreground: bool,
    /// Extra mount options
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Option<String>,
    /// use numeric user and group identifiers from archive(s)
    #[arg(long = "numeric-ids", alias = "numeric-owner")]
    numeric_ids: bool,
    #[command(flatten)]
    filter: ArchiveFilterArgs,
    #[command(flatten)]
    exclusion: ExclusionArgs,
    /// Remove the specified number of leading path elements. Paths with fewer elements will be
    /// silently skipped.
    #[arg(long = "strip-components", value_name = "NUMBER", default_value_t = 0)]
    strip_components: usize,
    /// repository or archive to mount
    #[arg(value_name = "REPOSITORY_OR_ARCHIVE")]
    location: String,
    /// where to mount filesystem
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,
    /// paths to extract; patterns are supported
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UmountArgs {
    /// mountpoint of the filesystem to umount
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,
}

fn writable_dir(path: &std::path::Path) -> bool {
    use nix::unistd::{access, AccessFlags};
    path.is_dir()
        && access(
            path,
            AccessFlags::R_OK | AccessFlags::W_OK | AccessFlags::X_OK,
        )
        .is_ok()
}

pub fn run(ctx: &mut Context, args: MountArgs) -> CmdResult {
    // checked before the repository is opened and a passphrase asked for, as borg does
    if !writable_dir(&args.mountpoint) {
        return Err(CmdError::new(format!(
            "{}: Mountpoint must be a writable directory",
            args.mountpoint.display()
        )));
    }
    let opts = MountOptions::parse(args.options.as_deref(), args.numeric_ids)
        .map_err(|e| CmdError::new(e.to_string()))?;
    let daemon_child = std::env::var_os(DAEMON_ENV).is_some();
    if !args.foreground && !daemon_child {
        return run_in_background(ctx);
    }
    serve(ctx, args, opts, daemon_child)
}

/// Starts this command again as a background process and waits until it has mounted.
fn run_in_background(ctx: &Context) -> CmdResult {
    let exe = std::env::current_exe()
        .map_err(|e| CmdError::new(format!("cannot find the rborg executable: {e}")))?;
    // argv[0] "borg" makes the child the borg command line, with this command's arguments
    let args = super::current_args();
    let mut child = Command::new(exe)
        .arg0("borg")
        .args(&args)
        .env(DAEMON_ENV, "1")
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| CmdError::new(format!("cannot start the mount process: {e}")))?;
    let mut stderr = child.stderr.take();
    let relay = std::thread::spawn(move || {
        if let Some(err) = stderr.as_mut() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = std::io::stderr().write_all(&buf[..n]);
            }
        }
    });
    let ready = child.stdout.take().is_some_and(|out| {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|line| line == READY_LINE)
    });
    if ready {
        ctx.log
            .debug("mount: the background process serves the file system");
        return Ok(EXIT_SUCCESS);
    }
    let status = child
        .wait()
        .map_err(|e| CmdError::new(format!("waiting for the mount process: {e}")))?;
    let _ = relay.join();
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(EXIT_ERROR))
}

/// Opens the repository, builds the tree and serves it until unmounted.
fn serve(
    ctx: &mut Context,
    args: MountArgs,
    mut opts: MountOptions,
    daemon_child: bool,
) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let options = args.exclusion.load()?;
    let matcher =
        PatternMatcher::build(&options, &args.paths).map_err(|e| CmdError::new(e.to_string()))?;
    opts.tree.strip_components = args.strip_components;
    opts.tree.consider_part_files = ctx.common.consider_part_files;
    opts.tree.filtered = !matcher.is_empty();
    let opened = open_with_manifest(ctx, &loc, LockMode::Shared, &[Operation::Read])?;
    let selection = match &loc.archive {
        Some(name) => {
            if !opened.manifest.archives.contains_key(name) {
                return Err(CmdError::new(format!("Archive {name} does not exist")));
            }
            Selection::Archive(name.clone())
        }
        None => Selection::Repository(
            args.filter
                .select(&opened.manifest, args.consider_checkpoints)?
                .into_iter()
                .map(|(name, entry)| {
                    let ns = parse_timestamp(&entry.time)
                        .and_then(|t| t.and_utc().timestamp_nanos_opt())
                        .unwrap_or(0);
                    (name.clone(), ns)
                })
                .collect(),
        ),
    };
    ctx.log.info("Mounting filesystem");
    let filter = move |path: &[u8]| matcher.decide(path).included;
    let result = mount(
        Box::new(opened.repository),
        opened.key.key,
        opened.manifest,
        selection,
        Box::new(filter),
        &args.mountpoint,
        &opts,
        || {
            if daemon_child {
                let mut out = std::io::stdout();
                let _ = writeln!(out, "{READY_LINE}");
                let _ = out.flush();
                detach_output();
            }
        },
    );
    match result {
        Ok(()) => Ok(EXIT_SUCCESS),
        Err(e) => Err(CmdError::new(e.to_string())),
    }
}

/// Points stdout and stderr at /dev/null: the foreground process that read them is gone.
fn detach_output() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
    }
}

/// `borg umount`: `fusermount3 -u` (or `fusermount -u`, or `umount` as root).
pub fn umount(_ctx: &mut Context, args: UmountArgs) -> CmdResult {
    for tool in ["fusermount3", "fusermount"] {
        match Command::new(tool).arg("-u").arg(&args.mountpoint).status() {
            Ok(status) => {
                return Ok(if status.success() {
                    EXIT_SUCCESS
                } else {
                    EXIT_ERROR
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CmdError::new(format!("{tool}: {e}"))),
        }
    }
    let status = Command::new("umount")
        .arg(&args.mountpoint)
        .status()
        .map_err(|e| CmdError::new(format!("umount: {e}")))?;
    Ok(if status.success() {
        EXIT_SUCCESS
    } else {
        EXIT_ERROR
    })
}
