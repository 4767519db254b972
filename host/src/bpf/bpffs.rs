//! bpffs: finding or mounting it, pinning objects and opening pinned ones.
//!
//! A pin keeps a map, program or link alive after the process that made it exits, under
//! a path of a bpf filesystem. [`Bpffs`] is a checked bpffs directory:
//! [`Bpffs::default_mount`] uses `/sys/fs/bpf` (mounting it if absent and allowed),
//! [`Bpffs::at`] any directory that is on a bpffs. Opening a pin checks that it holds
//! the kind of object (and map type) the caller expects.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::map::{Map, MapError, MapType};
use super::prog::Program;
use super::sys::{self, BPF_FS_MAGIC, Cmd, Kernel, ObjKind, SysError};

/// Where bpffs is conventionally mounted.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// Errors of bpffs operations, each naming the path.
#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    /// No bpffs at the default place, and mounting one failed.
    #[error(
        "bpffs is not mounted at {path} and mounting it failed ({source}); mount it as root \
         with `mount -t bpf bpf {path}` (needs CAP_SYS_ADMIN)",
        path = path.display()
    )]
    NotMounted {
        /// Where it was expected.
        path: PathBuf,
        /// Why mounting failed.
        source: SysError,
    },
    /// The directory is not on a bpf filesystem.
    #[error(
        "{} is not on a bpf filesystem (pins need one: `mount -t bpf bpf DIR`)",
        path.display()
    )]
    NotBpffs {
        /// The directory.
        path: PathBuf,
    },
    /// Something is already pinned (or a file exists) at the path.
    #[error("cannot pin at {}: the path exists", path.display())]
    PathExists {
        /// The path.
        path: PathBuf,
    },
    /// Nothing is pinned at the path.
    #[error("nothing is pinned at {}", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The pin holds another kind of object.
    #[error("{} holds a {found:?}, expected a {expected:?}", path.display())]
    WrongKind {
        /// The path.
        path: PathBuf,
        /// What the caller wanted.
        expected: ObjKind,
        /// What the pin holds.
        found: ObjKind,
    },
    /// The pin holds a map of another type.
    #[error("{} holds a map of type {found}, expected {expected:?}", path.display())]
    WrongMapType {
        /// The path.
        path: PathBuf,
        /// What the caller wanted.
        expected: MapType,
        /// The kernel's map type number found.
        found: u32,
    },
    /// The name is absolute or leaves the bpffs directory (`..`).
    #[error("invalid pin name {name:?}: must be a relative path without `..`")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// No permission for the operation.
    #[error("{}: {source} (pinning and opening pins needs CAP_BPF or CAP_SYS_ADMIN and \
             write access to the bpffs directory)", path.display())]
    Permission {
        /// The path.
        path: PathBuf,
        /// The kernel's error.
        source: SysError,
    },
    /// Another kernel error.
    #[error("{}: {source}", path.display())]
    Sys {
        /// The path.
        path: PathBuf,
        /// The kernel's error.
        source: SysError,
    },
    /// The pinned map could not be used.
    #[error("{}: {source}", path.display())]
    Map {
        /// The path.
        path: PathBuf,
        /// The map error.
        source: MapError,
    },
}

impl BpffsError {
    fn from_sys(path: &Path, source: SysError) -> BpffsError {
        let path = path.to_path_buf();
        match source.errno() {
            Some(libc::EEXIST) => BpffsError::PathExists { path },
            Some(libc::ENOENT) => BpffsError::NotFound { path },
            Some(libc::EPERM | libc::EACCES) => BpffsError::Permission { path, source },
            _ => BpffsError::Sys { path, source },
        }
    }
}

/// One line of `/proc/self/mountinfo`: where something is mounted and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount point.
    pub mount_point: PathBuf,
    /// The filesystem type (`bpf` for bpffs).
    pub fs_type: String,
}

/// Undoes the octal escapes of mountinfo (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(digits) = b.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo` (proc(5)): `id parent major:minor root mount-point
/// options [optional fields...] - fstype source super-options`. Malformed lines are
/// skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mount_point = fields.get(4)?;
            let sep = fields.iter().position(|f| *f == "-")?;
            let fs_type = fields.get(sep + 1)?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape(mount_point)),
                fs_type: (*fs_type).to_string(),
            })
        })
        .collect()
}

/// The mount points of every bpffs visible to this process.
pub fn bpffs_mounts() -> io::Result<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.fs_type == "bpf")
        .map(|m| m.mount_point)
        .collect())
}

