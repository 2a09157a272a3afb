//! `rborg benchmark dedup PATH...`: how each chunker would deduplicate and compress the user's
//! own data, before choosing `--chunker-params` and `--compression` for a repository.
//!
//! Every regular file under the PATHs (directories recursively, in name order; symlinks are
//! not followed, other file types are skipped; a hard-linked file counts once, as `borg create`
//! stores its content once) is read once into memory and cut by each chunker in turn; only the
//! cutting is timed, so `MB/s` is the chunker's speed without the disk. Files larger than
//! `--in-memory-limit` MiB (512) are streamed through each chunker instead, so memory stays
//! bounded (their time then includes reading). Each chunk is identified by SHA-256, the id
//! hash of borg's unencrypted repositories (borg 1.2.4 `key.py` `PlaintextKey.id_hash`; keyed
//! hashes deduplicate the same), and the dedup ratio is all bytes / unique bytes. The unique chunks are compressed
//! with each `--compression` spec on all cores (rayon); the compressed size includes borg's
//! 2-byte header and the fallback to `none` when compression does not help, so it is what the
//! repository would hold before encryption.
//!
//! The default chunkers are borg's default `buzhash,19,23,21,4095` (~2 MiB chunks), borg's
//! fine-grained `buzhash,10,23,16,4095` (~64 KiB; borg 1.2 docs, usage/notes "--chunker-params"),
//! FastCDC at the same minimum/average/maximum (`fastcdc,19,21,23`, `fastcdc,10,16,23`) and
//! `fixed,4194304`; `--chunker-params` (repeatable) replaces them.
//!
//! `--json` prints one object:
//!
//! ```text
//! {"paths": [...], "files": 12, "bytes": 268435456, "skipped": 0, "seed": 0, "id_hash": "sha256",
//!  "chunkers": [{"params": "buzhash,19,23,21,4095", "bytes": 268435456, "seconds": 0.21,
//!                "mb_per_s": 1250.3,
//!                "chunks": 130, "mean_chunk_size": 2064888.1, "unique_chunks": 101,
//!                "unique_size": 200000000, "dedup_ratio": 1.342,
//!                "compression": [{"spec": "lz4", "size": 150000000, "ratio": 1.333,
//!                                 "seconds": 0.3}, ...]}, ...]}
//! ```
//!
//! `bytes` is the sum of the sizes of the files read (per chunker: of its chunks, the same),
//! `params` the chunker's normalized spec (`fixed,4194304,0`), `skipped` the number of
//! unreadable files and directories (each reported on stderr; the exit code is then 1, borg's
//! warning), `seconds` the chunking time, `ratio` unique size / compressed size,
//! `compression[].seconds` the wall time of compressing on all cores (`compression` is empty
//! for the rows `--compress-first-only` leaves out). A progress line goes to stderr when stderr
//! is a terminal.

use std::collections::HashSet;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use rayon::prelude::*;
use rborg_chunker::{Chunker, ChunkerParams};
use rborg_compress::{CompressionSpec, Compressor};
use rborg_repository::error::format_file_size_units;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::output::{EXIT_SUCCESS, EXIT_WARNING};

/// Unique chunks of a streamed file are hashed and compressed in batches of about this size.
const STREAM_BATCH: usize = 64 << 20;

/// The chunker rows when `--chunker-params` is not given (see the module documentation).
const DEFAULT_CHUNKERS: &[&str] = &[
    "buzhash,19,23,21,4095",
    "buzhash,10,23,16,4095",
    "fastcdc,19,21,23",
    "fastcdc,10,16,23",
    "fixed,4194304",
];

