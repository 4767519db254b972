//! Helpers of the XDP kernel tests: the example binaries they run (refused when older
//! than their sources) and waiting for a program to leave the kernel.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

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
    if let Err(why) = fresh(&bin, &dir.join(format!("{name}.d"))) {
        panic!("{why}: rebuild the examples first (`{BUILD}`; scripts/test.sh does)");
    }
    bin
}

fn modified(path: &Path) -> Result<SystemTime, String> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether `bin` is at least as new as every source its dep-info file `deps` (written by
/// cargo next to it: `BIN: SOURCE SOURCE ..`, spaces in paths escaped as `\ `) lists.
fn fresh(bin: &Path, deps: &Path) -> Result<(), String> {
    let built = modified(bin).map_err(|e| format!("{e} (not built)"))?;
    let text = std::fs::read_to_string(deps).map_err(|e| {
        format!(
            "cannot tell whether {} is up to date: {}: {e}",
            bin.display(),
            deps.display()
        )
    })?;
    let sources = dep_info_sources(&text).ok_or_else(|| {
        format!(
            "cannot tell whether {} is up to date: {} is not a dep-info file",
            bin.display(),
            deps.display()
        )
    })?;
    for source in sources {
        let changed =
            modified(&source).map_err(|e| format!("a source of {}: {e}", bin.display()))?;
        if changed > built {
            return Err(format!(
                "{} is older than its source {}",
                bin.display(),
                source.display()
            ));
        }
    }
    Ok(())
}

/// The sources of the first rule of a Makefile-style dep-info text; `None` if it has no
/// rule.
fn dep_info_sources(text: &str) -> Option<Vec<PathBuf>> {
    let line = text.lines().next()?;
    // The target ends at the first `: ` (a target path may hold `:` only escaped).
    let (_, rest) = line
        .split_once(": ")
        .or_else(|| line.strip_suffix(':').map(|t| (t, "")))?;
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
            }
            ' ' => {
                if !cur.is_empty() {
                    out.push(PathBuf::from(std::mem::take(&mut cur)));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(cur));
    }
    Some(out)
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

#[test]
fn dep_info_lists_sources_with_escaped_spaces() {
    let text = "/t/examples/x: /s/a.rs /s/my\\ dir/b.rs\n\n/s/a.rs:\n";
    assert_eq!(
        dep_info_sources(text),
        Some(vec![
            PathBuf::from("/s/a.rs"),
            PathBuf::from("/s/my dir/b.rs")
        ])
    );
    assert_eq!(dep_info_sources(""), None);
}

#[test]
fn a_binary_older_than_a_source_is_refused() {
    let dir = std::env::temp_dir().join(format!("ferrocat-fresh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let (bin, src, deps) = (dir.join("bin"), dir.join("src.rs"), dir.join("bin.d"));
    let write = |p: &Path, at: SystemTime| {
        std::fs::write(p, b"x").expect("write");
        let f = std::fs::File::options().write(true).open(p).expect("open");
        f.set_modified(at).expect("set mtime");
    };
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    write(&src, t0);
    write(&bin, t0 + Duration::from_secs(1));
    std::fs::write(&deps, format!("{}: {}\n", bin.display(), src.display())).expect("write");
    let ok = fresh(&bin, &deps);
    write(&src, t0 + Duration::from_secs(2));
    let stale = fresh(&bin, &deps);
    let no_deps = fresh(&bin, &dir.join("missing.d"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ok, Ok(()));
    let e = stale.expect_err("the source is newer");
    assert!(
        e.contains("is older than its source") && e.contains("src.rs"),
        "{e}"
    );
    let e = no_deps.expect_err("no dep-info");
    assert!(e.contains("cannot tell whether"), "{e}");
}
