//! Finding and removing pins that keep a detached program in the kernel: the pins of an
//! XDP link (a detached link still holds its program while it is pinned) and a pin
//! directory of [`Xdp::pin_maps`](super::Xdp::pin_maps) as a whole.

use std::path::{Path, PathBuf};

use super::Error;
use crate::bpf::bpffs::{self, Bpffs};
use crate::bpf::xdp::XdpLink;

/// The pins of the BPF link `link_id` on every bpffs mounted in this mount namespace,
/// found by opening each pin under each mount (symbolic links are not followed; pins
/// that cannot be opened, e.g. for lack of permission, are not its pins as far as this
/// process can tell).
pub(super) fn link_pins(link_id: u32) -> Result<Vec<PathBuf>, Error> {
    let mounts = bpffs::bpffs_mounts().map_err(|source| Error::Io {
        path: PathBuf::from("/proc/self/mountinfo"),
        source,
    })?;
    let mut found = Vec::new();
    for mount in mounts {
        walk(&mount, &mut |path| {
            let same = XdpLink::open_pinned(path)
                .and_then(|l| l.info())
                .is_ok_and(|info| info.id == link_id);
            if same && !found.contains(&path.to_path_buf()) {
                found.push(path.to_path_buf());
            }
        });
    }
    Ok(found)
}

/// Calls `f` with every file below `dir` (not following symbolic links); unreadable
/// directories are skipped.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&entry.path(), f);
        } else if kind.is_file() {
            f(&entry.path());
        }
    }
}

/// What [`unpin_paths`] could not remove.
#[derive(Debug)]
pub(super) struct UnpinFailure {
    /// The pins removed.
    pub(super) removed: Vec<PathBuf>,
    /// The pins that could not be removed.
    pub(super) left: Vec<PathBuf>,
    /// Why the first of them could not.
    pub(super) error: Box<Error>,
}

/// Removes the pins `paths` (each on a bpffs), trying every one; those already gone are
/// left out of the result.
pub(super) fn unpin_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, UnpinFailure> {
    let mut removed = Vec::new();
    let mut left = Vec::new();
    let mut first = None;
    for path in paths {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            continue;
        };
        match Bpffs::at(dir).and_then(|fs| fs.unpin(name)) {
            Ok(true) => removed.push(path.clone()),
            Ok(false) => {}
            Err(e) => {
                left.push(path.clone());
                first.get_or_insert(Box::new(Error::Bpffs(e)));
            }
        }
    }
    match first {
        None => Ok(removed),
        Some(error) => Err(UnpinFailure {
            removed,
            left,
            error,
        }),
    }
}

/// The names of the pins directly inside `dir`, sorted, if [`unpin_dir`] takes `dir`: a
/// directory on a bpffs, not a bpffs mount itself, holding no directory. Anything else
/// is [`Error::NotPinDir`] saying why (or the error that stopped the look).
pub(super) fn pin_dir_names(dir: &Path) -> Result<Vec<String>, Error> {
    let not = |why: String| Error::NotPinDir {
        dir: dir.to_path_buf(),
        why,
    };
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let canonical = dir.canonicalize().map_err(io)?;
    let mounts = bpffs::bpffs_mounts().map_err(|source| Error::Io {
        path: PathBuf::from("/proc/self/mountinfo"),
        source,
    })?;
    if mounts.contains(&canonical) {
        return Err(not(
            "it is a bpffs mount, not a pin directory in one".to_string()
        ));
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(not(format!("it holds {name:?}, not a pin name")));
        };
        if entry.file_type().map_err(io)?.is_dir() {
            return Err(not(format!("it holds the directory `{name}`")));
        }
        names.push(name.to_string());
    }
    names.sort();
    Ok(names)
}

/// Removes every pin directly inside `dir` and then `dir` itself: the pin directory of
/// [`Xdp::pin_maps`](super::Xdp::pin_maps) (maps and link) when the program type is not
/// at hand, e.g. `ferrocat xdp unpin DIR`. Returns the pins removed, sorted. `dir` must
/// be a directory on a bpffs, not a bpffs mount itself, and hold no directory: anything
/// else is [`Error::NotPinDir`] and nothing is removed. Removing the pin of an attached
/// link detaches its program unless something else holds the link.
pub fn unpin_dir(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, Error> {
    let dir = dir.as_ref();
    let fs = Bpffs::at(dir)?;
    let names = pin_dir_names(dir)?;
    let mut removed = Vec::new();
    for name in names {
        if fs.unpin(&name)? {
            removed.push(dir.join(name));
        }
    }
    std::fs::remove_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(removed)
}
