//! The `ferrocat` command-line tool.

fn main() {
    println!("ferrocat {}", env!("CARGO_PKG_VERSION"));
}
