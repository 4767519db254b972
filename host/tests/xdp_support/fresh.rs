//! Whether an example binary is at least as new as its sources, from the dep-info file
//! cargo writes next to it. Its tests run once, in `xdp_example_freshness.rs` (the
//! kernel test binaries that use it need root; these tests do not).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

fn modified(path: &Path) -> Result<SystemTime, String> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether `bin` is at least as new as every source its dep-info file `deps` (written by
/// cargo next to it: `BIN: SOURCE SOURCE ..`, spaces in paths escaped as `\ `) lists.
pub fn fresh(bin: &Path, deps: &Path) -> Result<(), String> {
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
pub fn dep_info_sources(text: &str) -> Option<Vec<PathBuf>> {
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
