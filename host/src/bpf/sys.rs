//! The raw bpf(2) system call and a fake of it for unit tests.
//!
//! Every call ferrocat makes to the kernel's BPF subsystem goes through the [`Kernel`]
//! trait. [`RealKernel`] lays out `union bpf_attr` for each command
//! (include/uapi/linux/bpf.h) and calls `syscall(SYS_bpf, ...)`; [`FakeKernel`] keeps
//! maps in memory, records program loads and returns scripted verifier results, so
//! that map and program logic can be unit-tested without root.
//!
//! Objects ([`Map`](super::map::Map), [`Program`](super::prog::Program), links) remember
//! the kernel they were created with. Which kernel new objects use is decided by
//! [`current`]: the real one, unless a test installed a fake on its thread with
//! [`use_fake`].

use std::cell::RefCell;
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

/// The bpf(2) commands ferrocat uses (`enum bpf_cmd`, include/uapi/linux/bpf.h), plus the
/// few other system calls the BPF layer makes, so that every error names its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cmd {
    /// `BPF_MAP_CREATE`
    MapCreate,
    /// `BPF_MAP_LOOKUP_ELEM`
    MapLookupElem,
    /// `BPF_MAP_UPDATE_ELEM`
    MapUpdateElem,
    /// `BPF_MAP_DELETE_ELEM`
    MapDeleteElem,
    /// `BPF_MAP_GET_NEXT_KEY`
    MapGetNextKey,
    /// `BPF_PROG_LOAD`
    ProgLoad,
    /// `BPF_OBJ_PIN`
    ObjPin,
    /// `BPF_OBJ_GET`
    ObjGet,
    /// `BPF_PROG_TEST_RUN`
    ProgTestRun,
    /// `BPF_PROG_GET_NEXT_ID`
    ProgGetNextId,
    /// `BPF_MAP_GET_NEXT_ID`
    MapGetNextId,
    /// `BPF_PROG_GET_FD_BY_ID`
    ProgGetFdById,
    /// `BPF_MAP_GET_FD_BY_ID`
    MapGetFdById,
    /// `BPF_OBJ_GET_INFO_BY_FD`
    ObjGetInfoByFd,
    /// `BPF_LINK_CREATE`
    LinkCreate,
    /// `BPF_LINK_UPDATE`
    LinkUpdate,
    /// `BPF_LINK_GET_FD_BY_ID`
    LinkGetFdById,
    /// `BPF_LINK_GET_NEXT_ID`
    LinkGetNextId,
    /// `BPF_ENABLE_STATS`
    EnableStats,
    /// `BPF_LINK_DETACH`
    LinkDetach,
    /// `mmap(2)` of a map.
    Mmap,
    /// Reading `/proc/self/fdinfo` to learn what kind of object a descriptor holds.
    FdInfo,
    /// Reading `/sys/devices/system/cpu/possible`.
    PossibleCpus,
    /// `statfs(2)` of a path that should be on bpffs.
    Statfs,
    /// `mount(2)` of a bpffs.
    Mount,
    /// `unlink(2)` of a pin.
    Unlink,
    /// An rtnetlink query of the XDP program attached to an interface.
    Netlink,
    /// `dup(2)` of a map descriptor.
    Dup,
    /// `poll(2)` on a ring buffer.
    Poll,
}

impl Cmd {
    /// The command number (`enum bpf_cmd`), or `None` for calls other than bpf(2).
    pub const fn number(self) -> Option<u32> {
        Some(match self {
            Cmd::MapCreate => 0,
            Cmd::MapLookupElem => 1,
            Cmd::MapUpdateElem => 2,
            Cmd::MapDeleteElem => 3,
            Cmd::MapGetNextKey => 4,
            Cmd::ProgLoad => 5,
            Cmd::ObjPin => 6,
            Cmd::ObjGet => 7,
            Cmd::ProgTestRun => 10,
            Cmd::ProgGetNextId => 11,
            Cmd::MapGetNextId => 12,
            Cmd::ProgGetFdById => 13,
            Cmd::MapGetFdById => 14,
            Cmd::ObjGetInfoByFd => 15,
            Cmd::LinkCreate => 28,
            Cmd::LinkUpdate => 29,
            Cmd::LinkGetFdById => 30,
            Cmd::LinkGetNextId => 31,
            Cmd::EnableStats => 32,
            Cmd::LinkDetach => 34,
            Cmd::Mmap
            | Cmd::FdInfo
            | Cmd::PossibleCpus
            | Cmd::Statfs
            | Cmd::Mount
            | Cmd::Unlink
            | Cmd::Netlink
            | Cmd::Dup
            | Cmd::Poll => return None,
        })
    }