#[derive(Debug, Args)]
pub struct DedupArgs {
    /// A chunker to measure, as borg's --chunker-params (buzhash,19,23,21,4095 /
    /// fixed,4194304 / fastcdc,19,21,23). Repeatable; replaces the default set of chunkers.
    #[arg(long = "chunker-params", value_name = "SPEC")]
    chunker_params: Vec<String>,
    /// The chunker seed: a signed 32-bit value like a borg key's chunk_seed.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: i32,
    /// Compressors to apply to the unique chunks, as a comma-separated list of borg
    /// --compression specs (lz4,zstd,3,zlib,6,lzma,6,none; lzma is slow). Repeatable.
    #[arg(long, value_name = "SPECS", default_value = "lz4,zstd,3")]
    compression: Vec<String>,
    /// Compress the unique chunks of the first chunker only (faster with many chunkers or
    /// slow compressors).
    #[arg(long)]
    compress_first_only: bool,
    /// Files larger than this many MiB are not held in memory but read through each chunker
    /// (their chunking time then includes reading).
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    in_memory_limit: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Files and directories to read (directories recursively; symlinks are not followed).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Splits comma-separated compression specs, where a spec's own fields contain commas too:
/// a group grows while it does not parse yet (`auto` needs its compressor) or the next field
/// is a number (a level). `lz4,zstd,3,auto,lzma,6` is `lz4`, `zstd,3`, `auto,lzma,6`.
fn split_compression_specs(text: &str) -> anyhow::Result<Vec<(String, CompressionSpec)>> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let mut specs = Vec::new();
    let mut i = 0;
    while i < fields.len() {
        let mut group = fields[i].to_string();
        i += 1;
        loop {
            let next_is_number = fields.get(i).is_some_and(|f| f.parse::<i64>().is_ok());
            if i < fields.len() && (next_is_number || group.parse::<CompressionSpec>().is_err()) {
                group.push(',');
                group.push_str(fields[i]);
                i += 1;
            } else {
                break;
            }
        }
        let spec = group
            .parse::<CompressionSpec>()
            .with_context(|| format!("invalid --compression spec {group:?}"))?;
        specs.push((group, spec));
    }
    Ok(specs)
}

/// One chunker and what it found so far.
struct Row {
    params: ChunkerParams,
    chunker: Chunker,
    /// Time spent cutting.
    chunking: Duration,
    tally: Tally,
}

/// The chunks one chunker cut: counts, the ids seen, compressed sizes of the unique ones.
struct Tally {
    /// Whether the unique chunks are compressed.
    compress: bool,
    seen: HashSet<[u8; 32]>,
    chunks: u64,
    bytes: u64,
    unique_chunks: u64,
    unique_bytes: u64,
    /// Per compressor: compressed bytes and wall time.
    compressed: Vec<(u64, Duration)>,
}

impl Tally {
    /// Identifies `chunks` (in parallel), keeps the ones not seen before and compresses those
    /// with every compressor.
    fn absorb(
        &mut self,
        chunks: &[&[u8]],
        compressors: &[(String, Compressor)],
    ) -> anyhow::Result<()> {
        let ids: Vec<[u8; 32]> = chunks
            .par_iter()
            .map(|c| Sha256::digest(c).into())
            .collect();
        let mut fresh = Vec::new();
        for (chunk, id) in chunks.iter().zip(ids) {
            self.chunks += 1;
            self.bytes += chunk.len() as u64;
            if self.seen.insert(id) {
                self.unique_chunks += 1;
                self.unique_bytes += chunk.len() as u64;
                fresh.push(*chunk);
            }
        }
        if !self.compress || fresh.is_empty() {
            return Ok(());
        }
        for ((name, compressor), (size, time)) in compressors.iter().zip(&mut self.compressed) {
            let started = Instant::now();
            let total = fresh
                .par_iter()
                .map_init(Vec::new, |out, chunk| {
                    out.clear();
                    compressor
                        .try_compress_into(chunk, out)
                        .map(|()| out.len() as u64)
                })
                .try_reduce(|| 0, |a, b| Ok(a + b))
                .with_context(|| format!("compression with {name} failed"))?;
            *size += total;
            *time += started.elapsed();
        }
        Ok(())
    }
}

/// The regular files under `paths`, in walk order, with their sizes; problems are warned
/// about and counted in `skipped`.
fn collect_files(paths: &[PathBuf], skipped: &mut u64) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let mut links = HashSet::new();
    for path in paths {
        walk(path, &mut files, &mut links, skipped);
    }
    files
}

