//! `cargo run -p rborg-config --example show -- FILE`: the normalised configuration as JSON
//! (compare with `borgmatic config validate --show -c FILE`).

fn main() {
    for (path, result) in rborg_config::validate(
        &std::env::args_os()
            .skip(1)
            .map(Into::into)
            .collect::<Vec<_>>(),
    ) {
        match result {
            Ok(l) => println!(
                "{}",
                serde_json::to_string_pretty(&l.tree.to_json()).unwrap_or_default()
            ),
            Err(e) => println!("{}: {e}", path.display()),
        }
    }
}
