//! `cargo run --release -p rborg-config --example bench`: load time of a large (2.2 MB)
//! configuration, for the YAML crate comparison in docs/config.md.

use std::path::Path;
use std::time::Instant;

fn main() {
    let mut s = String::from("source_directories:\n");
    for i in 0..20000 {
        s.push_str(&format!("    - /srv/data/dir{i}\n"));
    }
    s.push_str("repositories:\n");
    for i in 0..20000 {
        s.push_str(&format!(
            "    - path: ssh://u@h{i}.example.org/./repo\n      label: r{i}\n      append_only: true\n"
        ));
    }
    s.push_str("keep_daily: 7\ncompression: zstd,3\n");
    let start = Instant::now();
    let parsed = rborg_config::node::parse(&s, Path::new("big.yaml"));
    let parse = start.elapsed();
    let start = Instant::now();
    let loaded = rborg_config::load_config_str(&s, Path::new("big.yaml"), None);
    println!(
        "{} bytes: parse {parse:?} (ok: {}), full load+validate {:?} (ok: {})",
        s.len(),
        parsed.is_ok(),
        start.elapsed(),
        loaded.is_ok()
    );
}
