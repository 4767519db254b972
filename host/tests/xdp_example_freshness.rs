//! The freshness check of the example binaries that the XDP kernel tests run
//! (`xdp_support::example`): a binary older than a source it was built from is refused.
//! No root needed.

#[path = "xdp_support/fresh.rs"]
mod fresh;

use fresh::{dep_info_sources, fresh};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
