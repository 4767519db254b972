//! The `ferrocat-sim` command-line tool.

fn main() {
    println!("ferrocat-sim {}", env!("CARGO_PKG_VERSION"));
}