    /// The name as in the kernel headers (`BPF_MAP_CREATE`) or of the call.
    pub const fn name(self) -> &'static str {
        match self {
            Cmd::MapCreate => "BPF_MAP_CREATE",
            Cmd::MapLookupElem => "BPF_MAP_LOOKUP_ELEM",
            Cmd::MapUpdateElem => "BPF_MAP_UPDATE_ELEM",
            Cmd::MapDeleteElem => "BPF_MAP_DELETE_ELEM",
            Cmd::MapGetNextKey => "BPF_MAP_GET_NEXT_KEY",
            Cmd::ProgLoad => "BPF_PROG_LOAD",
            Cmd::ObjPin => "BPF_OBJ_PIN",
            Cmd::ObjGet => "BPF_OBJ_GET",
            Cmd::ProgTestRun => "BPF_PROG_TEST_RUN",
            Cmd::ProgGetNextId => "BPF_PROG_GET_NEXT_ID",
            Cmd::MapGetNextId => "BPF_MAP_GET_NEXT_ID",
            Cmd::ProgGetFdById => "BPF_PROG_GET_FD_BY_ID",
            Cmd::MapGetFdById => "BPF_MAP_GET_FD_BY_ID",
            Cmd::ObjGetInfoByFd => "BPF_OBJ_GET_INFO_BY_FD",
            Cmd::LinkCreate => "BPF_LINK_CREATE",
            Cmd::LinkUpdate => "BPF_LINK_UPDATE",
            Cmd::LinkGetFdById => "BPF_LINK_GET_FD_BY_ID",
            Cmd::LinkGetNextId => "BPF_LINK_GET_NEXT_ID",
            Cmd::EnableStats => "BPF_ENABLE_STATS",
            Cmd::LinkDetach => "BPF_LINK_DETACH",
            Cmd::Mmap => "mmap",
            Cmd::FdInfo => "/proc/self/fdinfo",
            Cmd::PossibleCpus => "/sys/devices/system/cpu/possible",
            Cmd::Statfs => "statfs",
            Cmd::Mount => "mount",
            Cmd::Unlink => "unlink",
            Cmd::Netlink => "rtnetlink RTM_GETLINK",
            Cmd::Dup => "dup",
            Cmd::Poll => "poll",
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.number().is_some() {
            write!(f, "bpf({})", self.name())
        } else {
            f.write_str(self.name())
        }
    }
}

/// A failed call: which one, and the error the kernel returned.
#[derive(Debug, thiserror::Error)]
#[error("{cmd} failed: {source}")]
pub struct SysError {
    /// The call that failed.
    pub cmd: Cmd,
    /// The kernel's error (errno).
    #[source]
    pub source: io::Error,
}

impl SysError {
    /// An error of `cmd` with the errno `errno`.
    pub fn from_errno(cmd: Cmd, errno: i32) -> SysError {
        SysError {
            cmd,
            source: io::Error::from_raw_os_error(errno),
        }
    }

    /// The errno, if the error came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// What a bpf file descriptor refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjKind {
    /// A map.
    Map,
    /// A program.
    Prog,
    /// A link.
    Link,
    /// Something else (not a bpf object).
    Other,
}

/// The id spaces of `BPF_*_GET_NEXT_ID` / `BPF_*_GET_FD_BY_ID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    /// Programs.
    Prog,
    /// Maps.
    Map,
    /// Links.
    Link,
}

/// Parameters of `BPF_MAP_CREATE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapCreate {
    /// `enum bpf_map_type`.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Number of entries (for a ring buffer: its size in bytes).
    pub max_entries: u32,
    /// `BPF_F_*` flags.
    pub map_flags: u32,
    /// Name shown by bpftool (at most 15 bytes of `[A-Za-z0-9_.]`).
    pub name: String,
}

