//! `cargo run -p rborg-config --example template`: print the commented template.

fn main() {
    print!("{}", rborg_config::generate_template());
}
