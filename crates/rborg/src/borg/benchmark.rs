//! `borg benchmark crud`: time create, extract, no-change update and delete of archives made
//! of generated files (borg 1.2.4 `archiver.py` `do_benchmark_crud`). The commands run
//! in-process through the same command line a user types, like borg's `self.do_create(
//! self.parse_args([...]))`.
//!
//! rborg's own `rborg benchmark chunker` (building-block speeds) is `crate::benchmark`.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};

use super::common::{format_file_size, CmdError, CmdResult, Context, EXIT_SUCCESS};
use super::open::location;

#[derive(Debug, Subcommand)]
pub enum BenchmarkCommand {
    /// Benchmarks Borg CRUD (create, extract, update, delete).
    Crud(CrudArgs),
}

#[derive(Debug, Args)]
pub struct CrudArgs {
    /// repository to use for benchmark (must exist)
    #[arg(value_name = "REPOSITORY")]
    location: String,
    /// path were to create benchmark input data
    #[arg(value_name = "PATH")]
    path: PathBuf,
}

pub fn run(ctx: &mut Context, cmd: BenchmarkCommand) -> CmdResult {
    match cmd {
        BenchmarkCommand::Crud(a) => crud(ctx, a),
    }
}

/// Runs one borg command in-process; an unsuccessful exit is an error, as borg asserts.
fn borg(args: &[&str]) -> Result<(), CmdError> {
    let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
    if super::main(argv) == ExitCode::SUCCESS {
        Ok(())
    } else {
        Err(CmdError::new(format!(
            "benchmark: `borg {}` failed",
            args.join(" ")
        )))
    }
}

/// Times `f`, in seconds.
fn timed(f: impl FnOnce() -> Result<(), CmdError>) -> Result<f64, CmdError> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64())
}

/// borg's `measurement_run`: create (no files cache), create + delete to build the files
/// cache, no-change create, extract --dry-run, delete of the last archive with the data.
fn measurement_run(repo: &str, path: &str) -> Result<[f64; 4], CmdError> {
    let archive = format!("{repo}::borg-benchmark-crud");
    let (a1, a2, a3) = (
        format!("{archive}1"),
        format!("{archive}2"),
        format!("{archive}3"),
    );
    let compression = "--compression=none";
    let create = timed(|| borg(&["create", compression, "--files-cache=disabled", &a1, path]))?;
    borg(&["create", compression, &a2, path])?;
    borg(&["delete", &a2])?;
    let update = timed(|| borg(&["create", compression, &a3, path]))?;
    borg(&["delete", &a3])?;
    let extract = timed(|| borg(&["extract", "--dry-run", &a1]))?;
    let delete = timed(|| borg(&["delete", &a1]))?;
    Ok([create, update, extract, delete])
}

/// Writes `count` files of `size` zero or random bytes into `dir/borg-test-data`.
fn make_test_files(
    dir: &Path,
    count: usize,
    size: usize,
    random: bool,
) -> std::io::Result<PathBuf> {
    let path = dir.join("borg-test-data");
    std::fs::create_dir_all(&path)?;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut data = vec![0u8; size];
    for i in 0..count {
        if random {
            // xorshift64*: incompressible, undeduplicable content without a rand dependency
            for chunk in data.chunks_mut(8) {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let v = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
        }
        let mut f = std::fs::File::create(path.join(format!("file_{i}")))?;
        f.write_all(&data)?;
        f.sync_all()?;
    }
    Ok(path)
}

fn crud(ctx: &mut Context, args: CrudArgs) -> CmdResult {
    let loc = location(Some(&args.location))?;
    let repo = loc.canonical_path();
    let tests: &[(&str, usize, usize, bool)] =
        if std::env::var_os("_BORG_BENCHMARK_CRUD_TEST").is_some() {
            &[("Z-TEST", 1, 1, false), ("R-TEST", 1, 1, true)]
        } else {
            &[
                ("Z-BIG", 10, 100_000_000, false),
                ("R-BIG", 10, 100_000_000, true),
                ("Z-MEDIUM", 1000, 1_000_000, false),
                ("R-MEDIUM", 1000, 1_000_000, true),
                ("Z-SMALL", 10000, 10_000, false),
                ("R-SMALL", 10000, 10_000, true),
            ]
        };
    for &(msg, count, size, random) in tests {
        let data = make_test_files(&args.path, count, size, random)?;
        let result = measurement_run(&repo, &data.to_string_lossy());
        std::fs::remove_dir_all(&data)?;
        let [create, update, extract, delete] = result?;
        let total_mb = (count * size) as f64 / 1e6;
        let content = if random { "random" } else { "all-zero" };
        let size_text = format_file_size(size as u64, ctx.common.iec);
        for (op, dt) in [("C", create), ("R", extract), ("U", update), ("D", delete)] {
            println!(
                "{op}-{msg:<10} {:>9.2} MB/s ({count} * {size_text} {content} files: {dt:.2}s)",
                total_mb / dt
            );
        }
    }
    Ok(EXIT_SUCCESS)
}