fn walk(
    path: &Path,
    files: &mut Vec<(PathBuf, u64)>,
    links: &mut HashSet<(u64, u64)>,
    skipped: &mut u64,
) {
    use std::os::unix::fs::MetadataExt as _;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return warn(path, &e, skipped),
    };
    if meta.is_file() {
        // a hard link's content is chunked once, like borg create's hardlink master
        if meta.nlink() > 1 && !links.insert((meta.dev(), meta.ino())) {
            return;
        }
        files.push((path.to_path_buf(), meta.len()));
    } else if meta.is_dir() {
        let entries = match std::fs::read_dir(path).and_then(|d| d.collect::<Result<Vec<_>, _>>()) {
            Ok(e) => e,
            Err(e) => return warn(path, &e, skipped),
        };
        let mut names: Vec<PathBuf> = entries.iter().map(|e| e.path()).collect();
        names.sort();
        for name in names {
            walk(&name, files, links, skipped);
        }
    }
}

fn warn(path: &Path, err: &dyn std::fmt::Display, skipped: &mut u64) {
    eprintln!("{}: {err}", path.display());
    *skipped += 1;
}

/// A one-line progress display on stderr, redrawn at most every 0.2 s, only on a terminal.
struct Progress {
    enabled: bool,
    total: u64,
    done: u64,
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    fn new(total: u64, wanted: bool) -> Self {
        Progress {
            enabled: wanted && std::io::stderr().is_terminal(),
            total,
            done: 0,
            started: Instant::now(),
            last: None,
        }
    }

    fn advance(&mut self, bytes: u64, files_done: usize, files: usize) {
        self.done += bytes;
        if !self.enabled
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(Instant::now());
        let pct = if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        };
        let rate = self.done as f64 / 1e6 / self.started.elapsed().as_secs_f64().max(1e-9);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{pct:5.1}% {files_done}/{files} files, {rate:.0} MB/s \x1b[K"
        );
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.enabled && self.last.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

pub fn run(args: DedupArgs) -> anyhow::Result<u8> {
    let specs: Vec<String> = if args.chunker_params.is_empty() {
        DEFAULT_CHUNKERS.iter().map(|s| s.to_string()).collect()
    } else {
        args.chunker_params.clone()
    };
    let mut compressors = Vec::new();
    for text in &args.compression {
        for (name, spec) in split_compression_specs(text)? {
            compressors.push((name, spec.compressor()));
        }
    }
    let mut rows = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let params: ChunkerParams = spec
            .parse()
            .with_context(|| format!("invalid --chunker-params {spec:?}"))?;
        rows.push(Row {
            params,
            chunker: Chunker::new(&params, args.seed).context("cannot set up the chunker")?,
            chunking: Duration::ZERO,
            tally: Tally {
                compress: i == 0 || !args.compress_first_only,
                seen: HashSet::new(),
                chunks: 0,
                bytes: 0,
                unique_chunks: 0,
                unique_bytes: 0,
                compressed: vec![(0, Duration::ZERO); compressors.len()],
            },
        });
    }

    let mut skipped = 0;
    let files = collect_files(&args.paths, &mut skipped);
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    let mut progress = Progress::new(total * rows.len() as u64, true);
    let mut read_bytes = 0u64;
    let mut read_files = 0u64;
    for (n, (path, size)) in files.iter().enumerate() {
        let result = if *size <= args.in_memory_limit.saturating_mul(1 << 20) {
            in_memory(
                path,
                &mut rows,
                &compressors,
                &mut progress,
                (n, files.len()),
            )
        } else {
            streamed(
                path,
                &mut rows,
                &compressors,
                &mut progress,
                (n, files.len()),
            )
        };
        match result {
            Ok(bytes) => {
                read_bytes += bytes;
                read_files += 1;
            }
            Err(FileError::Io(e)) => warn(path, &e, &mut skipped),
            Err(FileError::Fatal(e)) => {
                progress.finish();
                return Err(e);
            }
        }
    }
    progress.finish();

