//! Backs up a directory into a new archive and prints the statistics (like
//! `borg create --stats REPO::ARCHIVE DIR`), one `key value` line each.
//!
//! Usage: `backup_dir REPO ARCHIVE DIR`.

use rborg_engine::{CreateOptions, PassphraseSource, Repository, Source};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [location, archive, dir] = args.as_slice() else {
        return Err("usage: backup_dir REPO ARCHIVE DIR".into());
    };
    let mut repo = Repository::open(location, PassphraseSource::Env)?;
    let options = CreateOptions {
        compression: "zstd,3".into(),
        ..CreateOptions::default()
    };
    let stats = repo.create(archive, vec![Source::Path(dir.into())], &options)?;
    println!("archive {}", stats.name);
    println!("id {}", stats.id);
    println!("nfiles {}", stats.nfiles);
    println!("original_size {}", stats.original_size);
    println!("compressed_size {}", stats.compressed_size);
    println!("deduplicated_size {}", stats.deduplicated_size);
    repo.close()?;
    Ok(())
}
