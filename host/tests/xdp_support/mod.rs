//! Helpers of the XDP kernel tests: the example binaries they run (refused when older
//! than their sources) and waiting for a program to leave the kernel.

mod fresh;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The command that builds the examples.
const BUILD: &str = "cargo build -p ferrocat --examples";

/// The example binary `name`, built next to this test (`target/.../examples/NAME`).
/// Refused, with the command that rebuilds it, when it is missing or older than any
/// source file it was built from: a `cargo test` that selects tests does not build the
/// examples, and an old binary would test old code.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .join("examples");
    let bin = dir.join(name);
    if let Err(why) = fresh::fresh(&bin, &dir.join(format!("{name}.d"))) {
        panic!("{why}: rebuild the examples first (`{BUILD}`; scripts/test.sh does)");
    }
    bin
}

/// Whether a program with id `id` is loaded in the kernel (looked up by id, holding no
/// descriptor that would keep it loaded).
pub fn program_loaded(id: u32) -> bool {
    ferrocat::bpf::prog::program_ids()
        .expect("list program ids")
        .contains(&id)
}

/// Waits (up to 10 s) until program `id` has left the kernel: the kernel frees a program
/// after its last holder is gone, asynchronously when that holder was a pin.
pub fn wait_unloaded(id: u32, what: &str) {
    let start = Instant::now();
    while program_loaded(id) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: program id {id} still loaded after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
