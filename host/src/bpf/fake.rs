//! An in-memory stand-in for the kernel's BPF subsystem ([`FakeKernel`]), so that map,
//! program and link logic can be unit-tested without root. Installed per thread with
//! [`sys::use_fake`](super::sys::use_fake).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::CStr;
use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::prog::BPF_XDP;
use super::sys::{
    BPF_FS_MAGIC, Cmd, IdKind, Kernel, MapCreate, ObjKind, ProgLoad, ProgLoadResult, RealKernel,
    SysError, TestRunIo, XdpAttached,
};

/// A program load the fake kernel received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedLoad {
    /// `enum bpf_prog_type`.
    pub prog_type: u32,
    /// Expected attach type.
    pub expected_attach_type: u32,
    /// The instruction image.
    pub insns: Vec<u8>,
    /// The program name.
    pub name: String,
    /// The log level requested.
    pub log_level: u32,
    /// The size of the log buffer offered.
    pub log_size: usize,
}

/// What the fake verifier answers to the next load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedLoad {
    /// `None` accepts the program; `Some(errno)` rejects it.
    pub errno: Option<i32>,
    /// The log the verifier writes (truncated to the buffer; a load whose log does not
    /// fit fails with `ENOSPC`, as on kernels since 6.4).
    pub log: String,
}

/// A fake program's behaviour under `BPF_PROG_TEST_RUN`: packet in, (retval, packet
/// out).
pub type FakeRun = Arc<dyn Fn(&[u8]) -> (u32, Vec<u8>) + Send + Sync>;

#[derive(Debug)]
enum FakeObj {
    Map(Arc<Mutex<FakeMap>>),
    Prog(u32),
    Link(Arc<Mutex<FakeLink>>),
    Stats,
}

impl Clone for FakeObj {
    fn clone(&self) -> Self {
        match self {
            FakeObj::Map(m) => FakeObj::Map(Arc::clone(m)),
            FakeObj::Prog(id) => FakeObj::Prog(*id),
            FakeObj::Link(l) => FakeObj::Link(Arc::clone(l)),
            FakeObj::Stats => FakeObj::Stats,
        }
    }
}

#[derive(Debug)]
struct FakeMap {
    id: u32,
    attr: MapCreate,
    /// Entries in key order; for arrays every index is present.
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Shared memory of an mmapable array (values at stride `round_up(value_size, 8)`).
    memory: Option<FakeMemory>,
    /// A ring buffer's pages: consumer page, producer page, then the data area twice
    /// (as the kernel maps it, so records that wrap read contiguously).
    ring: Option<FakeMemory>,
}