/// Parameters of `BPF_PROG_LOAD`.
#[derive(Clone, Copy, Debug)]
pub struct ProgLoad<'a> {
    /// `enum bpf_prog_type`.
    pub prog_type: u32,
    /// `enum bpf_attach_type` the program is meant for (0 if none).
    pub expected_attach_type: u32,
    /// The instruction image (8 bytes per slot).
    pub insns: &'a [u8],
    /// The license string; GPL-only helpers need a GPL-compatible one.
    pub license: &'a CStr,
    /// Name shown by bpftool (at most 15 bytes).
    pub name: &'a str,
    /// Verifier log level (`BPF_LOG_LEVEL1` = 1, `BPF_LOG_STATS` = 4, ...).
    pub log_level: u32,
}

/// Result of `BPF_PROG_LOAD`: the program, or the error; the log the verifier wrote
/// into the buffer and the size it needed either way.
#[derive(Debug)]
pub struct ProgLoadResult {
    /// The program's descriptor, or the kernel's error.
    pub fd: Result<OwnedFd, SysError>,
    /// Bytes of log the verifier wanted to write (`log_true_size`, kernel 6.4+), 0 if
    /// unknown.
    pub log_true_size: u32,
}

/// Input and output of `BPF_PROG_TEST_RUN`.
#[derive(Debug)]
pub struct TestRunIo<'a> {
    /// Packet given to the program.
    pub data_in: &'a [u8],
    /// Buffer receiving the packet as the program left it.
    pub data_out: &'a mut [u8],
    /// Number of times to run (0 and 1 both mean once).
    pub repeat: u32,
    /// Out: bytes written to `data_out` (the output packet's length).
    pub data_size_out: u32,
    /// Out: the program's return value.
    pub retval: u32,
    /// Out: mean duration of one run in nanoseconds.
    pub duration_ns: u32,
}

