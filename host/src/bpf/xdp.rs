//! XDP: attaching programs to interfaces through BPF links, replacing and detaching them.
//!
//! [`XdpLink::attach`] creates a `BPF_LINK_CREATE` link (native driver mode unless
//! generic mode is asked for). An unpinned link detaches when its last descriptor
//! closes, e.g. when the process dies; a pinned one ([`XdpLink::pin`]) stays until it is
//! detached ([`XdpLink::detach`], [`detach_interface`]). [`XdpLink::replace`] swaps the
//! program atomically: every frame sees either the old or the new program.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::bpffs::{self, Bpffs, BpffsError};
use super::prog::{BPF_XDP, Program, get_u32};
use super::sys::{self, IdKind, Kernel, ObjKind, SysError};

// XDP flags (include/uapi/linux/if_link.h).
/// `XDP_FLAGS_SKB_MODE`: generic XDP in the network stack.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP in the driver.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `BPF_LINK_TYPE_XDP` (`enum bpf_link_type`).
const BPF_LINK_TYPE_XDP: u32 = 6;

/// Where in the receive path the program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum XdpMode {
    /// In the driver, before an skb exists (`XDP_FLAGS_DRV_MODE`): the fast path, and
    /// ferrocat's default.
    #[default]
    Native,
    /// In the network stack, after skb allocation (`XDP_FLAGS_SKB_MODE`): works on every
    /// interface, slower; `XDP_TX` goes through the stack.
    Generic,
}

impl XdpMode {
    const fn flags(self) -> u32 {
        match self {
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// Errors of XDP attachment, each saying what the user can do.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// No interface of that name (or index) in this network namespace.
    #[error("interface {iface} does not exist (in this network namespace)")]
    InterfaceMissing {
        /// The interface.
        iface: String,
    },
    /// No permission.
    #[error(
        "no permission to {what} on {iface}: {source} (XDP needs CAP_NET_ADMIN and CAP_BPF, \
         or CAP_SYS_ADMIN; run as root or grant them)"
    )]
    Permission {
        /// The operation.
        what: &'static str,
        /// The interface.
        iface: String,
        /// The kernel's error.
        source: SysError,
    },
    /// Another XDP program is attached to the interface.
    #[error(
        "{iface} already runs an XDP program{}; detach it first (`ferrocat xdp detach {iface}`)",
        prog_id.map(|id| format!(" (id {id})")).unwrap_or_default()
    )]
    AlreadyAttached {
        /// The interface.
        iface: String,
        /// The attached program's id, if known.
        prog_id: Option<u32>,
    },
    /// The driver has no native XDP.
    #[error("{iface} does not support {mode} XDP ({source}); try generic mode")]
    ModeUnsupported {
        /// The interface.
        iface: String,
        /// The mode asked for.
        mode: XdpMode,
        /// The kernel's error.
        source: SysError,
    },
    /// The link was detached already (e.g. its interface disappeared).
    #[error("the XDP link on {iface} is detached")]
    Detached {
        /// The interface.
        iface: String,
    },
    /// `BPF_F_REPLACE` found another program than the one expected.
    #[error("{iface} no longer runs the expected program; not replaced")]
    NotExpectedProgram {
        /// The interface.
        iface: String,
    },
    /// A pinned path that is not an XDP link.
    #[error("{} is not an XDP link", path.display())]
    NotXdpLink {
        /// The path.
        path: PathBuf,
    },
    /// A bpffs error while pinning or opening a link.
    #[error(transparent)]
    Bpffs(#[from] BpffsError),
    /// Another kernel error.
    #[error("{what} on {iface}: {source}")]
    Sys {
        /// The operation.
        what: &'static str,
        /// The interface.
        iface: String,
        /// The kernel's error.
        source: SysError,
    },
}

/// The index of the interface `name` in this network namespace.
pub fn ifindex(name: &str) -> Result<u32, XdpError> {
    let missing = || XdpError::InterfaceMissing {
        iface: name.to_string(),
    };
    let c = CString::new(name).map_err(|_| missing())?;
    // SAFETY: NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(missing())
    } else {
        Ok(index)
    }
}

