//! Rebuilds the crate when a migration is added or changed: `embed_migrations!` reads the
//! migration directories at compile time, and Cargo does not watch them otherwise.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