/// Heap memory standing in for map memory the kernel would share.
#[derive(Debug)]
struct FakeMemory {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: the memory is only reached through raw pointers with volatile/atomic
// accesses, exactly like real shared map memory.
unsafe impl Send for FakeMemory {}

impl Drop for FakeMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `FakeMemory::new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[derive(Debug)]
struct FakeLink {
    id: u32,
    prog_id: u32,
    ifindex: u32,
    detached: bool,
}

#[derive(Default)]
struct FakeState {
    next_id: u32,
    objects: HashMap<RawFd, FakeObj>,
    pins: HashMap<PathBuf, FakeObj>,
    loads: Vec<RecordedLoad>,
    load_script: VecDeque<ScriptedLoad>,
    runs: HashMap<u32, FakeRun>,
    default_run: Option<FakeRun>,
    links: Vec<Arc<Mutex<FakeLink>>>,
    attached: HashMap<u32, u32>,
    /// Program ids whose last descriptor still refers to them (by id).
    progs: Vec<u32>,
    /// Directories the fake treats as bpffs mounts.
    bpffs: Vec<PathBuf>,
}

/// An in-memory stand-in for the kernel's BPF subsystem, for unit tests without root.
///
/// Maps behave like the kernel's (sizes checked, `BPF_NOEXIST`/`BPF_EXIST` honoured,
/// arrays pre-filled with zeros, per-CPU values stored per CPU); program loads are
/// recorded and answered from a script ([`FakeKernel::script_load`]), accepted by
/// default with a one-line statistics log; XDP links are tracked per interface index.
/// Descriptors are real (duplicates of `/dev/null`), so they close like real ones.
pub struct FakeKernel {
    state: Mutex<FakeState>,
    cpus: usize,
}

impl fmt::Debug for FakeKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeKernel")
            .field("cpus", &self.cpus)
            .finish_non_exhaustive()
    }
}

impl FakeKernel {
    /// A fake kernel with `cpus` possible CPUs.
    pub fn new(cpus: usize) -> Arc<FakeKernel> {
        Arc::new(FakeKernel {
            state: Mutex::new(FakeState {
                next_id: 1,
                ..Default::default()
            }),
            cpus,
        })
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the verifier's answer to the next program load.
    pub fn script_load(&self, answer: ScriptedLoad) {
        self.state().load_script.push_back(answer);
    }

    /// The program loads received so far.
    pub fn loads(&self) -> Vec<RecordedLoad> {
        self.state().loads.clone()
    }

    /// Sets what test runs of every program without its own behaviour do.
    pub fn set_test_run(&self, run: FakeRun) {
        self.state().default_run = Some(run);
    }

    /// Which program id is attached to interface `ifindex` through a live link.
    pub fn attached_prog(&self, ifindex: u32) -> Option<u32> {
        self.state().attached.get(&ifindex).copied()
    }

    fn new_fd(cmd: Cmd) -> Result<OwnedFd, SysError> {
        let file = std::fs::File::open("/dev/null").map_err(|source| SysError { cmd, source })?;
        Ok(OwnedFd::from(file))
    }

    fn obj(&self, cmd: Cmd, fd: BorrowedFd<'_>) -> Result<FakeObj, SysError> {
        self.state()
            .objects
            .get(&fd.as_raw_fd())
            .cloned()
            .ok_or_else(|| SysError::from_errno(cmd, libc::EBADF))
    }

    fn map(&self, cmd: Cmd, fd: BorrowedFd<'_>) -> Result<Arc<Mutex<FakeMap>>, SysError> {
        match self.obj(cmd, fd)? {
            FakeObj::Map(m) => Ok(m),
            _ => Err(SysError::from_errno(cmd, libc::EINVAL)),
        }
    }

    fn register(&self, cmd: Cmd, obj: FakeObj) -> Result<OwnedFd, SysError> {
        let fd = Self::new_fd(cmd)?;
        self.state().objects.insert(fd.as_raw_fd(), obj);
        Ok(fd)
    }

    fn alloc_id(&self) -> u32 {
        let mut s = self.state();
        let id = s.next_id;
        s.next_id += 1;
        id
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Map types the fake knows (`enum bpf_map_type`).
mod fake_types {
    pub(super) const HASH: u32 = 1;
    pub(super) const ARRAY: u32 = 2;
    pub(super) const PROG_ARRAY: u32 = 3;
    pub(super) const PERCPU_HASH: u32 = 5;
    pub(super) const PERCPU_ARRAY: u32 = 6;
    pub(super) const RINGBUF: u32 = 27;
}

impl FakeMap {
    fn is_array(&self) -> bool {
        matches!(
            self.attr.map_type,
            fake_types::ARRAY | fake_types::PERCPU_ARRAY | fake_types::PROG_ARRAY
        )
    }

    fn is_percpu(&self) -> bool {
        matches!(
            self.attr.map_type,
            fake_types::PERCPU_ARRAY | fake_types::PERCPU_HASH
        )
    }

    fn stride(&self) -> usize {
        (self.attr.value_size as usize).div_ceil(8) * 8
    }

    /// Size of a value as user space passes it (per-CPU: one stride per CPU).
    fn user_value_size(&self, cpus: usize) -> usize {
        if self.is_percpu() {
            self.stride() * cpus
        } else {
            self.attr.value_size as usize
        }
    }

    fn index(&self, key: &[u8]) -> Option<usize> {
        let k = u32::from_ne_bytes(key.try_into().ok()?) as usize;
        (k < self.attr.max_entries as usize).then_some(k)
    }
}

impl Kernel for FakeKernel {
    fn map_create(&self, a: &MapCreate) -> Result<OwnedFd, SysError> {
        use fake_types::*;
        let cmd = Cmd::MapCreate;
        let einval = || Err(SysError::from_errno(cmd, libc::EINVAL));
        match a.map_type {
            HASH | PERCPU_HASH if a.key_size > 0 && a.value_size > 0 => {}
            ARRAY | PERCPU_ARRAY | PROG_ARRAY if a.key_size == 4 && a.value_size > 0 => {}
            RINGBUF if a.key_size == 0 && a.value_size == 0 => {
                if !a.max_entries.is_power_of_two() || a.max_entries % 4096 != 0 {
                    return einval();
                }
            }
            _ => return einval(),
        }
        if a.max_entries == 0 {
            return einval();
        }
        let mmapable = a.map_flags & (1 << 10) != 0;
        if mmapable && a.map_type != ARRAY {
            return einval();
        }
        let id = self.alloc_id();
        let mut map = FakeMap {
            id,
            attr: a.clone(),
            entries: BTreeMap::new(),
            memory: None,
            ring: None,
        };
        if mmapable {
            let len = (map.stride() * a.max_entries as usize).div_ceil(4096) * 4096;
            let layout = std::alloc::Layout::from_size_align(len, 4096)
                .map_err(|_| SysError::from_errno(cmd, libc::E2BIG))?;
            // SAFETY: non-zero size, valid layout.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            let ptr = NonNull::new(ptr).ok_or_else(|| SysError::from_errno(cmd, libc::ENOMEM))?;
            map.memory = Some(FakeMemory { ptr, layout });
        } else if a.map_type == RINGBUF {
            let page = page_size();
            let len = 2 * page + 2 * a.max_entries as usize;
            let layout = std::alloc::Layout::from_size_align(len, page)
                .map_err(|_| SysError::from_errno(cmd, libc::E2BIG))?;
            // SAFETY: non-zero size, valid layout.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            let ptr = NonNull::new(ptr).ok_or_else(|| SysError::from_errno(cmd, libc::ENOMEM))?;
            map.ring = Some(FakeMemory { ptr, layout });
        } else if map.is_array() && a.map_type != PROG_ARRAY {
            let size = map.user_value_size(self.cpus);
            for i in 0..a.max_entries {
                map.entries.insert(i.to_ne_bytes().to_vec(), vec![0; size]);
            }
        }
        self.register(cmd, FakeObj::Map(Arc::new(Mutex::new(map))))
    }

    fn map_lookup(
        &self,
        fd: BorrowedFd<'_>,
        key: &[u8],
        value: &mut [u8],
        _flags: u64,
    ) -> Result<(), SysError> {
        let cmd = Cmd::MapLookupElem;
        let map = self.map(cmd, fd)?;
        let m = lock(&map);
        if key.len() != m.attr.key_size as usize || value.len() != m.user_value_size(self.cpus) {
            return Err(SysError::from_errno(cmd, libc::EINVAL));
        }
        if let Some(mem) = &m.memory {
            let i = m
                .index(key)
                .ok_or_else(|| SysError::from_errno(cmd, libc::ENOENT))?;
            let stride = m.stride();
            for (j, v) in value.iter_mut().enumerate() {
                // SAFETY: i < max_entries and j < value_size: inside the allocation.
                *v = unsafe { mem.ptr.as_ptr().add(i * stride + j).read_volatile() };
            }
            return Ok(());
        }
        let stored = m
            .entries
            .get(key)
            .ok_or_else(|| SysError::from_errno(cmd, libc::ENOENT))?;
        value.copy_from_slice(stored);
        Ok(())
    }

    fn map_update(
        &self,
        fd: BorrowedFd<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), SysError> {
        let cmd = Cmd::MapUpdateElem;
        let err = |e| Err(SysError::from_errno(cmd, e));
        let map = self.map(cmd, fd)?;
        let mut m = lock(&map);
        let prog_array = m.attr.map_type == fake_types::PROG_ARRAY;
        let value_size = if prog_array {
            4
        } else {
            m.user_value_size(self.cpus)
        };
        if key.len() != m.attr.key_size as usize || value.len() != value_size || flags > 2 {
            return err(libc::EINVAL);
        }
        // BPF_NOEXIST = 1, BPF_EXIST = 2 (include/uapi/linux/bpf.h).
        if m.is_array() {
            let Some(i) = m.index(key) else {
                return err(libc::E2BIG);
            };
            if flags == 1 {
                return err(if prog_array {
                    libc::EINVAL
                } else {
                    libc::EEXIST
                });
            }
            if let Some(mem) = &m.memory {
                let stride = m.stride();
                for (j, v) in value.iter().enumerate() {
                    // SAFETY: inside the allocation (see lookup).
                    unsafe { mem.ptr.as_ptr().add(i * stride + j).write_volatile(*v) };
                }
                return Ok(());
            }
            if prog_array {
                let prog_fd = i32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
                let prog = self.state().objects.get(&prog_fd).cloned();
                let Some(FakeObj::Prog(id)) = prog else {
                    return err(libc::EINVAL);
                };
                // As the kernel, a lookup from user space answers the program's id.
                m.entries.insert(key.to_vec(), id.to_ne_bytes().to_vec());
                return Ok(());
            }
            m.entries.insert(key.to_vec(), value.to_vec());
            return Ok(());
        }
        let exists = m.entries.contains_key(key);
        if flags == 1 && exists {
            return err(libc::EEXIST);
        }
        if flags == 2 && !exists {
            return err(libc::ENOENT);
        }
        if !exists && m.entries.len() >= m.attr.max_entries as usize {
            return err(libc::E2BIG);
        }
        m.entries.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn map_delete(&self, fd: BorrowedFd<'_>, key: &[u8]) -> Result<(), SysError> {
        let cmd = Cmd::MapDeleteElem;
        let map = self.map(cmd, fd)?;
        let mut m = lock(&map);
        if key.len() != m.attr.key_size as usize {
            return Err(SysError::from_errno(cmd, libc::EINVAL));
        }
        if m.is_array() && m.attr.map_type != fake_types::PROG_ARRAY {
            return Err(SysError::from_errno(cmd, libc::EINVAL));
        }
        match m.entries.remove(key) {
            Some(_) => Ok(()),
            None => Err(SysError::from_errno(cmd, libc::ENOENT)),
        }
    }

    fn map_get_next_key(
        &self,
        fd: BorrowedFd<'_>,
        key: Option<&[u8]>,
        next: &mut [u8],
    ) -> Result<(), SysError> {
        let cmd = Cmd::MapGetNextKey;
        let map = self.map(cmd, fd)?;
        let m = lock(&map);
        if next.len() != m.attr.key_size as usize {
            return Err(SysError::from_errno(cmd, libc::EINVAL));
        }
        if m.memory.is_some() {
            let i = match key {
                None => 0,
                Some(k) => m.index(k).map_or(0, |i| i + 1),
            };
            if i >= m.attr.max_entries as usize {
                return Err(SysError::from_errno(cmd, libc::ENOENT));
            }
            next.copy_from_slice(&(i as u32).to_ne_bytes());
            return Ok(());
        }
        let found = match key {
            // As the kernel's hash map: an unknown key restarts at the first one.
            Some(k) if m.entries.contains_key(k) => m
                .entries
                .range::<[u8], _>((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                .next(),
            _ => m.entries.iter().next(),
        };
        match found {
            Some((k, _)) => {
                next.copy_from_slice(k);
                Ok(())
            }
            None => Err(SysError::from_errno(cmd, libc::ENOENT)),
        }
    }

    fn prog_load(&self, a: &ProgLoad<'_>, log: &mut [u8]) -> ProgLoadResult {
        let cmd = Cmd::ProgLoad;
        let answer = {
            let mut s = self.state();
            s.loads.push(RecordedLoad {
                prog_type: a.prog_type,
                expected_attach_type: a.expected_attach_type,
                insns: a.insns.to_vec(),
                name: a.name.to_string(),
                log_level: a.log_level,
                log_size: log.len(),
            });
            s.load_script.pop_front()
        };
        let slots = a.insns.len() / 8;
        let answer = answer.unwrap_or_else(|| ScriptedLoad {
            errno: None,
            log: format!(
                "processed {slots} insns (limit 1000000) max_states_per_insn 0 \
                 total_states 0 peak_states 0 mark_read 0\n"
            ),
        });
        let bytes = answer.log.as_bytes();
        let true_size = bytes.len() as u32 + 1;
        let mut result = ProgLoadResult {
            fd: Err(SysError::from_errno(cmd, libc::EINVAL)),
            log_true_size: true_size,
        };
        if a.insns.is_empty() || a.insns.len() % 8 != 0 {
            return result;
        }
        if !log.is_empty() && a.log_level != 0 {
            let n = bytes.len().min(log.len() - 1);
            // Rotating log: keep the tail, as the kernel does.
            log[..n].copy_from_slice(&bytes[bytes.len() - n..]);
            log[n] = 0;
            if n < bytes.len() {
                result.fd = Err(SysError::from_errno(cmd, libc::ENOSPC));
                return result;
            }
        }
        if let Some(errno) = answer.errno {
            result.fd = Err(SysError::from_errno(cmd, errno));
            return result;
        }
        let id = self.alloc_id();
        self.state().progs.push(id);
        result.fd = self.register(cmd, FakeObj::Prog(id));
        result
    }

    fn prog_test_run(&self, prog: BorrowedFd<'_>, io: &mut TestRunIo<'_>) -> Result<(), SysError> {
        let cmd = Cmd::ProgTestRun;
        let FakeObj::Prog(id) = self.obj(cmd, prog)? else {
            return Err(SysError::from_errno(cmd, libc::EINVAL));
        };
        let run = {
            let s = self.state();
            s.runs.get(&id).or(s.default_run.as_ref()).cloned()
        };
        let run = run.ok_or_else(|| SysError::from_errno(cmd, ENOTSUPP))?;
        let (retval, out) = run(io.data_in);
        if out.len() > io.data_out.len() {
            return Err(SysError::from_errno(cmd, libc::ENOSPC));
        }
        io.data_out[..out.len()].copy_from_slice(&out);
        io.data_size_out = out.len() as u32;
        io.retval = retval;
        io.duration_ns = 1;
        Ok(())
    }

    fn obj_pin(&self, obj: BorrowedFd<'_>, path: &CStr) -> Result<(), SysError> {
        let cmd = Cmd::ObjPin;
        let o = self.obj(cmd, obj)?;
        let path = PathBuf::from(path.to_string_lossy().into_owned());
        let mut s = self.state();
        if s.pins.contains_key(&path) {
            return Err(SysError::from_errno(cmd, libc::EEXIST));
        }
        s.pins.insert(path, o);
        Ok(())
    }

    fn obj_get(&self, path: &CStr) -> Result<OwnedFd, SysError> {
        let cmd = Cmd::ObjGet;
        let path = PathBuf::from(path.to_string_lossy().into_owned());
        let o = self
            .state()
            .pins
            .get(&path)
            .cloned()
            .ok_or_else(|| SysError::from_errno(cmd, libc::ENOENT))?;
        self.register(cmd, o)
    }

    fn obj_get_info(&self, obj: BorrowedFd<'_>, info: &mut [u8]) -> Result<u32, SysError> {
        let cmd = Cmd::ObjGetInfoByFd;
        let mut put = |off: usize, v: u32| {
            if let Some(b) = info.get_mut(off..off + 4) {
                b.copy_from_slice(&v.to_ne_bytes());
            }
        };
        match self.obj(cmd, obj)? {
            FakeObj::Map(m) => {
                let m = lock(&m);
                // struct bpf_map_info: type, id, key_size, value_size, max_entries, flags.
                for (i, v) in [
                    m.attr.map_type,
                    m.id,
                    m.attr.key_size,
                    m.attr.value_size,
                    m.attr.max_entries,
                    m.attr.map_flags,
                ]
                .into_iter()
                .enumerate()
                {
                    put(i * 4, v);
                }
            }
            FakeObj::Prog(id) => {
                // struct bpf_prog_info: type (XDP), id.
                put(0, 6);
                put(4, id);
            }
            FakeObj::Link(l) => {
                let l = lock(&l);
                // struct bpf_link_info: type (XDP = 6), id, prog_id, xdp.ifindex at 16.
                put(0, 6);
                put(4, l.id);
                put(8, l.prog_id);
                put(16, l.ifindex);
            }
            FakeObj::Stats => return Err(SysError::from_errno(cmd, libc::EINVAL)),
        }
        Ok(info.len() as u32)
    }

    fn get_next_id(&self, kind: IdKind, start: u32) -> Result<Option<u32>, SysError> {
        let s = self.state();
        let ids: Vec<u32> = match kind {
            IdKind::Link => s
                .links
                .iter()
                .map(|l| lock(l))
                .filter(|l| !l.detached)
                .map(|l| l.id)
                .collect(),
            IdKind::Prog => s.progs.clone(),
            IdKind::Map => s
                .objects
                .values()
                .filter_map(|o| match o {
                    FakeObj::Map(m) => Some(lock(m).id),
                    _ => None,
                })
                .collect(),
        };
        Ok(ids.into_iter().filter(|&i| i > start).min())
    }

    fn get_fd_by_id(&self, kind: IdKind, id: u32) -> Result<OwnedFd, SysError> {
        let cmd = match kind {
            IdKind::Prog => Cmd::ProgGetFdById,
            IdKind::Map => Cmd::MapGetFdById,
            IdKind::Link => Cmd::LinkGetFdById,
        };
        let found = {
            let s = self.state();
            match kind {
                IdKind::Link => s
                    .links
                    .iter()
                    .find(|l| lock(l).id == id)
                    .map(|l| FakeObj::Link(Arc::clone(l))),
                IdKind::Prog => s.progs.contains(&id).then_some(FakeObj::Prog(id)),
                IdKind::Map => s
                    .objects
                    .values()
                    .find(|o| matches!(o, FakeObj::Map(m) if lock(m).id == id))
                    .cloned(),
            }
        };
        let obj = found.ok_or_else(|| SysError::from_errno(cmd, libc::ENOENT))?;
        self.register(cmd, obj)
    }

    fn link_create(
        &self,
        prog: BorrowedFd<'_>,
        target: u32,
        attach_type: u32,
        flags: u32,
    ) -> Result<OwnedFd, SysError> {
        let cmd = Cmd::LinkCreate;
        let FakeObj::Prog(prog_id) = self.obj(cmd, prog)? else {
            return Err(SysError::from_errno(cmd, libc::EINVAL));
        };
        // Only XDP links (`BPF_XDP`) with mode flags (SKB 2, DRV 4, HW 8).
        if attach_type != BPF_XDP || flags & !0xe != 0 {
            return Err(SysError::from_errno(cmd, libc::EINVAL));
        }
        if target == 0 {
            return Err(SysError::from_errno(cmd, libc::ENODEV));
        }
        if self.state().attached.contains_key(&target) {
            return Err(SysError::from_errno(cmd, libc::EBUSY));
        }
        let id = self.alloc_id();
        let link = Arc::new(Mutex::new(FakeLink {
            id,
            prog_id,
            ifindex: target,
            detached: false,
        }));
        {
            let mut s = self.state();
            s.links.push(Arc::clone(&link));
            s.attached.insert(target, prog_id);
        }
        self.register(cmd, FakeObj::Link(link))
    }

    fn link_update(
        &self,
        link: BorrowedFd<'_>,
        new_prog: BorrowedFd<'_>,
        old_prog: Option<BorrowedFd<'_>>,
    ) -> Result<(), SysError> {
        let cmd = Cmd::LinkUpdate;
        let FakeObj::Link(l) = self.obj(cmd, link)? else {
            return Err(SysError::from_errno(cmd, libc::EINVAL));
        };
        let FakeObj::Prog(new_id) = self.obj(cmd, new_prog)? else {
            return Err(SysError::from_errno(cmd, libc::EINVAL));
        };
        let old_id = match old_prog {
            Some(fd) => match self.obj(cmd, fd)? {
                FakeObj::Prog(id) => Some(id),
                _ => return Err(SysError::from_errno(cmd, libc::EINVAL)),
            },
            None => None,
        };
        let mut l = lock(&l);
        if l.detached {
            return Err(SysError::from_errno(cmd, libc::ENOLINK));
        }
        if old_id.is_some_and(|o| o != l.prog_id) {
            return Err(SysError::from_errno(cmd, libc::EPERM));
        }
        l.prog_id = new_id;
        self.state().attached.insert(l.ifindex, new_id);
        Ok(())
    }

    fn link_detach(&self, link: BorrowedFd<'_>) -> Result<(), SysError> {
        let cmd = Cmd::LinkDetach;
        let FakeObj::Link(l) = self.obj(cmd, link)? else {
            return Err(SysError::from_errno(cmd, libc::EINVAL));
        };
        let mut l = lock(&l);
        l.detached = true;
        self.state().attached.remove(&l.ifindex);
        Ok(())
    }

    fn enable_stats(&self, stats_type: u32) -> Result<OwnedFd, SysError> {
        if stats_type != 0 {
            return Err(SysError::from_errno(Cmd::EnableStats, libc::EINVAL));
        }
        self.register(Cmd::EnableStats, FakeObj::Stats)
    }

    fn obj_kind(&self, fd: BorrowedFd<'_>) -> Result<ObjKind, SysError> {
        Ok(match self.state().objects.get(&fd.as_raw_fd()) {
            Some(FakeObj::Map(_)) => ObjKind::Map,
            Some(FakeObj::Prog(_)) => ObjKind::Prog,
            Some(FakeObj::Link(_)) => ObjKind::Link,
            Some(FakeObj::Stats) | None => ObjKind::Other,
        })
    }

    fn mmap(
        &self,
        fd: BorrowedFd<'_>,
        len: usize,
        offset: i64,
        _writable: bool,
    ) -> Result<NonNull<u8>, SysError> {
        let cmd = Cmd::Mmap;
        let map = self.map(cmd, fd)?;
        let m = lock(&map);
        if let Some(ring) = &m.ring {
            let page = page_size();
            let size = m.attr.max_entries as usize;
            return match offset {
                0 if len <= page => Ok(ring.ptr),
                // SAFETY: `page` is inside the allocation of `2 * page + 2 * size` bytes.
                o if o == page as i64 && len <= page + 2 * size => {
                    Ok(unsafe { ring.ptr.add(page) })
                }
                _ => Err(SysError::from_errno(cmd, libc::EINVAL)),
            };
        }
        match &m.memory {
            Some(mem) if offset == 0 && len <= mem.layout.size() => Ok(mem.ptr),
            Some(_) => Err(SysError::from_errno(cmd, libc::EINVAL)),
            None => Err(SysError::from_errno(cmd, libc::ENODEV)),
        }
    }

    unsafe fn munmap(&self, _ptr: NonNull<u8>, _len: usize) {
        // The memory belongs to the fake map and lives as long as the fake.
    }

    fn possible_cpus(&self) -> Result<usize, SysError> {
        Ok(self.cpus)
    }

    fn fs_magic(&self, path: &Path) -> Result<i64, SysError> {
        if self.state().bpffs.iter().any(|d| path.starts_with(d)) {
            Ok(BPF_FS_MAGIC)
        } else {
            RealKernel.fs_magic(path)
        }
    }

    fn mount_bpffs(&self, path: &Path) -> Result<(), SysError> {
        self.state().bpffs.push(path.to_path_buf());
        Ok(())
    }

    fn unlink(&self, path: &Path) -> Result<(), SysError> {
        if self.unpin(path) {
            Ok(())
        } else {
            Err(SysError::from_errno(Cmd::Unlink, libc::ENOENT))
        }
    }

    fn xdp_attached(&self, ifindex: u32) -> Result<XdpAttached, SysError> {
        Ok(match self.attached_prog(ifindex) {
            Some(id) => XdpAttached {
                mode: 1,
                prog_id: Some(id),
            },
            None => XdpAttached::default(),
        })
    }
}

/// `ENOTSUPP` (524), the kernel-internal errno bpf(2) returns for unsupported
/// operations; the fake answers it to a test run of a program without behaviour.
const ENOTSUPP: i32 = 524;

/// How [`FakeKernel::ringbuf_write`] leaves a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeRecord {
    /// Committed (`bpf_ringbuf_submit`).
    Committed,
    /// Discarded (`bpf_ringbuf_discard`): consumers skip it.
    Discarded,
    /// Reserved and not yet committed: consumers stop before it until
    /// [`FakeKernel::ringbuf_commit`].
    Busy,
}

/// Record header bits and size (kernel/bpf/ringbuf.c).
const RB_BUSY_BIT: u32 = 1 << 31;
const RB_DISCARD_BIT: u32 = 1 << 30;
const RB_HDR_SZ: usize = 8;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

impl FakeKernel {
    fn ring(&self, map: BorrowedFd<'_>) -> Result<(NonNull<u8>, usize), SysError> {
        let cmd = Cmd::MapUpdateElem;
        let m = self.map(cmd, map)?;
        let m = lock(&m);
        match &m.ring {
            Some(r) => Ok((r.ptr, m.attr.max_entries as usize)),
            None => Err(SysError::from_errno(cmd, libc::EINVAL)),
        }
    }

    /// Writes a record into a ring buffer as a program would (`bpf_ringbuf_output` or
    /// reserve + submit/discard); returns the record's position for
    /// [`ringbuf_commit`](Self::ringbuf_commit). `EAGAIN` if it does not fit.
    pub fn ringbuf_write(
        &self,
        map: BorrowedFd<'_>,
        data: &[u8],
        state: FakeRecord,
    ) -> Result<u64, SysError> {
        let (base, size) = self.ring(map)?;
        let page = page_size();
        let p = base.as_ptr();
        // SAFETY: consumer position at 0, producer position at `page`: both inside the
        // allocation and 8-byte aligned; accessed atomically.
        let (cons, prod) = unsafe {
            (
                AtomicU64::from_ptr(p.cast()).load(Ordering::Acquire),
                AtomicU64::from_ptr(p.add(page).cast()),
            )
        };
        let pos = prod.load(Ordering::Acquire);
        let total = (data.len() + RB_HDR_SZ).div_ceil(8) * 8;
        if pos - cons + total as u64 > size as u64 {
            return Err(SysError::from_errno(Cmd::MapUpdateElem, libc::EAGAIN));
        }
        let mask = size as u64 - 1;
        // SAFETY: the data area starts at `2 * page` and holds `2 * size` bytes.
        let area = unsafe { p.add(2 * page) };
        let put = |at: u64, byte: u8| {
            let k = (at & mask) as usize;
            // SAFETY: k < size, so k and k + size are inside the data area.
            unsafe {
                area.add(k).write_volatile(byte);
                area.add(k + size).write_volatile(byte);
            }
        };
        for (j, b) in data.iter().enumerate() {
            put(pos + (RB_HDR_SZ + j) as u64, *b);
        }
        let flags = match state {
            FakeRecord::Committed => 0,
            FakeRecord::Discarded => RB_DISCARD_BIT,
            FakeRecord::Busy => RB_BUSY_BIT,
        };
        let hdr = data.len() as u32 | flags;
        for (j, b) in [0u8; 4].iter().enumerate() {
            put(pos + 4 + j as u64, *b);
        }
        let k = (pos & mask) as usize;
        // SAFETY: headers are 8-byte aligned and inside both copies of the data area.
        unsafe {
            AtomicU32::from_ptr(area.add(k + size).cast()).store(hdr, Ordering::Release);
            AtomicU32::from_ptr(area.add(k).cast()).store(hdr, Ordering::Release);
        }
        prod.store(pos + total as u64, Ordering::Release);
        Ok(pos)
    }

    /// Commits the busy record written at `pos`.
    pub fn ringbuf_commit(&self, map: BorrowedFd<'_>, pos: u64) -> Result<(), SysError> {
        let (base, size) = self.ring(map)?;
        let k = (pos & (size as u64 - 1)) as usize;
        // SAFETY: as in `ringbuf_write`.
        unsafe {
            let area = base.as_ptr().add(2 * page_size());
            for at in [k, k + size] {
                AtomicU32::from_ptr(area.add(at).cast()).fetch_and(!RB_BUSY_BIT, Ordering::Release);
            }
        }
        Ok(())
    }

    /// Forgets the pin at `path`; returns whether there was one.
    pub fn unpin(&self, path: &Path) -> bool {
        self.state().pins.remove(path).is_some()
    }

    /// Sets what test runs of the program with id `prog_id` do.
    pub fn set_test_run_of(&self, prog_id: u32, run: FakeRun) {
        self.state().runs.insert(prog_id, run);
    }
}
