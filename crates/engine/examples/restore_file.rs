//! Restores one file of an archive to standard output or to a file, streaming its content
//! (like `borg extract --stdout REPO::ARCHIVE PATH`).
//!
//! Usage: `restore_file REPO ARCHIVE PATH [DEST]`.

use std::io::Write;

use rborg_engine::{PassphraseSource, Repository};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("restore_file: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [location, archive, path, rest @ ..] = args.as_slice() else {
        return Err("usage: restore_file REPO ARCHIVE PATH [DEST]".into());
    };
    let mut repo = Repository::open(location, PassphraseSource::Env)?;
    let mut reader = repo.read_file(archive, path)?;
    let copied = match rest.first() {
        Some(dest) => std::io::copy(&mut reader, &mut std::fs::File::create(dest)?)?,
        None => {
            let mut out = std::io::stdout().lock();
            let n = std::io::copy(&mut reader, &mut out)?;
            out.flush()?;
            n
        }
    };
    eprintln!("restored {copied} bytes");
    Ok(())
}