/// The name of interface `index` in this network namespace, if it exists.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes as required.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// What a link reports about itself (`struct bpf_link_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// `enum bpf_link_type` (6 for XDP).
    pub link_type: u32,
    /// Kernel-wide link id.
    pub id: u32,
    /// Id of the program on the link (0 once detached).
    pub prog_id: u32,
    /// For XDP links: the interface index (0 once detached).
    pub ifindex: u32,
}

fn link_info_of(kernel: &dyn Kernel, fd: BorrowedFd<'_>) -> Result<LinkInfo, SysError> {
    // struct bpf_link_info: type, id, prog_id, then a union at offset 16 whose xdp
    // member starts with the ifindex.
    let mut b = [0u8; 64];
    kernel.obj_get_info(fd, &mut b)?;
    Ok(LinkInfo {
        link_type: get_u32(&b, 0),
        id: get_u32(&b, 4),
        prog_id: get_u32(&b, 8),
        ifindex: get_u32(&b, 16),
    })
}

/// An XDP program attached to an interface through a BPF link.
///
/// Dropping it closes the descriptor: an unpinned link then detaches, a pinned one stays
/// attached.
pub struct XdpLink {
    fd: OwnedFd,
    kernel: Arc<dyn Kernel>,
    ifindex: u32,
    iface: String,
}

impl fmt::Debug for XdpLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpLink")
            .field("iface", &self.iface)
            .field("ifindex", &self.ifindex)
            .field("fd", &self.fd)
            .finish()
    }
}

impl AsFd for XdpLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl XdpLink {
    /// Attaches `prog` to the interface named `iface` in `mode`.
    pub fn attach(prog: &Program, iface: &str, mode: XdpMode) -> Result<XdpLink, XdpError> {
        let index = ifindex(iface)?;
        XdpLink::attach_index(prog, index, iface, mode)
    }

    /// Attaches `prog` to interface `index` (named `iface` in errors) in `mode`.
    pub fn attach_index(
        prog: &Program,
        index: u32,
        iface: &str,
        mode: XdpMode,
    ) -> Result<XdpLink, XdpError> {
        let kernel = Arc::clone(prog.kernel());
        match kernel.link_create(prog.as_fd(), index, BPF_XDP, mode.flags()) {
            Ok(fd) => Ok(XdpLink {
                fd,
                kernel,
                ifindex: index,
                iface: iface.to_string(),
            }),
            Err(source) => Err(match source.errno() {
                Some(libc::ENODEV) => XdpError::InterfaceMissing {
                    iface: iface.to_string(),
                },
                Some(libc::EPERM | libc::EACCES) => XdpError::Permission {
                    what: "attach an XDP program",
                    iface: iface.to_string(),
                    source,
                },
                Some(libc::EBUSY | libc::EEXIST) => XdpError::AlreadyAttached {
                    iface: iface.to_string(),
                    prog_id: kernel.xdp_attached(index).ok().and_then(|a| a.prog_id),
                },
                Some(libc::EOPNOTSUPP) => XdpError::ModeUnsupported {
                    iface: iface.to_string(),
                    mode,
                    source,
                },
                _ => XdpError::Sys {
                    what: "BPF_LINK_CREATE",
                    iface: iface.to_string(),
                    source,
                },
            }),
        }
    }

    /// The interface's name as given at attach (or found at open).
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The link's id, program id and interface.
    pub fn info(&self) -> Result<LinkInfo, XdpError> {
        link_info_of(&*self.kernel, self.fd.as_fd()).map_err(|e| self.sys("link info", e))
    }

    fn sys(&self, what: &'static str, source: SysError) -> XdpError {
        match source.errno() {
            Some(libc::EPERM | libc::EACCES) => XdpError::Permission {
                what,
                iface: self.iface.clone(),
                source,
            },
            Some(libc::ENOLINK) => XdpError::Detached {
                iface: self.iface.clone(),
            },
            _ => XdpError::Sys {
                what,
                iface: self.iface.clone(),
                source,
            },
        }
    }