    let report = Report {
        args: &args,
        rows: &rows,
        compressors: &compressors,
        files: read_files,
        bytes: read_bytes,
        skipped,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report.json())?;
        writeln!(out)?;
    } else {
        out.write_all(report.table().as_bytes())?;
    }
    out.flush()?;
    Ok(if skipped > 0 {
        EXIT_WARNING
    } else {
        EXIT_SUCCESS
    })
}

/// Why a file could not be measured: unreadable (warn and go on) or a failure of the
/// benchmark itself (stop).
enum FileError {
    Io(std::io::Error),
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for FileError {
    fn from(e: anyhow::Error) -> Self {
        FileError::Fatal(e)
    }
}

/// Reads `path` once and cuts it with every row's chunker; returns the bytes read.
fn in_memory(
    path: &Path,
    rows: &mut [Row],
    compressors: &[(String, Compressor)],
    progress: &mut Progress,
    (n, files): (usize, usize),
) -> Result<u64, FileError> {
    let data = std::fs::read(path).map_err(FileError::Io)?;
    for row in rows.iter_mut() {
        let started = Instant::now();
        let bounds: Vec<(usize, usize)> = row
            .chunker
            .chunk_slice(&data)
            .map(|c| (c.offset as usize, c.len))
            .collect();
        row.chunking += started.elapsed();
        let chunks: Vec<&[u8]> = bounds
            .iter()
            .map(|&(offset, len)| &data[offset..offset + len])
            .collect();
        row.tally.absorb(&chunks, compressors)?;
        progress.advance(data.len() as u64, n + 1, files);
    }
    Ok(data.len() as u64)
}

/// Streams `path` through every row's chunker (for files above `--in-memory-limit`); the
/// chunking time then includes reading. Returns the bytes read (by the first chunker).
fn streamed(
    path: &Path,
    rows: &mut [Row],
    compressors: &[(String, Compressor)],
    progress: &mut Progress,
    (n, files): (usize, usize),
) -> Result<u64, FileError> {
    let mut read = None;
    for row in rows.iter_mut() {
        let file = std::fs::File::open(path).map_err(FileError::Io)?;
        let mut chunks = row
            .chunker
            .chunkify_file(&file, false)
            .map_err(|e| FileError::Fatal(e.into()))?;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let (mut batch_bytes, mut bytes) = (0usize, 0u64);
        loop {
            let started = Instant::now();
            let next = chunks.next_chunk().map_err(chunker_io)?;
            row.chunking += started.elapsed();
            let Some(chunk) = next else { break };
            // all-zero chunks come without their bytes (borg's CH_ALLOC)
            batch.push(
                chunk
                    .data
                    .map_or_else(|| vec![0; chunk.len], <[u8]>::to_vec),
            );
            batch_bytes += chunk.len;
            bytes += chunk.len as u64;
            if batch_bytes >= STREAM_BATCH {
                absorb_batch(&mut row.tally, &mut batch, compressors)?;
                progress.advance(batch_bytes as u64, n, files);
                batch_bytes = 0;
            }
        }
        absorb_batch(&mut row.tally, &mut batch, compressors)?;
        progress.advance(batch_bytes as u64, n + 1, files);
        read.get_or_insert(bytes);
    }
    Ok(read.unwrap_or(0))
}

fn absorb_batch(
    tally: &mut Tally,
    batch: &mut Vec<Vec<u8>>,
    compressors: &[(String, Compressor)],
) -> anyhow::Result<()> {
    let chunks: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    tally.absorb(&chunks, compressors)?;
    batch.clear();
    Ok(())
}

/// A read error from the streaming chunker is the file's problem, anything else ours.
fn chunker_io(e: rborg_chunker::Error) -> FileError {
    match e {
        rborg_chunker::Error::Io(io) => FileError::Io(io),
        other => FileError::Fatal(other.into()),
    }
}

/// The measurements, ready to print.
struct Report<'a> {
    args: &'a DedupArgs,
    rows: &'a [Row],
    compressors: &'a [(String, Compressor)],
    files: u64,
    bytes: u64,
    skipped: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    let seconds = time.as_secs_f64();
    if seconds > 0.0 {
        bytes as f64 / 1e6 / seconds
    } else {
        0.0
    }
}