/// The interface to the kernel's BPF subsystem. One method per bpf(2) command (and
/// the mmap calls of map memory), with arguments as Rust types.
pub trait Kernel: Send + Sync + fmt::Debug {
    /// `BPF_MAP_CREATE`.
    fn map_create(&self, attr: &MapCreate) -> Result<OwnedFd, SysError>;
    /// `BPF_MAP_LOOKUP_ELEM`: copies the value of `key` into `value`.
    fn map_lookup(
        &self,
        map: BorrowedFd<'_>,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<(), SysError>;
    /// `BPF_MAP_UPDATE_ELEM`.
    fn map_update(
        &self,
        map: BorrowedFd<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), SysError>;
    /// `BPF_MAP_DELETE_ELEM`.
    fn map_delete(&self, map: BorrowedFd<'_>, key: &[u8]) -> Result<(), SysError>;
    /// `BPF_MAP_GET_NEXT_KEY`: the key after `key` (the first one if `None`) into `next`.
    fn map_get_next_key(
        &self,
        map: BorrowedFd<'_>,
        key: Option<&[u8]>,
        next: &mut [u8],
    ) -> Result<(), SysError>;
    /// `BPF_PROG_LOAD`, with the verifier log written into `log` (may be empty for no
    /// log).
    fn prog_load(&self, attr: &ProgLoad<'_>, log: &mut [u8]) -> ProgLoadResult;
    /// `BPF_PROG_TEST_RUN`.
    fn prog_test_run(&self, prog: BorrowedFd<'_>, io: &mut TestRunIo<'_>) -> Result<(), SysError>;
    /// `BPF_OBJ_PIN`.
    fn obj_pin(&self, obj: BorrowedFd<'_>, path: &CStr) -> Result<(), SysError>;
    /// `BPF_OBJ_GET`.
    fn obj_get(&self, path: &CStr) -> Result<OwnedFd, SysError>;
    /// `BPF_OBJ_GET_INFO_BY_FD`: fills `info` (a `struct bpf_*_info`), returns the length
    /// the kernel wrote.
    fn obj_get_info(&self, obj: BorrowedFd<'_>, info: &mut [u8]) -> Result<u32, SysError>;
    /// `BPF_*_GET_NEXT_ID`: the next id after `start` (`None` when there is none).
    fn get_next_id(&self, kind: IdKind, start: u32) -> Result<Option<u32>, SysError>;
    /// `BPF_*_GET_FD_BY_ID`.
    fn get_fd_by_id(&self, kind: IdKind, id: u32) -> Result<OwnedFd, SysError>;
    /// `BPF_LINK_CREATE`.
    fn link_create(
        &self,
        prog: BorrowedFd<'_>,
        target: u32,
        attach_type: u32,
        flags: u32,
    ) -> Result<OwnedFd, SysError>;
    /// `BPF_LINK_UPDATE`: puts `new_prog` on the link, atomically; if `old_prog` is
    /// given, only if it is the one attached (`BPF_F_REPLACE`).
    fn link_update(
        &self,
        link: BorrowedFd<'_>,
        new_prog: BorrowedFd<'_>,
        old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), SysError>;
    /// `BPF_LINK_DETACH`.
    fn link_detach(&self, link: BorrowedFd<'_>) -> Result<(), SysError>;
    /// `BPF_ENABLE_STATS` of the given `enum bpf_stats_type`; statistics stay on while
    /// the returned descriptor is open.
    fn enable_stats(&self, stats_type: u32) -> Result<OwnedFd, SysError>;
    /// What kind of bpf object `fd` refers to.
    fn obj_kind(&self, fd: BorrowedFd<'_>) -> Result<ObjKind, SysError>;
    /// Maps `len` bytes of the map's memory at `offset`, shared with the kernel.
    fn mmap(
        &self,
        map: BorrowedFd<'_>,
        len: usize,
        offset: i64,
        writable: bool,
    ) -> Result<NonNull<u8>, SysError>;
    /// Unmaps a mapping made by [`Kernel::mmap`].
    ///
    /// # Safety
    /// `ptr` and `len` must be those of a mapping made by this kernel's `mmap` that is
    /// not used afterwards.
    unsafe fn munmap(&self, ptr: NonNull<u8>, len: usize);
    /// Number of possible CPUs (the stride count of per-CPU map values).
    fn possible_cpus(&self) -> Result<usize, SysError>;
    /// The filesystem type (`f_type` of `statfs(2)`) of `path`.
    fn fs_magic(&self, path: &Path) -> Result<i64, SysError>;
    /// Mounts a bpffs at `path`.
    fn mount_bpffs(&self, path: &Path) -> Result<(), SysError>;
    /// Removes a pin.
    fn unlink(&self, path: &Path) -> Result<(), SysError>;
    /// Which XDP program is attached to interface `ifindex` of this network namespace,
    /// and how.
    fn xdp_attached(&self, ifindex: u32) -> Result<XdpAttached, SysError>;
}

/// The XDP program an interface runs, as rtnetlink reports it (`IFLA_XDP`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpAttached {
    /// `XDP_ATTACHED_*`: 0 none, 1 native (driver), 2 generic (skb), 3 offloaded,
    /// 4 several.
    pub mode: u8,
    /// The attached program's id (`IFLA_XDP_PROG_ID`), if one is attached.
    pub prog_id: Option<u32>,
}

/// `BPF_FS_MAGIC`, the `f_type` of a bpffs (include/uapi/linux/magic.h).
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn path_cstring(cmd: Cmd, path: &Path) -> Result<std::ffi::CString, SysError> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SysError::from_errno(cmd, libc::EINVAL))
}

thread_local! {
    static FAKE: RefCell<Option<Arc<dyn Kernel>>> = const { RefCell::new(None) };
}

/// The kernel new objects on this thread talk to: the real one, or the fake installed
/// by [`use_fake`].
pub fn current() -> Arc<dyn Kernel> {
    FAKE.with(|f| f.borrow().clone())
        .unwrap_or_else(|| Arc::new(RealKernel) as Arc<dyn Kernel>)
}

/// Makes [`current`] return `kernel` on this thread until the guard is dropped.
pub fn use_fake(kernel: Arc<dyn Kernel>) -> FakeGuard {
    let previous = FAKE.with(|f| f.borrow_mut().replace(kernel));
    FakeGuard { previous }
}

/// Restores the previous kernel of the thread when dropped.
#[derive(Debug)]
#[must_use = "the fake is removed when the guard is dropped"]
pub struct FakeGuard {
    previous: Option<Arc<dyn Kernel>>,
}

impl Drop for FakeGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        FAKE.with(|f| *f.borrow_mut() = previous);
    }
}

// ---------------------------------------------------------------------------------
// The real kernel: `union bpf_attr` layouts of include/uapi/linux/bpf.h.

/// `BPF_MAP_CREATE` attributes.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_value_type_id: u32,
    map_extra: u64,
}

/// `BPF_MAP_*_ELEM` and `BPF_MAP_GET_NEXT_KEY` attributes.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next_key: u64,
    flags: u64,
}