    /// Replaces the link's program with `new`, atomically (`BPF_LINK_UPDATE`).
    pub fn replace(&self, new: &Program) -> Result<(), XdpError> {
        self.kernel
            .link_update(self.fd.as_fd(), new.as_fd(), None)
            .map_err(|e| self.sys("replace the XDP program", e))
    }

    /// Replaces the link's program with `new` only if it still runs `old`
    /// (`BPF_F_REPLACE`).
    pub fn replace_if(&self, old: &Program, new: &Program) -> Result<(), XdpError> {
        self.kernel
            .link_update(self.fd.as_fd(), new.as_fd(), Some(old.as_fd()))
            .map_err(|e| match e.errno() {
                Some(libc::EPERM) => XdpError::NotExpectedProgram {
                    iface: self.iface.clone(),
                },
                _ => self.sys("replace the XDP program", e),
            })
    }

    /// Pins the link at `name` in `fs`: it then stays attached after this process exits.
    pub fn pin(&self, fs: &Bpffs, name: &str) -> Result<PathBuf, XdpError> {
        Ok(fs.pin(self, name)?)
    }

    /// Opens the XDP link pinned at `path`.
    pub fn open_pinned(path: &Path) -> Result<XdpLink, XdpError> {
        let kernel = sys::current();
        let fd = bpffs::open_path(&*kernel, path, ObjKind::Link)?;
        XdpLink::from_fd(kernel, fd).map_err(|e| match e {
            XdpError::NotXdpLink { .. } => XdpError::NotXdpLink {
                path: path.to_path_buf(),
            },
            other => other,
        })
    }

    fn from_fd(kernel: Arc<dyn Kernel>, fd: OwnedFd) -> Result<XdpLink, XdpError> {
        let info = link_info_of(&*kernel, fd.as_fd()).map_err(|source| XdpError::Sys {
            what: "link info",
            iface: "?".into(),
            source,
        })?;
        if info.link_type != BPF_LINK_TYPE_XDP {
            return Err(XdpError::NotXdpLink {
                path: PathBuf::new(),
            });
        }
        let iface = ifname(info.ifindex).unwrap_or_else(|| format!("ifindex {}", info.ifindex));
        Ok(XdpLink {
            fd,
            kernel,
            ifindex: info.ifindex,
            iface,
        })
    }

    /// Detaches the program from the interface now (`BPF_LINK_DETACH`), even if the link
    /// is pinned or other descriptors exist; pins of a detached link remain as files
    /// until unpinned.
    pub fn detach(self) -> Result<(), XdpError> {
        match self.kernel.link_detach(self.fd.as_fd()) {
            Ok(()) => Ok(()),
            // Already detached (e.g. the interface went away): nothing left to do.
            Err(e) if e.errno() == Some(libc::ENOLINK) => Ok(()),
            Err(e) => Err(self.sys("detach the XDP program", e)),
        }
    }
}