fn mean(bytes: u64, chunks: u64) -> f64 {
    if chunks == 0 {
        0.0
    } else {
        bytes as f64 / chunks as f64
    }
}

fn size(v: u64) -> String {
    format_file_size_units(i64::try_from(v).unwrap_or(i64::MAX), false)
}

impl Report<'_> {
    fn json(&self) -> serde_json::Value {
        let chunkers: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|row| {
                let compression: Vec<serde_json::Value> = if row.tally.compress {
                    self.compressors
                        .iter()
                        .zip(&row.tally.compressed)
                        .map(|((name, _), (bytes, time))| {
                            json!({
                                "spec": name,
                                "size": bytes,
                                "ratio": ratio(row.tally.unique_bytes, *bytes),
                                "seconds": time.as_secs_f64(),
                            })
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                json!({
                    "params": row.params.to_string(),
                    "bytes": row.tally.bytes,
                    "seconds": row.chunking.as_secs_f64(),
                    "mb_per_s": mb_per_s(row.tally.bytes, row.chunking),
                    "chunks": row.tally.chunks,
                    "mean_chunk_size": mean(row.tally.bytes, row.tally.chunks),
                    "unique_chunks": row.tally.unique_chunks,
                    "unique_size": row.tally.unique_bytes,
                    "dedup_ratio": ratio(row.tally.bytes, row.tally.unique_bytes),
                    "compression": compression,
                })
            })
            .collect();
        json!({
            "paths": self.args.paths.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
            "files": self.files,
            "bytes": self.bytes,
            "skipped": self.skipped,
            "seed": self.args.seed,
            "id_hash": "sha256",
            "chunkers": chunkers,
        })
    }

    /// An aligned table: a heading line, column titles, one row per chunker.
    fn table(&self) -> String {
        let mut titles = vec![
            "chunker".to_string(),
            "MB/s".to_string(),
            "chunks".to_string(),
            "mean chunk".to_string(),
            "unique".to_string(),
            "dedup".to_string(),
        ];
        titles.extend(self.compressors.iter().map(|(name, _)| name.clone()));
        let mut lines = vec![titles];
        for row in self.rows {
            let mut cells = vec![
                row.params.to_string(),
                format!("{:.1}", mb_per_s(row.tally.bytes, row.chunking)),
                row.tally.chunks.to_string(),
                size(mean(row.tally.bytes, row.tally.chunks).round() as u64),
                size(row.tally.unique_bytes),
                format!("{:.3}", ratio(row.tally.bytes, row.tally.unique_bytes)),
            ];
            for (bytes, _) in &row.tally.compressed {
                cells.push(if row.tally.compress {
                    size(*bytes)
                } else {
                    "-".to_string()
                });
            }
            lines.push(cells);
        }
        let columns = lines[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                lines
                    .iter()
                    .map(|l| l[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = format!(
            "{} files, {} ({} bytes), seed {}, chunk ids: sha256{}\n",
            self.files,
            size(self.bytes),
            self.bytes,
            self.args.seed,
            if self.skipped > 0 {
                format!(", {} skipped", self.skipped)
            } else {
                String::new()
            }
        );
        for cells in &lines {
            let mut line = String::new();
            for (c, cell) in cells.iter().enumerate() {
                if c == 0 {
                    line.push_str(&format!("{cell:<w$}", w = widths[c]));
                } else {
                    line.push_str(&format!("  {cell:>w$}", w = widths[c]));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_lists_split_at_spec_boundaries() {
        let names = |t: &str| -> Vec<String> {
            split_compression_specs(t)
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(names("lz4,zstd,3"), ["lz4", "zstd,3"]);
        assert_eq!(
            names("none,zlib,6,lzma,6,auto,zstd,10,lz4"),
            ["none", "zlib,6", "lzma,6", "auto,zstd,10", "lz4"]
        );
        assert_eq!(names("obfuscate,110,zstd,3"), ["obfuscate,110,zstd,3"]);
        assert!(split_compression_specs("lz4,nonsense").is_err());
        assert!(split_compression_specs("zstd,99").is_err());
    }
}