/// `BPF_PROG_LOAD` attributes, up to `log_true_size`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    core_relo_cnt: u32,
    fd_array: u64,
    core_relos: u64,
    core_relo_rec_size: u32,
    log_true_size: u32,
}

/// `BPF_PROG_TEST_RUN` attributes.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `BPF_OBJ_PIN` / `BPF_OBJ_GET` attributes.
#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// `BPF_*_GET_NEXT_ID` / `BPF_*_GET_FD_BY_ID` attributes.
#[repr(C)]
#[derive(Default)]
struct IdAttr {
    start_or_id: u32,
    next_id: u32,
    open_flags: u32,
    token_fd: u32,
}

/// `BPF_OBJ_GET_INFO_BY_FD` attributes.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `BPF_LINK_CREATE` attributes (the common part; the per-type union stays zero for
/// XDP).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target: u32,
    attach_type: u32,
    flags: u32,
    target_btf_id: u32,
    _pad: u32,
    _union: [u64; 4],
}

/// `BPF_LINK_UPDATE` attributes.
#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// `BPF_LINK_DETACH` / `BPF_ENABLE_STATS` attributes: one `u32`.
#[repr(C)]
#[derive(Default)]
struct U32Attr {
    value: u32,
}

/// `BPF_F_REPLACE` of `BPF_LINK_UPDATE` (include/uapi/linux/bpf.h).
const BPF_F_REPLACE: u32 = 1 << 2;

/// Calls bpf(2) with `attr`.
fn sys_bpf<T>(cmd: Cmd, attr: &mut T) -> Result<i64, SysError> {
    let number = cmd.number().unwrap_or(u32::MAX);
    // SAFETY: `attr` is a live, properly laid-out `union bpf_attr` member of the size
    // given; every pointer it holds points into buffers that outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            number as libc::c_long,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(SysError {
            cmd,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(ret)
    }
}

/// Calls bpf(2) for a command that returns a new file descriptor.
fn sys_bpf_fd<T>(cmd: Cmd, attr: &mut T) -> Result<OwnedFd, SysError> {
    let fd = sys_bpf(cmd, attr)?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd() as u32
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(
        name.bytes()
            .filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
            .take(15),
    ) {
        *o = b;
    }
    out
}

/// Reads `/sys/devices/system/cpu/possible` (`0-3`, `0,2-5`) into a CPU count.
pub fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut max = None;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let last = match part.split_once('-') {
            Some((_, hi)) => hi.trim().parse::<usize>().ok()?,
            None => part.trim().parse::<usize>().ok()?,
        };
        max = Some(max.map_or(last, |m: usize| m.max(last)));
    }
    max?.checked_add(1)
}

/// The kernel, through the bpf(2) system call.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealKernel;

impl Kernel for RealKernel {
    fn map_create(&self, a: &MapCreate) -> Result<OwnedFd, SysError> {
        let mut attr = MapCreateAttr {
            map_type: a.map_type,
            key_size: a.key_size,
            value_size: a.value_size,
            max_entries: a.max_entries,
            map_flags: a.map_flags,
            map_name: name16(&a.name),
            ..Default::default()
        };
        sys_bpf_fd(Cmd::MapCreate, &mut attr)
    }

    fn map_lookup(
        &self,
        map: BorrowedFd<'_>,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<(), SysError> {
        let mut attr = MapElemAttr {
            map_fd: fd_u32(map),
            key: key.as_ptr() as u64,
            value_or_next_key: value.as_mut_ptr() as u64,
            flags,
            ..Default::default()
        };
        sys_bpf(Cmd::MapLookupElem, &mut attr).map(drop)
    }

