//! Prints how well a repository deduplicates: per archive (as `borg info REPO::ARCHIVE`) and
//! for all archives (as `borg info REPO`), as tab-separated `NAME ORIGINAL COMPRESSED
//! DEDUPLICATED` lines, the totals last under the name `*`, then the ratio.
//!
//! Usage: `dedup_stats REPO`.

use rborg_engine::{PassphraseSource, Repository};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let location = std::env::args().nth(1).ok_or("usage: dedup_stats REPO")?;
    let mut repo = Repository::open(&location, PassphraseSource::Env)?;
    for archive in repo.list_archives() {
        let s = repo.archive_stats(&archive.name)?;
        println!(
            "{}\t{}\t{}\t{}",
            archive.name, s.original_size, s.compressed_size, s.deduplicated_size
        );
    }
    let total = repo.repository_stats()?;
    println!(
        "*\t{}\t{}\t{}",
        total.original_size, total.compressed_size, total.deduplicated_size
    );
    if total.deduplicated_size > 0 {
        println!(
            "ratio\t{:.2}",
            total.original_size as f64 / total.deduplicated_size as f64
        );
    }
    Ok(())
}
