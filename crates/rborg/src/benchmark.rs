//! `rborg benchmark ...`: measure rborg's building blocks on the user's own data.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use rborg_chunker::{Chunker, ChunkerParams};

#[derive(Debug, Subcommand)]
pub enum BenchmarkCommand {
    /// Chunk files and report the speed; with --list print every chunk's offset and length.
    Chunker(ChunkerArgs),
}

#[derive(Debug, Args)]
pub struct ChunkerArgs {
    /// The chunker and its parameters, as borg's --chunker-params
    /// (e.g. buzhash,19,23,21,4095 / fixed,4194304 / fastcdc,16,20,23).
    #[arg(
        long = "chunker-params",
        value_name = "SPEC",
        default_value = "buzhash,19,23,21,4095"
    )]
    chunker_params: String,
    /// The chunker seed: a signed 32-bit value like a borg key's chunk_seed.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: i32,
    /// Print one "OFFSET LENGTH" line per chunk instead of the speed.
    #[arg(long)]
    list: bool,
    /// Files to chunk.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(cmd: BenchmarkCommand) -> anyhow::Result<u8> {
    match cmd {
        BenchmarkCommand::Chunker(args) => chunker(args),
    }
}

fn chunker(args: ChunkerArgs) -> anyhow::Result<u8> {
    let params: ChunkerParams = args
        .chunker_params
        .parse()
        .with_context(|| format!("invalid --chunker-params {:?}", args.chunker_params))?;
    let mut chunker = Chunker::new(&params, args.seed).context("cannot set up the chunker")?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for path in &args.files {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let started = Instant::now();
        let mut chunks = chunker
            .chunkify_file(&file, false)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (mut count, mut bytes) = (0u64, 0u64);
        while let Some(chunk) = chunks
            .next_chunk()
            .with_context(|| format!("cannot read {}", path.display()))?
        {
            if args.list {
                writeln!(out, "{} {}", chunk.offset, chunk.len)?;
            }
            count += 1;
            bytes += chunk.len as u64;
        }
        let seconds = started.elapsed().as_secs_f64();
        if !args.list {
            let mb_per_s = if seconds > 0.0 {
                bytes as f64 / 1e6 / seconds
            } else {
                f64::INFINITY
            };
            writeln!(
                out,
                "{}: {params} seed {}: {count} chunks, {bytes} bytes in {seconds:.3} s: {mb_per_s:.1} MB/s",
                path.display(),
                args.seed
            )?;
        }
    }
    out.flush()?;
    Ok(crate::output::EXIT_SUCCESS)
}