    fn map_update(
        &self,
        map: BorrowedFd<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), SysError> {
        let mut attr = MapElemAttr {
            map_fd: fd_u32(map),
            key: key.as_ptr() as u64,
            value_or_next_key: value.as_ptr() as u64,
            flags,
            ..Default::default()
        };
        sys_bpf(Cmd::MapUpdateElem, &mut attr).map(drop)
    }

    fn map_delete(&self, map: BorrowedFd<'_>, key: &[u8]) -> Result<(), SysError> {
        let mut attr = MapElemAttr {
            map_fd: fd_u32(map),
            key: key.as_ptr() as u64,
            ..Default::default()
        };
        sys_bpf(Cmd::MapDeleteElem, &mut attr).map(drop)
    }

    fn map_get_next_key(
        &self,
        map: BorrowedFd<'_>,
        key: Option<&[u8]>,
        next: &mut [u8],
    ) -> Result<(), SysError> {
        let mut attr = MapElemAttr {
            map_fd: fd_u32(map),
            key: key.map_or(0, |k| k.as_ptr() as u64),
            value_or_next_key: next.as_mut_ptr() as u64,
            ..Default::default()
        };
        sys_bpf(Cmd::MapGetNextKey, &mut attr).map(drop)
    }

    fn prog_load(&self, a: &ProgLoad<'_>, log: &mut [u8]) -> ProgLoadResult {
        let mut attr = ProgLoadAttr {
            prog_type: a.prog_type,
            insn_cnt: (a.insns.len() / 8) as u32,
            insns: a.insns.as_ptr() as u64,
            license: a.license.as_ptr() as u64,
            prog_name: name16(a.name),
            expected_attach_type: a.expected_attach_type,
            ..Default::default()
        };
        if !log.is_empty() {
            attr.log_level = a.log_level;
            attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        let fd = sys_bpf_fd(Cmd::ProgLoad, &mut attr);
        ProgLoadResult {
            fd,
            log_true_size: attr.log_true_size,
        }
    }

    fn prog_test_run(&self, prog: BorrowedFd<'_>, io: &mut TestRunIo<'_>) -> Result<(), SysError> {
        let mut attr = TestRunAttr {
            prog_fd: fd_u32(prog),
            data_size_in: io.data_in.len() as u32,
            data_size_out: io.data_out.len() as u32,
            data_in: io.data_in.as_ptr() as u64,
            data_out: io.data_out.as_mut_ptr() as u64,
            repeat: io.repeat,
            ..Default::default()
        };
        sys_bpf(Cmd::ProgTestRun, &mut attr)?;
        io.data_size_out = attr.data_size_out;
        io.retval = attr.retval;
        io.duration_ns = attr.duration;
        Ok(())
    }

    fn obj_pin(&self, obj: BorrowedFd<'_>, path: &CStr) -> Result<(), SysError> {
        let mut attr = ObjAttr {
            pathname: path.as_ptr() as u64,
            bpf_fd: fd_u32(obj),
            ..Default::default()
        };
        sys_bpf(Cmd::ObjPin, &mut attr).map(drop)
    }

    fn obj_get(&self, path: &CStr) -> Result<OwnedFd, SysError> {
        let mut attr = ObjAttr {
            pathname: path.as_ptr() as u64,
            ..Default::default()
        };
        sys_bpf_fd(Cmd::ObjGet, &mut attr)
    }

    fn obj_get_info(&self, obj: BorrowedFd<'_>, info: &mut [u8]) -> Result<u32, SysError> {
        let mut attr = InfoAttr {
            bpf_fd: fd_u32(obj),
            info_len: info.len() as u32,
            info: info.as_mut_ptr() as u64,
        };
        sys_bpf(Cmd::ObjGetInfoByFd, &mut attr)?;
        Ok(attr.info_len)
    }

    fn get_next_id(&self, kind: IdKind, start: u32) -> Result<Option<u32>, SysError> {
        let cmd = match kind {
            IdKind::Prog => Cmd::ProgGetNextId,
            IdKind::Map => Cmd::MapGetNextId,
            IdKind::Link => Cmd::LinkGetNextId,
        };
        let mut attr = IdAttr {
            start_or_id: start,
            ..Default::default()
        };
        match sys_bpf(cmd, &mut attr) {
            Ok(_) => Ok(Some(attr.next_id)),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn get_fd_by_id(&self, kind: IdKind, id: u32) -> Result<OwnedFd, SysError> {
        let cmd = match kind {
            IdKind::Prog => Cmd::ProgGetFdById,
            IdKind::Map => Cmd::MapGetFdById,
            IdKind::Link => Cmd::LinkGetFdById,
        };
        let mut attr = IdAttr {
            start_or_id: id,
            ..Default::default()
        };
        sys_bpf_fd(cmd, &mut attr)
    }

    fn link_create(
        &self,
        prog: BorrowedFd<'_>,
        target: u32,
        attach_type: u32,
        flags: u32,
    ) -> Result<OwnedFd, SysError> {
        let mut attr = LinkCreateAttr {
            prog_fd: fd_u32(prog),
            target,
            attach_type,
            flags,
            ..Default::default()
        };
        sys_bpf_fd(Cmd::LinkCreate, &mut attr)
    }

    fn link_update(
        &self,
        link: BorrowedFd<'_>,
        new_prog: BorrowedFd<'_>,
        old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), SysError> {
        let mut attr = LinkUpdateAttr {
            link_fd: fd_u32(link),
            new_prog_fd: fd_u32(new_prog),
            flags: if old_prog.is_some() { BPF_F_REPLACE } else { 0 },
            old_prog_fd: old_prog.map_or(0, fd_u32),
        };
        sys_bpf(Cmd::LinkUpdate, &mut attr).map(drop)
    }

    fn link_detach(&self, link: BorrowedFd<'_>) -> Result<(), SysError> {
        let mut attr = U32Attr {
            value: fd_u32(link),
        };
        sys_bpf(Cmd::LinkDetach, &mut attr).map(drop)
    }

    fn enable_stats(&self, stats_type: u32) -> Result<OwnedFd, SysError> {
        let mut attr = U32Attr { value: stats_type };
        sys_bpf_fd(Cmd::EnableStats, &mut attr)
    }

    fn obj_kind(&self, fd: BorrowedFd<'_>) -> Result<ObjKind, SysError> {
        let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
        let text = std::fs::read_to_string(path).map_err(|source| SysError {
            cmd: Cmd::FdInfo,
            source,
        })?;
        Ok(fdinfo_kind(&text))
    }

    fn mmap(
        &self,
        map: BorrowedFd<'_>,
        len: usize,
        offset: i64,
        writable: bool,
    ) -> Result<NonNull<u8>, SysError> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new shared mapping of a bpf map; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SysError {
                cmd: Cmd::Mmap,
                source: io::Error::last_os_error(),
            });
        }
        NonNull::new(ptr.cast::<u8>()).ok_or_else(|| SysError::from_errno(Cmd::Mmap, libc::EFAULT))
    }

