//! `cargo run --release -p rborg-chunker --example chunkspeed -- SPEC SEED FILE [--list] [--sparse] [--slice]`
//!
//! Chunks FILE (streaming, like `rborg benchmark chunker` will) and prints MB/s (best of 15
//! runs); with `--list` also `OFFSET LENGTH [KIND]` per chunk. `--slice` reads the file into
//! memory first and times only the boundary search.

use rborg_chunker::{ChunkKind, Chunker, ChunkerParams};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: chunkspeed SPEC SEED FILE [--list] [--sparse]".into());
    }
    let params: ChunkerParams = args[0].parse()?;
    let seed: i32 = args[1].parse()?;
    let list = args.iter().any(|a| a == "--list");
    let sparse = args.iter().any(|a| a == "--sparse");
    let slice = args.iter().any(|a| a == "--slice");
    let mut chunker = Chunker::new(&params, seed)?;
    if slice {
        let data = std::fs::read(&args[2])?;
        let mut best = f64::MAX;
        let mut count = 0;
        for _ in 0..15 {
            let t = Instant::now();
            count = chunker.chunk_slice(&data).count();
            best = best.min(t.elapsed().as_secs_f64());
        }
        eprintln!(
            "{params}: {count} chunks, {} bytes, {:.1} MB/s (in memory, best of 15)",
            data.len(),
            data.len() as f64 / best / 1e6
        );
        return Ok(());
    }
    let mut best = f64::MAX;
    let mut total = 0u64;
    let mut count = 0usize;
    for round in 0..if list { 1 } else { 15 } {
        let file = std::fs::File::open(&args[2])?;
        let t = Instant::now();
        let mut chunks = chunker.chunkify_file(&file, sparse)?;
        total = 0;
        count = 0;
        while let Some(c) = chunks.next_chunk()? {
            if list && round == 0 {
                let kind = match c.kind {
                    ChunkKind::Data => "",
                    ChunkKind::Alloc => " alloc",
                    ChunkKind::Hole => " hole",
                };
                println!("{} {}{kind}", c.offset, c.len);
            }
            total += c.len as u64;
            count += 1;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    eprintln!(
        "{params}: {count} chunks, {total} bytes, {:.1} MB/s (best of runs)",
        total as f64 / best / 1e6
    );
    Ok(())
}
