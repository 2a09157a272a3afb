//! `cargo run -p rborg-config --example validate -- FILE...`: what `rborg config validate`
//! will print (each file's verdict, warnings and errors).

fn main() {
    let paths: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let mut failed = false;
    for (path, result) in rborg_config::validate(&paths) {
        match result {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("{w}");
                }
                println!("{}: valid", path.display());
            }
            Err(e) => {
                failed = true;
                println!("{}: invalid\n{e}", path.display());
            }
        }
    }
    std::process::exit(i32::from(failed));
}