/// The XDP link attached to the interface named `iface` in this network namespace, if
/// its program was attached through a link (not through netlink).
///
/// Link ids are global while interface indexes are per namespace, so a candidate link
/// must also carry the program rtnetlink reports on this namespace's interface.
pub fn find_link(iface: &str) -> Result<Option<XdpLink>, XdpError> {
    let index = ifindex(iface)?;
    let kernel = sys::current();
    let sys_err = |what, source| XdpError::Sys {
        what,
        iface: iface.to_string(),
        source,
    };
    let attached = kernel
        .xdp_attached(index)
        .map_err(|e| sys_err("query the attached XDP program", e))?;
    let Some(prog_id) = attached.prog_id else {
        return Ok(None);
    };
    let mut start = 0;
    while let Some(id) = kernel
        .get_next_id(IdKind::Link, start)
        .map_err(|e| match e.errno() {
            Some(libc::EPERM) => XdpError::Permission {
                what: "list BPF links",
                iface: iface.to_string(),
                source: e,
            },
            _ => sys_err("list BPF links", e),
        })?
    {
        start = id;
        let fd = match kernel.get_fd_by_id(IdKind::Link, id) {
            Ok(fd) => fd,
            // Gone between listing and opening.
            Err(e) if e.errno() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(sys_err("open a BPF link", e)),
        };
        let info = match link_info_of(&*kernel, fd.as_fd()) {
            Ok(info) => info,
            Err(e) if e.errno() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(sys_err("read BPF link info", e)),
        };
        if info.link_type == BPF_LINK_TYPE_XDP && info.ifindex == index && info.prog_id == prog_id {
            return Ok(Some(XdpLink {
                fd,
                kernel,
                ifindex: index,
                iface: iface.to_string(),
            }));
        }
    }
    Ok(None)
}

/// The XDP program attached to `iface` (by link or otherwise), as rtnetlink reports it.
pub fn attached_program(iface: &str) -> Result<Option<u32>, XdpError> {
    let index = ifindex(iface)?;
    sys::current()
        .xdp_attached(index)
        .map(|a| a.prog_id)
        .map_err(|source| XdpError::Sys {
            what: "query the attached XDP program",
            iface: iface.to_string(),
            source,
        })
}

/// Detaches the XDP link on `iface`; returns whether there was one.
pub fn detach_interface(iface: &str) -> Result<bool, XdpError> {
    match find_link(iface)? {
        Some(link) => link.detach().map(|()| true),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::prog::LoadOptions;
    use crate::bpf::sys::{FakeKernel, use_fake};
    use ferrocat_plugin_api::ebpf::insn::{Insn, encode};

    fn prog(fake: &Arc<FakeKernel>, name: &str) -> Program {
        Program::load_with(
            fake.clone(),
            &encode(&[Insn::Exit]),
            &LoadOptions::xdp(name),
        )
        .expect("load")
    }

    #[test]
    fn attach_replace_detach_on_the_fake() {
        let fake = FakeKernel::new(1);
        let _g = use_fake(fake.clone());
        let a = prog(&fake, "a");
        let b = prog(&fake, "b");
        let link = XdpLink::attach_index(&a, 7, "veth7", XdpMode::Native).expect("attach");
        let a_id = a.id().expect("id");
        let b_id = b.id().expect("id");
        assert_eq!(fake.attached_prog(7), Some(a_id));
        let e = XdpLink::attach_index(&b, 7, "veth7", XdpMode::Native).expect_err("busy");
        assert!(
            matches!(e, XdpError::AlreadyAttached { prog_id: Some(id), .. } if id == a_id),
            "{e}"
        );
        assert!(e.to_string().contains("ferrocat xdp detach veth7"), "{e}");
        link.replace(&b).expect("replace");
        assert_eq!(fake.attached_prog(7), Some(b_id));
        let e = link
            .replace_if(&a, &b)
            .expect_err("a is no longer attached");
        assert!(matches!(e, XdpError::NotExpectedProgram { .. }), "{e}");
        assert_eq!(link.info().expect("info").prog_id, b_id);
        link.detach().expect("detach");
        assert_eq!(fake.attached_prog(7), None);
    }

    #[test]
    fn missing_interface_is_named() {
        let e = ifindex("no-such-if0").expect_err("missing");
        assert_eq!(
            e.to_string(),
            "interface no-such-if0 does not exist (in this network namespace)"
        );
        assert!(ifindex("lo").is_ok());
        assert_eq!(ifname(ifindex("lo").expect("lo")).as_deref(), Some("lo"));
    }

    #[test]
    fn generic_and_native_flags() {
        assert_eq!(XdpMode::Native.flags(), 4);
        assert_eq!(XdpMode::Generic.flags(), 2);
        assert_eq!(XdpMode::default(), XdpMode::Native);
    }
}