/// A directory on a bpf filesystem, where objects are pinned.
#[derive(Debug, Clone)]
pub struct Bpffs {
    root: PathBuf,
    kernel: Arc<dyn Kernel>,
}

impl Bpffs {
    /// `/sys/fs/bpf`, mounting a bpffs there if none is (needs CAP_SYS_ADMIN); a clear
    /// error if it is absent and cannot be mounted.
    pub fn default_mount() -> Result<Bpffs, BpffsError> {
        let root = PathBuf::from(DEFAULT_BPFFS);
        if sys::current().fs_magic(&root).ok() != Some(BPF_FS_MAGIC) {
            return Bpffs::mount_at(root);
        }
        Bpffs::at(root)
    }

    /// Mounts a new bpffs on the existing directory `dir` (e.g. a private one for
    /// tests); unmount it with `umount` when done.
    pub fn mount_at(dir: impl Into<PathBuf>) -> Result<Bpffs, BpffsError> {
        let root = dir.into();
        sys::current()
            .mount_bpffs(&root)
            .map_err(|source| BpffsError::NotMounted {
                path: root.clone(),
                source,
            })?;
        Bpffs::at(root)
    }

    /// The directory `root`, which must be on a bpf filesystem.
    pub fn at(root: impl Into<PathBuf>) -> Result<Bpffs, BpffsError> {
        let root = root.into();
        let kernel = sys::current();
        match kernel.fs_magic(&root) {
            Ok(BPF_FS_MAGIC) => Ok(Bpffs { root, kernel }),
            Ok(_) => Err(BpffsError::NotBpffs { path: root }),
            Err(source) => Err(BpffsError::from_sys(&root, source)),
        }
    }

    /// The bpffs directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of the pin `name` (a relative path, may contain directories).
    pub fn path(&self, name: &str) -> Result<PathBuf, BpffsError> {
        let rel = Path::new(name);
        let ok = !name.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !ok {
            return Err(BpffsError::InvalidName {
                name: name.to_string(),
            });
        }
        Ok(self.root.join(rel))
    }

    /// Creates the directory `name` (and its parents) inside the bpffs.
    pub fn create_dir(&self, name: &str) -> Result<PathBuf, BpffsError> {
        let path = self.path(name)?;
        fs::create_dir_all(&path).map_err(|source| {
            BpffsError::from_sys(
                &path,
                SysError {
                    cmd: Cmd::ObjPin,
                    source,
                },
            )
        })?;
        Ok(path)
    }

    /// Pins the object (map, program or link) at `name`.
    pub fn pin(&self, obj: &impl AsFd, name: &str) -> Result<PathBuf, BpffsError> {
        let path = self.path(name)?;
        let c = cpath(&path)?;
        self.kernel
            .obj_pin(obj.as_fd(), &c)
            .map_err(|e| BpffsError::from_sys(&path, e))?;
        Ok(path)
    }

    /// Opens the object pinned at `name`, checking it is a `kind`.
    pub fn open(&self, name: &str, kind: ObjKind) -> Result<OwnedFd, BpffsError> {
        let path = self.path(name)?;
        open_path(&*self.kernel, &path, kind)
    }

    /// Opens the map pinned at `name`, checking its type.
    pub fn open_map(&self, name: &str, expected: MapType) -> Result<Map, BpffsError> {
        let path = self.path(name)?;
        open_map_path(&path, expected)
    }

    /// Opens the program pinned at `name`.
    pub fn open_prog(&self, name: &str) -> Result<Program, BpffsError> {
        let fd = self.open(name, ObjKind::Prog)?;
        Ok(Program::from_fd(fd, name))
    }

    /// Removes the pin `name`; returns whether there was one. The object lives on while
    /// other descriptors, pins or attachments hold it.
    pub fn unpin(&self, name: &str) -> Result<bool, BpffsError> {
        let path = self.path(name)?;
        match self.kernel.unlink(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(BpffsError::from_sys(&path, e)),
        }
    }
}

fn cpath(path: &Path) -> Result<std::ffi::CString, BpffsError> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| BpffsError::InvalidName {
        name: path.display().to_string(),
    })
}

