//! `rborg benchmark chunker`: one chunker's speed on some files, or its boundaries (`--list`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use rborg_chunker::{Chunker, ChunkerParams};

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
    /// Chunk a memory map of each file instead of reading it through a buffer. This measures
    /// the chunker itself: with read() about half of FastCDC's time is the kernel's copy.
    #[arg(long)]
    mmap: bool,
    /// Files to chunk.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(args: ChunkerArgs) -> anyhow::Result<u8> {
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
        let (mut count, mut bytes) = (0u64, 0u64);
        let mut record = |offset: u64, len: usize| -> std::io::Result<()> {
            if args.list {
                writeln!(out, "{offset} {len}")?;
            }
            count += 1;
            bytes += len as u64;
            Ok(())
        };
        if args.mmap {
            let map = map_file(&file).with_context(|| format!("cannot map {}", path.display()))?;
            for chunk in chunker.chunk_slice(&map) {
                record(chunk.offset, chunk.len)?;
            }
        } else {
            let mut chunks = chunker
                .chunkify_file(&file, false)
                .with_context(|| format!("cannot read {}", path.display()))?;
            while let Some(chunk) = chunks
                .next_chunk()
                .with_context(|| format!("cannot read {}", path.display()))?
            {
                record(chunk.offset, chunk.len)?;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        if !args.list {
            let mb_per_s = if seconds > 0.0 {
                bytes as f64 / 1e6 / seconds
            } else {
                f64::INFINITY
            };
            let how = if args.mmap { "mmap" } else { "read" };
            writeln!(
                out,
                "{}: {params} seed {} ({how}): {count} chunks, {bytes} bytes in {seconds:.3} s: {mb_per_s:.1} MB/s",
                path.display(),
                args.seed
            )?;
        }
    }
    out.flush()?;
    Ok(crate::output::EXIT_SUCCESS)
}

/// Maps `file` read-only.
fn map_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is only read, and only by this benchmark. If another process truncates the
    // file meanwhile, reading the lost pages raises SIGBUS; that is acceptable for a benchmark of
    // the user's own test files, and the reason backups read files with read() instead.
    // Measured: read()'s copy costs ~0.25 ns/byte, half of FastCDC's time (docs/chunker.md).
    unsafe { memmap2::Mmap::map(file) }
}
