//! Lists the archives of a repository, oldest first, like `borg list --short REPO`.
//!
//! Usage: `list_archives REPO` (passphrase from `BORG_PASSPHRASE`/`BORG_PASSCOMMAND`).

use rborg_engine::{PassphraseSource, Repository};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let location = std::env::args().nth(1).ok_or("usage: list_archives REPO")?;
    let repo = Repository::open(&location, PassphraseSource::Env)?;
    for archive in repo.list_archives() {
        println!("{}", archive.name);
    }
    Ok(())
}
