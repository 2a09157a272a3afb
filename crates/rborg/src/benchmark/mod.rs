//! `rborg benchmark ...`: measure rborg's building blocks on the user's own data.
//!
//! - `chunker`: one chunker's speed on some files, or its boundaries ([`chunker`]);
//! - `dedup`: every chunker side by side on a tree, with chunk counts, dedup ratio and the size
//!   of the unique data under several compressors ([`dedup`]);
//! - `crud`: borg 1.2.4's `benchmark crud` ([`crud`]).

mod chunker;
mod crud;
mod dedup;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchmarkCommand {
    /// Chunk files and report the speed; with --list print every chunk's offset and length.
    Chunker(chunker::ChunkerArgs),
    /// Compare chunkers on a tree: speed, chunks, dedup ratio, compressed size.
    ///
    /// Every file is read once and cut by each chunker; chunks are identified by SHA-256 and
    /// the unique ones compressed with each --compression spec. --json prints one object.
    Dedup(dedup::DedupArgs),
    /// Benchmark create, extract, update and delete in REPO, as `borg benchmark crud`.
    ///
    /// Runs borg's `benchmark crud` (same output, same `BORG_*` environment).
    Crud(crud::CrudArgs),
}

pub fn run(cmd: BenchmarkCommand) -> anyhow::Result<u8> {
    match cmd {
        BenchmarkCommand::Chunker(args) => chunker::run(args),
        BenchmarkCommand::Dedup(args) => dedup::run(args),
        BenchmarkCommand::Crud(args) => Ok(crud::run(args)),
    }
}