    unsafe fn munmap(&self, ptr: NonNull<u8>, len: usize) {
        // SAFETY: the caller guarantees the mapping is ours and unused from now on.
        unsafe {
            libc::munmap(ptr.as_ptr().cast(), len);
        }
    }

    fn possible_cpus(&self) -> Result<usize, SysError> {
        let text =
            std::fs::read_to_string("/sys/devices/system/cpu/possible").map_err(|source| {
                SysError {
                    cmd: Cmd::PossibleCpus,
                    source,
                }
            })?;
        parse_cpu_list(&text).ok_or_else(|| SysError {
            cmd: Cmd::PossibleCpus,
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cannot parse CPU list {:?}", text.trim()),
            ),
        })
    }

    fn fs_magic(&self, path: &Path) -> Result<i64, SysError> {
        let c = path_cstring(Cmd::Statfs, path)?;
        // SAFETY: a zeroed statfs is valid; `c` is NUL-terminated.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid path and output buffer.
        let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(SysError {
                cmd: Cmd::Statfs,
                source: io::Error::last_os_error(),
            });
        }
        #[allow(clippy::unnecessary_cast)]
        Ok(st.f_type as i64)
    }

    fn mount_bpffs(&self, path: &Path) -> Result<(), SysError> {
        let c = path_cstring(Cmd::Mount, path)?;
        // SAFETY: NUL-terminated strings; no data argument beyond the mode option.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                c.as_ptr(),
                c"bpf".as_ptr(),
                0,
                c"mode=0700".as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(SysError {
                cmd: Cmd::Mount,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    fn unlink(&self, path: &Path) -> Result<(), SysError> {
        std::fs::remove_file(path).map_err(|source| SysError {
            cmd: Cmd::Unlink,
            source,
        })
    }

    fn xdp_attached(&self, ifindex: u32) -> Result<XdpAttached, SysError> {
        super::netlink::xdp_attached(ifindex)
    }
}

/// The kind of object named by the text of `/proc/self/fdinfo/N`.
fn fdinfo_kind(text: &str) -> ObjKind {
    let has = |key: &str| text.lines().any(|l| l.starts_with(key));
    if has("link_type:") {
        ObjKind::Link
    } else if has("map_type:") {
        ObjKind::Map
    } else if has("prog_type:") {
        ObjKind::Prog
    } else {
        ObjKind::Other
    }
}

pub use super::fake::{FakeKernel, FakeRecord, FakeRun, RecordedLoad, ScriptedLoad};

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn attr_layouts_match_the_kernel_headers() {
        use std::mem::{offset_of, size_of};
        assert_eq!(offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(offset_of!(MapCreateAttr, map_extra), 64);
        assert_eq!(size_of::<MapElemAttr>(), 32);
        assert_eq!(offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(offset_of!(ProgLoadAttr, fd_array), 120);
        assert_eq!(offset_of!(ProgLoadAttr, log_true_size), 140);
        assert_eq!(offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(offset_of!(TestRunAttr, flags), 64);
        assert_eq!(offset_of!(ObjAttr, path_fd), 16);
        assert_eq!(offset_of!(InfoAttr, info), 8);
        assert_eq!(offset_of!(LinkCreateAttr, flags), 12);
        assert_eq!(offset_of!(LinkUpdateAttr, old_prog_fd), 12);
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3\n"), Some(4));
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0,2-5"), Some(6));
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list(""), None);
        // A number that leaves no room for the count is refused, not an overflow.
        assert_eq!(parse_cpu_list(&format!("0-{}", usize::MAX)), None);
        assert_eq!(
            parse_cpu_list(&(usize::MAX - 1).to_string()),
            Some(usize::MAX)
        );
        assert_eq!(parse_cpu_list("0-3,x"), None);
    }

    #[test]
    fn fdinfo_names_the_object_kind() {
        assert_eq!(fdinfo_kind("pos:\t0\nmap_type:\t2\n"), ObjKind::Map);
        assert_eq!(fdinfo_kind("pos:\t0\nprog_type:\t6\n"), ObjKind::Prog);
        assert_eq!(
            fdinfo_kind("link_type:\txdp\nprog_tag:\t0\n"),
            ObjKind::Link
        );
        assert_eq!(fdinfo_kind("pos:\t0\nflags:\t02\n"), ObjKind::Other);
    }

    #[test]
    fn errors_name_the_command() {
        let e = SysError::from_errno(Cmd::MapCreate, libc::EPERM);
        assert!(
            e.to_string().starts_with("bpf(BPF_MAP_CREATE) failed: "),
            "{e}"
        );
        assert_eq!(e.errno(), Some(libc::EPERM));
    }

    #[test]
    fn fake_is_per_thread_and_removed_with_its_guard() {
        let fake = FakeKernel::new(2);
        {
            let _g = use_fake(fake.clone());
            let k = current();
            let fd = k
                .map_create(&MapCreate {
                    map_type: 1, // BPF_MAP_TYPE_HASH
                    key_size: 4,
                    value_size: 8,
                    max_entries: 4,
                    map_flags: 0,
                    name: "t".into(),
                })
                .expect("fake map");
            assert_eq!(k.obj_kind(fd.as_fd()).ok(), Some(ObjKind::Map));
        }
        assert!(format!("{:?}", current()).contains("RealKernel"));
    }
}