/// Opens the object pinned at `path` (anywhere on a bpffs), checking it is a `kind`.
pub fn open_path(kernel: &dyn Kernel, path: &Path, kind: ObjKind) -> Result<OwnedFd, BpffsError> {
    let c = cpath(path)?;
    let fd = kernel
        .obj_get(&c)
        .map_err(|e| BpffsError::from_sys(path, e))?;
    let found = kernel
        .obj_kind(fd.as_fd())
        .map_err(|e| BpffsError::from_sys(path, e))?;
    if found != kind {
        return Err(BpffsError::WrongKind {
            path: path.to_path_buf(),
            expected: kind,
            found,
        });
    }
    Ok(fd)
}

/// Opens the map pinned at `path`, checking its type.
pub fn open_map_path(path: &Path, expected: MapType) -> Result<Map, BpffsError> {
    let kernel = sys::current();
    let fd = open_path(&*kernel, path, ObjKind::Map)?;
    let info =
        super::map::map_info_of(&*kernel, fd.as_fd()).map_err(|e| BpffsError::from_sys(path, e))?;
    if info.map_type != expected.number() {
        return Err(BpffsError::WrongMapType {
            path: path.to_path_buf(),
            expected,
            found: info.map_type,
        });
    }
    Map::from_fd(fd).map_err(|source| BpffsError::Map {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::map::MapSpec;
    use crate::bpf::sys::{FakeKernel, use_fake};

    const MOUNTINFO: &str = "\
22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
31 22 0:27 / /sys/fs/bpf rw,nosuid,nodev shared:12 - bpf bpf rw,mode=700
97 30 0:50 / /tmp/my\\040pins rw,relatime - bpf bpf rw
40 1 8:1 / / rw - ext4 /dev/sda1 rw
garbage line
";

    #[test]
    fn mountinfo_lists_bpffs_mounts() {
        let bpf: Vec<PathBuf> = parse_mountinfo(MOUNTINFO)
            .into_iter()
            .filter(|m| m.fs_type == "bpf")
            .map(|m| m.mount_point)
            .collect();
        assert_eq!(
            bpf,
            vec![PathBuf::from("/sys/fs/bpf"), PathBuf::from("/tmp/my pins")]
        );
    }

    #[test]
    fn default_mount_mounts_when_absent() {
        let fake = FakeKernel::new(1);
        let _g = use_fake(fake.clone());
        let fs = Bpffs::default_mount().expect("mounted by the fake");
        assert_eq!(fs.root(), Path::new(DEFAULT_BPFFS));
    }

    #[test]
    fn a_plain_directory_is_not_bpffs() {
        let fake = FakeKernel::new(1);
        let _g = use_fake(fake);
        let e = Bpffs::at(std::env::temp_dir()).expect_err("tmp is no bpffs");
        assert!(matches!(e, BpffsError::NotBpffs { .. }), "{e}");
        assert!(e.to_string().contains("mount -t bpf"), "{e}");
    }

    #[test]
    fn pins_are_checked_for_kind_and_type() {
        let fake = FakeKernel::new(1);
        let _g = use_fake(fake.clone());
        let fs = Bpffs::mount_at("/fake/bpffs").expect("fake mount");
        let map = Map::create(&MapSpec::hash("h", 4, 4, 4)).expect("map");
        map.update(&[1, 0, 0, 0], &[9, 0, 0, 0], Default::default())
            .expect("update");
        let path = fs.pin(&map, "group/h").expect("pin");
        assert_eq!(path, Path::new("/fake/bpffs/group/h"));
        let e = fs.pin(&map, "group/h").expect_err("exists");
        assert!(matches!(e, BpffsError::PathExists { .. }), "{e}");
        let again = fs.open_map("group/h", MapType::Hash).expect("open");
        assert_eq!(
            again.lookup(&[1, 0, 0, 0]).expect("lookup"),
            Some(vec![9, 0, 0, 0])
        );
        let e = fs
            .open_map("group/h", MapType::Array)
            .expect_err("wrong type");
        assert!(
            matches!(e, BpffsError::WrongMapType { found: 1, .. }),
            "{e}"
        );
        let e = fs.open_prog("group/h").expect_err("not a program");
        assert!(
            matches!(
                e,
                BpffsError::WrongKind {
                    found: ObjKind::Map,
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            fs.open_map("nothing", MapType::Hash),
            Err(BpffsError::NotFound { .. })
        ));
        assert!(matches!(
            fs.path("../etc"),
            Err(BpffsError::InvalidName { .. })
        ));
        assert!(matches!(
            fs.path("/etc"),
            Err(BpffsError::InvalidName { .. })
        ));
        assert!(fs.unpin("group/h").expect("unpin"));
        assert!(!fs.unpin("group/h").expect("unpin again"));
    }
}
