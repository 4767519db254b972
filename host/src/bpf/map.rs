//! eBPF maps: creation, lookup/update/delete, and host access to mmapped values.
//!
//! [`Map`] is a map descriptor with its type and sizes; its methods check key and value
//! sizes before calling the kernel. [`MapMemory`] is the host's view of an mmapable
//! ARRAY's values, shared with running programs: it hands out no Rust reference to the
//! shared bytes, only bounds-checked accessors that read and write through atomic
//! operations on raw pointers (scalars) or volatile byte copies (byte ranges, no
//! atomicity across bytes). [`RingBufReader`] consumes a `BPF_MAP_TYPE_RINGBUF`.
//!
//! Keep a map's descriptor open (or pin it) as long as programs must see it: closing the
//! last descriptor of an unpinned PROG_ARRAY empties it even while a program that
//! tail-calls through it is attached.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering,
};

use super::prog::{Program, get_name, get_u32};
use super::sys::{self, Cmd, Kernel, MapCreate, ObjKind, SysError};

/// Map types ferrocat creates (`enum bpf_map_type`, include/uapi/linux/bpf.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH`
    Hash,
    /// `BPF_MAP_TYPE_ARRAY`
    Array,
    /// `BPF_MAP_TYPE_PROG_ARRAY`: program descriptors for `bpf_tail_call`.
    ProgArray,
    /// `BPF_MAP_TYPE_PERCPU_HASH`
    PercpuHash,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`
    PercpuArray,
    /// `BPF_MAP_TYPE_RINGBUF`
    RingBuf,
}

impl MapType {
    /// The kernel's number for the type.
    pub const fn number(self) -> u32 {
        match self {
            MapType::Hash => 1,
            MapType::Array => 2,
            MapType::ProgArray => 3,
            MapType::PercpuHash => 5,
            MapType::PercpuArray => 6,
            MapType::RingBuf => 27,
        }
    }

    /// The type numbered `n`, if ferrocat knows it.
    pub const fn from_number(n: u32) -> Option<MapType> {
        Some(match n {
            1 => MapType::Hash,
            2 => MapType::Array,
            3 => MapType::ProgArray,
            5 => MapType::PercpuHash,
            6 => MapType::PercpuArray,
            27 => MapType::RingBuf,
            _ => return None,
        })
    }

    /// Whether values are stored once per possible CPU.
    pub const fn is_percpu(self) -> bool {
        matches!(self, MapType::PercpuHash | MapType::PercpuArray)
    }
}

/// `BPF_F_NO_PREALLOC`: hash entries allocated on insertion.
pub const BPF_F_NO_PREALLOC: u32 = 1 << 0;
/// `BPF_F_MMAPABLE`: array values may be mmapped by the host.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// How an update treats an existing entry (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UpdateMode {
    /// Create or replace.
    #[default]
    Any,
    /// Only create (fails with `EEXIST` if present; refused by PROG_ARRAY).
    NoExist,
    /// Only replace (fails with `ENOENT` if absent).
    Exist,
}

impl UpdateMode {
    const fn flags(self) -> u64 {
        match self {
            UpdateMode::Any => 0,
            UpdateMode::NoExist => 1,
            UpdateMode::Exist => 2,
        }
    }
}

/// Everything needed to create a map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// Type.
    pub map_type: MapType,
    /// Key size in bytes (4 for arrays, 0 for a ring buffer).
    pub key_size: u32,
    /// Value size in bytes (0 for a ring buffer).
    pub value_size: u32,
    /// Number of entries; for a ring buffer, its size in bytes (a power of two multiple
    /// of the page size).
    pub max_entries: u32,
    /// `BPF_F_*` flags.
    pub flags: u32,
    /// Name (the kernel keeps 15 bytes of `[A-Za-z0-9_.]`).
    pub name: String,
}

impl MapSpec {
    /// An ARRAY of `max_entries` values of `value_size` bytes.
    pub fn array(name: &str, value_size: u32, max_entries: u32) -> MapSpec {
        MapSpec {
            map_type: MapType::Array,
            key_size: 4,
            value_size,
            max_entries,
            flags: 0,
            name: name.into(),
        }
    }

    /// An ARRAY whose values the host can mmap (`BPF_F_MMAPABLE`); with
    /// `max_entries = 1` programs address its value directly (`BPF_PSEUDO_MAP_VALUE`).
    pub fn mmapable_array(name: &str, value_size: u32, max_entries: u32) -> MapSpec {
        MapSpec {
            flags: BPF_F_MMAPABLE,
            ..MapSpec::array(name, value_size, max_entries)
        }
    }

    /// A PERCPU_ARRAY.
    pub fn percpu_array(name: &str, value_size: u32, max_entries: u32) -> MapSpec {
        MapSpec {
            map_type: MapType::PercpuArray,
            ..MapSpec::array(name, value_size, max_entries)
        }
    }

    /// A HASH map.
    pub fn hash(name: &str, key_size: u32, value_size: u32, max_entries: u32) -> MapSpec {
        MapSpec {
            map_type: MapType::Hash,
            key_size,
            value_size,
            max_entries,
            flags: 0,
            name: name.into(),
        }
    }

    /// A PROG_ARRAY of `max_entries` program slots.
    pub fn prog_array(name: &str, max_entries: u32) -> MapSpec {
        MapSpec {
            map_type: MapType::ProgArray,
            key_size: 4,
            value_size: 4,
            max_entries,
            flags: 0,
            name: name.into(),
        }
    }

    /// A ring buffer of `size` bytes (a power of two, a multiple of the page size).
    pub fn ring_buf(name: &str, size: u32) -> MapSpec {
        MapSpec {
            map_type: MapType::RingBuf,
            key_size: 0,
            value_size: 0,
            max_entries: size,
            flags: 0,
            name: name.into(),
        }
    }
}

/// Errors of map operations.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The kernel refused the call.
    #[error("map `{map}`: {source}{}", super::prog::permission_hint(source))]
    Sys {
        /// The map's name.
        map: String,
        /// The kernel's error.
        #[source]
        source: SysError,
    },
    /// A key of the wrong size.
    #[error("map `{map}`: key of {got} bytes, the map's keys have {expected}")]
    KeySize {
        /// The map's name.
        map: String,
        /// The map's key size.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// A value of the wrong size.
    #[error("map `{map}`: value of {got} bytes, the map's values have {expected}")]
    ValueSize {
        /// The map's name.
        map: String,
        /// The size expected.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// The operation does not apply to this map type.
    #[error("map `{map}`: {what} is not possible on a {map_type:?} map")]
    WrongType {
        /// The map's name.
        map: String,
        /// Its type.
        map_type: MapType,
        /// The operation.
        what: &'static str,
    },
    /// A descriptor that is not a map, or a map of a type ferrocat does not know.
    #[error("descriptor is not a map ferrocat knows (kind {kind:?}, type {map_type:?})")]
    NotAMap {
        /// What the descriptor refers to.
        kind: ObjKind,
        /// The kernel's map type number, if it is a map.
        map_type: Option<u32>,
    },
}

/// Layout of `struct bpf_map_info` (include/uapi/linux/bpf.h).
mod map_info {
    pub(super) const TYPE: usize = 0;
    pub(super) const ID: usize = 4;
    pub(super) const KEY_SIZE: usize = 8;
    pub(super) const VALUE_SIZE: usize = 12;
    pub(super) const MAX_ENTRIES: usize = 16;
    pub(super) const FLAGS: usize = 20;
    pub(super) const NAME: usize = 24;
    pub(super) const SIZE: usize = 88;
}

/// A map's identity as the kernel reports it (`struct bpf_map_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// Type number.
    pub map_type: u32,
    /// Kernel-wide id.
    pub id: u32,
    /// Key size.
    pub key_size: u32,
    /// Value size.
    pub value_size: u32,
    /// Number of entries.
    pub max_entries: u32,
    /// Flags.
    pub flags: u32,
    /// Name.
    pub name: String,
}

/// Reads `struct bpf_map_info` of a descriptor.
pub fn map_info_of(kernel: &dyn Kernel, fd: BorrowedFd<'_>) -> Result<MapInfo, SysError> {
    let mut b = vec![0u8; map_info::SIZE];
    kernel.obj_get_info(fd, &mut b)?;
    Ok(MapInfo {
        map_type: get_u32(&b, map_info::TYPE),
        id: get_u32(&b, map_info::ID),
        key_size: get_u32(&b, map_info::KEY_SIZE),
        value_size: get_u32(&b, map_info::VALUE_SIZE),
        max_entries: get_u32(&b, map_info::MAX_ENTRIES),
        flags: get_u32(&b, map_info::FLAGS),
        name: get_name(&b, map_info::NAME),
    })
}

/// A map entry as bytes: (key, value).
pub type Entry = (Vec<u8>, Vec<u8>);

/// A map in the kernel. Dropping it closes its descriptor; the map lives on while
/// programs, pins or mappings hold it.
pub struct Map {
    fd: OwnedFd,
    kernel: Arc<dyn Kernel>,
    spec: MapSpec,
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("fd", &self.fd)
            .field("spec", &self.spec)
            .finish()
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Map {
    /// Creates a map in the kernel of this thread ([`sys::current`]).
    pub fn create(spec: &MapSpec) -> Result<Map, MapError> {
        Map::create_with(sys::current(), spec)
    }

    /// Creates a map through `kernel`.
    pub fn create_with(kernel: Arc<dyn Kernel>, spec: &MapSpec) -> Result<Map, MapError> {
        let fd = kernel
            .map_create(&MapCreate {
                map_type: spec.map_type.number(),
                key_size: spec.key_size,
                value_size: spec.value_size,
                max_entries: spec.max_entries,
                map_flags: spec.flags,
                name: spec.name.clone(),
            })
            .map_err(|source| MapError::Sys {
                map: spec.name.clone(),
                source,
            })?;
        Ok(Map {
            fd,
            kernel,
            spec: spec.clone(),
        })
    }

    /// Wraps a map descriptor (from bpffs or an id), reading its type and sizes from the
    /// kernel.
    pub fn from_fd(fd: OwnedFd) -> Result<Map, MapError> {
        let kernel = sys::current();
        let kind = kernel
            .obj_kind(fd.as_fd())
            .map_err(|source| MapError::Sys {
                map: "?".into(),
                source,
            })?;
        if kind != ObjKind::Map {
            return Err(MapError::NotAMap {
                kind,
                map_type: None,
            });
        }
        let info = map_info_of(&*kernel, fd.as_fd()).map_err(|source| MapError::Sys {
            map: "?".into(),
            source,
        })?;
        let map_type = MapType::from_number(info.map_type).ok_or(MapError::NotAMap {
            kind,
            map_type: Some(info.map_type),
        })?;
        Ok(Map {
            fd,
            kernel,
            spec: MapSpec {
                map_type,
                key_size: info.key_size,
                value_size: info.value_size,
                max_entries: info.max_entries,
                flags: info.flags,
                name: info.name,
            },
        })
    }

    /// The map's type, sizes, flags and name.
    pub fn spec(&self) -> &MapSpec {
        &self.spec
    }

    /// The map's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The kernel's view of the map (id included).
    pub fn info(&self) -> Result<MapInfo, MapError> {
        map_info_of(&*self.kernel, self.fd.as_fd()).map_err(|e| self.sys(e))
    }

    /// The descriptor number to put in `LdMapFd` / `LdMapValue` instructions; valid as
    /// long as this map is alive.
    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    /// The kernel this map lives in.
    pub fn kernel(&self) -> &Arc<dyn Kernel> {
        &self.kernel
    }

    fn sys(&self, source: SysError) -> MapError {
        MapError::Sys {
            map: self.spec.name.clone(),
            source,
        }
    }

    fn wrong(&self, what: &'static str) -> MapError {
        MapError::WrongType {
            map: self.spec.name.clone(),
            map_type: self.spec.map_type,
            what,
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() != self.spec.key_size as usize {
            return Err(MapError::KeySize {
                map: self.spec.name.clone(),
                expected: self.spec.key_size as usize,
                got: key.len(),
            });
        }
        Ok(())
    }

    /// Bytes between consecutive CPUs' values in a per-CPU value.
    fn percpu_stride(&self) -> usize {
        (self.spec.value_size as usize).div_ceil(8) * 8
    }

    /// Number of possible CPUs, the count of values in a per-CPU entry.
    pub fn possible_cpus(&self) -> Result<usize, MapError> {
        self.kernel.possible_cpus().map_err(|e| self.sys(e))
    }

    fn plain(&self, what: &'static str) -> Result<(), MapError> {
        match self.spec.map_type {
            MapType::Hash | MapType::Array => Ok(()),
            _ => Err(self.wrong(what)),
        }
    }

    /// The value stored under `key`, `None` if there is none.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.plain("lookup of a single value")?;
        self.check_key(key)?;
        let mut value = vec![0u8; self.spec.value_size as usize];
        match self.kernel.map_lookup(self.fd.as_fd(), key, &mut value, 0) {
            Ok(()) => Ok(Some(value)),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.sys(e)),
        }
    }

    /// Stores `value` under `key`.
    pub fn update(&self, key: &[u8], value: &[u8], mode: UpdateMode) -> Result<(), MapError> {
        self.plain("update of a single value")?;
        self.check_key(key)?;
        if value.len() != self.spec.value_size as usize {
            return Err(MapError::ValueSize {
                map: self.spec.name.clone(),
                expected: self.spec.value_size as usize,
                got: value.len(),
            });
        }
        self.kernel
            .map_update(self.fd.as_fd(), key, value, mode.flags())
            .map_err(|e| self.sys(e))
    }

    /// Removes `key`; returns whether it was present. Array entries cannot be removed.
    pub fn delete(&self, key: &[u8]) -> Result<bool, MapError> {
        if matches!(
            self.spec.map_type,
            MapType::Array | MapType::PercpuArray | MapType::RingBuf
        ) {
            return Err(self.wrong("deleting an entry"));
        }
        self.check_key(key)?;
        match self.kernel.map_delete(self.fd.as_fd(), key) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(self.sys(e)),
        }
    }

    /// The key after `key` (the first key if `None`); `None` at the end.
    pub fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        if self.spec.map_type == MapType::RingBuf {
            return Err(self.wrong("iterating keys"));
        }
        if let Some(k) = key {
            self.check_key(k)?;
        }
        let mut next = vec![0u8; self.spec.key_size as usize];
        match self
            .kernel
            .map_get_next_key(self.fd.as_fd(), key, &mut next)
        {
            Ok(()) => Ok(Some(next)),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.sys(e)),
        }
    }

    /// All keys, in the kernel's iteration order. Entries inserted or removed
    /// concurrently may or may not appear (as with any bpf map walk).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, MapError> {
        let mut keys = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        // A hash map walk restarts from the first key if the current key vanished; bound
        // the walk so a concurrently churning map cannot loop forever.
        let limit = self.spec.max_entries as usize * 2 + 16;
        while let Some(next) = self.next_key(cur.as_deref())? {
            keys.push(next.clone());
            cur = Some(next);
            if keys.len() > limit {
                break;
            }
        }
        Ok(keys)
    }

    /// All entries (key, value) of a HASH or ARRAY map.
    pub fn entries(&self) -> Result<Vec<Entry>, MapError> {
        let mut out = Vec::new();
        for key in self.keys()? {
            if let Some(v) = self.lookup(&key)? {
                out.push((key, v));
            }
        }
        Ok(out)
    }

    /// The per-CPU values under `key` of a PERCPU_ARRAY or PERCPU_HASH, one per possible
    /// CPU; `None` if the key is absent.
    pub fn lookup_percpu(&self, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>, MapError> {
        if !self.spec.map_type.is_percpu() {
            return Err(self.wrong("per-CPU lookup"));
        }
        self.check_key(key)?;
        let cpus = self.possible_cpus()?;
        let stride = self.percpu_stride();
        let mut buf = vec![0u8; stride * cpus];
        match self.kernel.map_lookup(self.fd.as_fd(), key, &mut buf, 0) {
            Ok(()) => Ok(Some(
                buf.chunks(stride)
                    .map(|c| c[..self.spec.value_size as usize].to_vec())
                    .collect(),
            )),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.sys(e)),
        }
    }

    /// Stores one value per possible CPU under `key`.
    pub fn update_percpu(
        &self,
        key: &[u8],
        values: &[Vec<u8>],
        mode: UpdateMode,
    ) -> Result<(), MapError> {
        if !self.spec.map_type.is_percpu() {
            return Err(self.wrong("per-CPU update"));
        }
        self.check_key(key)?;
        let cpus = self.possible_cpus()?;
        let size = self.spec.value_size as usize;
        if values.len() != cpus {
            return Err(MapError::ValueSize {
                map: self.spec.name.clone(),
                expected: cpus,
                got: values.len(),
            });
        }
        let stride = self.percpu_stride();
        let mut buf = vec![0u8; stride * cpus];
        for (i, v) in values.iter().enumerate() {
            if v.len() != size {
                return Err(MapError::ValueSize {
                    map: self.spec.name.clone(),
                    expected: size,
                    got: v.len(),
                });
            }
            buf[i * stride..i * stride + size].copy_from_slice(v);
        }
        self.kernel
            .map_update(self.fd.as_fd(), key, &buf, mode.flags())
            .map_err(|e| self.sys(e))
    }

    /// The sum over all CPUs of the little-endian unsigned integer of `width` bytes (1,
    /// 2, 4 or 8) at byte `offset` of the per-CPU values under `key` (wrapping, as
    /// counters do).
    pub fn sum_percpu(
        &self,
        key: &[u8],
        offset: usize,
        width: usize,
    ) -> Result<Option<u64>, MapError> {
        let end = offset.checked_add(width);
        if !matches!(width, 1 | 2 | 4 | 8)
            || end.is_none_or(|end| end > self.spec.value_size as usize)
        {
            return Err(MapError::ValueSize {
                map: self.spec.name.clone(),
                expected: self.spec.value_size as usize,
                got: end.unwrap_or(usize::MAX),
            });
        }
        Ok(self.lookup_percpu(key)?.map(|values| {
            values.iter().fold(0u64, |acc, v| {
                let mut b = [0u8; 8];
                b[..width].copy_from_slice(&v[offset..offset + width]);
                acc.wrapping_add(u64::from_le_bytes(b))
            })
        }))
    }

    /// Puts `prog` into slot `index` of a PROG_ARRAY (replacing what was there).
    pub fn set_prog(&self, index: u32, prog: &Program) -> Result<(), MapError> {
        if self.spec.map_type != MapType::ProgArray {
            return Err(self.wrong("storing a program"));
        }
        use std::os::fd::AsRawFd;
        let fd = prog.as_fd().as_raw_fd() as u32;
        self.kernel
            .map_update(self.fd.as_fd(), &index.to_ne_bytes(), &fd.to_ne_bytes(), 0)
            .map_err(|e| self.sys(e))
    }

    /// The id of the program in slot `index` of a PROG_ARRAY, `None` if the slot is
    /// empty (the kernel answers user-space lookups of a PROG_ARRAY with program ids).
    pub fn prog_id_at(&self, index: u32) -> Result<Option<u32>, MapError> {
        if self.spec.map_type != MapType::ProgArray {
            return Err(self.wrong("reading a program slot"));
        }
        let mut id = [0u8; 4];
        match self
            .kernel
            .map_lookup(self.fd.as_fd(), &index.to_ne_bytes(), &mut id, 0)
        {
            Ok(()) => Ok(Some(u32::from_ne_bytes(id))),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.sys(e)),
        }
    }

    /// Empties slot `index` of a PROG_ARRAY; returns whether it held a program.
    pub fn clear_prog(&self, index: u32) -> Result<bool, MapError> {
        if self.spec.map_type != MapType::ProgArray {
            return Err(self.wrong("removing a program"));
        }
        self.delete(&index.to_ne_bytes())
    }

    /// Maps the values of an mmapable ARRAY into the host (all entries, each at a stride
    /// of the value size rounded up to 8 bytes).
    pub fn mmap(&self) -> Result<MapMemory, MapError> {
        if self.spec.map_type != MapType::Array || self.spec.flags & BPF_F_MMAPABLE == 0 {
            return Err(self.wrong("mmap (needs an ARRAY created with BPF_F_MMAPABLE)"));
        }
        let len = (self.spec.value_size as usize).div_ceil(8) * 8 * self.spec.max_entries as usize;
        let map_len = len.div_ceil(page_size()) * page_size();
        let ptr = self
            .kernel
            .mmap(self.fd.as_fd(), map_len, 0, true)
            .map_err(|e| self.sys(e))?;
        Ok(MapMemory {
            ptr,
            len,
            map_len,
            kernel: Arc::clone(&self.kernel),
            name: self.spec.name.clone(),
        })
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

/// Errors of [`MapMemory`] accesses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The access reaches past the mapped values.
    #[error("map `{map}`: access of {size} bytes at offset {offset} is outside its {len} bytes")]
    OutOfBounds {
        /// The map's name.
        map: String,
        /// Offset of the access.
        offset: usize,
        /// Size of the access.
        size: usize,
        /// Bytes mapped.
        len: usize,
    },
    /// The offset is not a multiple of the access size.
    #[error("map `{map}`: {size}-byte access at offset {offset} is not aligned")]
    Misaligned {
        /// The map's name.
        map: String,
        /// Offset of the access.
        offset: usize,
        /// Size of the access.
        size: usize,
    },
}

mod sealed {
    pub trait Sealed {}
}

/// Integer types [`MapMemory`] reads and writes: each access is one atomic operation of
/// the type's width, so neither the host nor a program sees a torn value.
pub trait Scalar: Copy + sealed::Sealed {
    /// Size in bytes.
    const SIZE: usize;
    /// Relaxed atomic load.
    ///
    /// # Safety
    /// `p` must be valid for reads of `SIZE` bytes and aligned to `SIZE`.
    unsafe fn load(p: *mut u8) -> Self;
    /// Relaxed atomic store.
    ///
    /// # Safety
    /// `p` must be valid for writes of `SIZE` bytes and aligned to `SIZE`.
    unsafe fn store(p: *mut u8, v: Self);
    /// Atomic wrapping add, returning the previous value.
    ///
    /// # Safety
    /// As for `store`.
    unsafe fn fetch_add(p: *mut u8, v: Self) -> Self;
    /// Atomic exchange, returning the previous value.
    ///
    /// # Safety
    /// As for `store`.
    unsafe fn swap(p: *mut u8, v: Self) -> Self;
    /// Atomic compare-and-exchange: `Ok(previous)` if it held `current`, else
    /// `Err(actual)`.
    ///
    /// # Safety
    /// As for `store`.
    unsafe fn compare_exchange(p: *mut u8, current: Self, new: Self) -> Result<Self, Self>;
}

macro_rules! scalar {
    ($t:ty, $atomic:ty) => {
        impl sealed::Sealed for $t {}
        impl Scalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            unsafe fn load(p: *mut u8) -> Self {
                // SAFETY: the caller guarantees validity and alignment; the transient
                // atomic view is interior-mutable, so it asserts nothing about the
                // memory staying unchanged.
                unsafe { <$atomic>::from_ptr(p.cast()) }.load(Ordering::Relaxed)
            }
            unsafe fn store(p: *mut u8, v: Self) {
                // SAFETY: as in `load`.
                unsafe { <$atomic>::from_ptr(p.cast()) }.store(v, Ordering::Relaxed)
            }
            unsafe fn fetch_add(p: *mut u8, v: Self) -> Self {
                // SAFETY: as in `load`.
                unsafe { <$atomic>::from_ptr(p.cast()) }.fetch_add(v, Ordering::SeqCst)
            }
            unsafe fn swap(p: *mut u8, v: Self) -> Self {
                // SAFETY: as in `load`.
                unsafe { <$atomic>::from_ptr(p.cast()) }.swap(v, Ordering::SeqCst)
            }
            unsafe fn compare_exchange(p: *mut u8, current: Self, new: Self) -> Result<Self, Self> {
                // SAFETY: as in `load`.
                unsafe { <$atomic>::from_ptr(p.cast()) }.compare_exchange(
                    current,
                    new,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
            }
        }
    };
}

scalar!(u8, AtomicU8);
scalar!(u16, AtomicU16);
scalar!(u32, AtomicU32);
scalar!(u64, AtomicU64);
scalar!(i8, AtomicI8);
scalar!(i16, AtomicI16);
scalar!(i32, AtomicI32);
scalar!(i64, AtomicI64);

/// The host's mapping of an mmapable ARRAY's values, shared with programs running in
/// the kernel.
///
/// No `&`/`&mut` to the shared bytes is ever formed: every access is bounds-checked and
/// alignment-checked, then done as one atomic operation through a raw pointer (or,
/// for [`read_bytes`](Self::read_bytes) / [`write_bytes`](Self::write_bytes), byte by
/// byte with volatile accesses). Unmapped on drop; the map stays alive while mapped.
pub struct MapMemory {
    ptr: NonNull<u8>,
    len: usize,
    map_len: usize,
    kernel: Arc<dyn Kernel>,
    name: String,
}

// SAFETY: all accesses are atomic or volatile through raw pointers to memory that stays
// mapped until drop; nothing is tied to the creating thread.
unsafe impl Send for MapMemory {}
// SAFETY: as above; concurrent accesses are atomic.
unsafe impl Sync for MapMemory {}

impl fmt::Debug for MapMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapMemory")
            .field("map", &self.name)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for MapMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by this kernel with this length and nothing can
        // use it after drop.
        unsafe { self.kernel.munmap(self.ptr, self.map_len) }
    }
}

macro_rules! named_accessors {
    ($($t:ty => $read:ident, $write:ident;)*) => {
        $(
            #[doc = concat!("Reads the `", stringify!($t), "` at `offset` (atomically).")]
            pub fn $read(&self, offset: usize) -> Result<$t, MemoryError> {
                self.read::<$t>(offset)
            }
            #[doc = concat!("Writes the `", stringify!($t), "` at `offset` (atomically).")]
            pub fn $write(&self, offset: usize, value: $t) -> Result<(), MemoryError> {
                self.write::<$t>(offset, value)
            }
        )*
    };
}

impl MapMemory {
    /// Bytes of values mapped (entries × value size rounded up to 8).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is mapped (never, for a created map).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at(&self, offset: usize, size: usize, aligned: bool) -> Result<*mut u8, MemoryError> {
        if offset.checked_add(size).is_none_or(|end| end > self.len) {
            return Err(MemoryError::OutOfBounds {
                map: self.name.clone(),
                offset,
                size,
                len: self.len,
            });
        }
        if aligned && offset % size != 0 {
            return Err(MemoryError::Misaligned {
                map: self.name.clone(),
                offset,
                size,
            });
        }
        // SAFETY: offset + size <= len <= the mapping's length.
        Ok(unsafe { self.ptr.as_ptr().add(offset) })
    }

    /// Reads the value of type `T` at `offset` (naturally aligned).
    pub fn read<T: Scalar>(&self, offset: usize) -> Result<T, MemoryError> {
        let p = self.at(offset, T::SIZE, true)?;
        // SAFETY: `at` checked bounds and alignment.
        Ok(unsafe { T::load(p) })
    }

    /// Writes `value` at `offset` (naturally aligned).
    pub fn write<T: Scalar>(&self, offset: usize, value: T) -> Result<(), MemoryError> {
        let p = self.at(offset, T::SIZE, true)?;
        // SAFETY: `at` checked bounds and alignment.
        unsafe { T::store(p, value) };
        Ok(())
    }

    /// Atomically adds `value` at `offset` (wrapping) and returns the previous value.
    pub fn fetch_add<T: Scalar>(&self, offset: usize, value: T) -> Result<T, MemoryError> {
        let p = self.at(offset, T::SIZE, true)?;
        // SAFETY: `at` checked bounds and alignment.
        Ok(unsafe { T::fetch_add(p, value) })
    }

    /// Atomically replaces the value at `offset`, returning the previous one.
    pub fn swap<T: Scalar>(&self, offset: usize, value: T) -> Result<T, MemoryError> {
        let p = self.at(offset, T::SIZE, true)?;
        // SAFETY: `at` checked bounds and alignment.
        Ok(unsafe { T::swap(p, value) })
    }

    /// Atomically stores `new` at `offset` if it holds `current`: `Ok(Ok(previous))` on
    /// success, `Ok(Err(actual))` if the value differed.
    pub fn compare_exchange<T: Scalar>(
        &self,
        offset: usize,
        current: T,
        new: T,
    ) -> Result<Result<T, T>, MemoryError> {
        let p = self.at(offset, T::SIZE, true)?;
        // SAFETY: `at` checked bounds and alignment.
        Ok(unsafe { T::compare_exchange(p, current, new) })
    }

    /// Copies `out.len()` bytes at `offset` into `out` (volatile, byte by byte: no
    /// atomicity across bytes).
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), MemoryError> {
        let p = self.at(offset, out.len(), false)?;
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: inside the range `at` checked.
            *b = unsafe { p.add(i).read_volatile() };
        }
        Ok(())
    }

    /// Copies `data` to `offset` (volatile, byte by byte).
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        let p = self.at(offset, data.len(), false)?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: inside the range `at` checked.
            unsafe { p.add(i).write_volatile(*b) };
        }
        Ok(())
    }

    named_accessors! {
        u8 => read_u8, write_u8;
        u16 => read_u16, write_u16;
        u32 => read_u32, write_u32;
        u64 => read_u64, write_u64;
        i8 => read_i8, write_i8;
        i16 => read_i16, write_i16;
        i32 => read_i32, write_i32;
        i64 => read_i64, write_i64;
    }
}

// Ring buffer record header (kernel/bpf/ringbuf.c, include/uapi/linux/bpf.h).
/// The record is still being written (`BPF_RINGBUF_BUSY_BIT`).
const RINGBUF_BUSY_BIT: u32 = 1 << 31;
/// The record was discarded (`BPF_RINGBUF_DISCARD_BIT`).
const RINGBUF_DISCARD_BIT: u32 = 1 << 30;
/// Size of a record header (`BPF_RINGBUF_HDR_SZ`).
const RINGBUF_HDR_SZ: usize = 8;

/// Consumer of a `BPF_MAP_TYPE_RINGBUF`: maps its consumer page (read-write) and its
/// producer page with the data pages (read-only, data mapped twice so a record that wraps
/// reads contiguously), and hands out records in the order programs committed them.
pub struct RingBufReader {
    fd: OwnedFd,
    consumer: NonNull<u8>,
    producer: NonNull<u8>,
    page: usize,
    size: usize,
    kernel: Arc<dyn Kernel>,
    name: String,
}

// SAFETY: accesses are atomic or volatile through raw pointers into mappings owned by
// the reader; `next` takes `&mut self`, so there is one consumer.
unsafe impl Send for RingBufReader {}

impl fmt::Debug for RingBufReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBufReader")
            .field("map", &self.name)
            .field("size", &self.size)
            .finish()
    }
}

impl Drop for RingBufReader {
    fn drop(&mut self) {
        // SAFETY: both mappings were made by this kernel with these lengths.
        unsafe {
            self.kernel.munmap(self.consumer, self.page);
            self.kernel.munmap(self.producer, self.page + 2 * self.size);
        }
    }
}

impl RingBufReader {
    /// Maps the ring buffer `map` for consumption.
    pub fn new(map: &Map) -> Result<RingBufReader, MapError> {
        if map.spec.map_type != MapType::RingBuf {
            return Err(map.wrong("reading records"));
        }
        let page = page_size();
        let size = map.spec.max_entries as usize;
        let consumer = map
            .kernel
            .mmap(map.as_fd(), page, 0, true)
            .map_err(|e| map.sys(e))?;
        let producer = match map
            .kernel
            .mmap(map.as_fd(), page + 2 * size, page as i64, false)
        {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: just mapped with this length, not used.
                unsafe { map.kernel.munmap(consumer, page) };
                return Err(map.sys(e));
            }
        };
        let fd = match map.fd.try_clone() {
            Ok(fd) => fd,
            Err(source) => {
                // SAFETY: both just mapped with these lengths, not used.
                unsafe {
                    map.kernel.munmap(consumer, page);
                    map.kernel.munmap(producer, page + 2 * size);
                }
                return Err(map.sys(SysError {
                    cmd: Cmd::Dup,
                    source,
                }));
            }
        };
        Ok(RingBufReader {
            fd,
            consumer,
            producer,
            page,
            size,
            kernel: Arc::clone(&map.kernel),
            name: map.spec.name.clone(),
        })
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page is mapped read-write for the reader's lifetime and
        // starts with the 8-byte aligned consumer position; atomic access only.
        unsafe { AtomicU64::from_ptr(self.consumer.as_ptr().cast()) }
    }

    /// The next committed record, `None` if none is ready. Discarded records are
    /// skipped.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Vec<u8>> {
        let mask = self.size as u64 - 1;
        loop {
            let cons = self.consumer_pos().load(Ordering::Acquire);
            // SAFETY: the producer page starts with the 8-byte producer position.
            let prod = unsafe { AtomicU64::from_ptr(self.producer.as_ptr().cast()) }
                .load(Ordering::Acquire);
            if cons >= prod {
                return None;
            }
            let at = self.page + (cons & mask) as usize;
            // SAFETY: `at + 8 <= page + size`: headers are 8-byte aligned inside the data
            // area.
            let hdr = unsafe { AtomicU32::from_ptr(self.producer.as_ptr().add(at).cast()) }
                .load(Ordering::Acquire);
            if hdr & RINGBUF_BUSY_BIT != 0 {
                return None;
            }
            let len = (hdr & !(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT)) as usize;
            let total = (len + RINGBUF_HDR_SZ).div_ceil(8) * 8;
            let record = if hdr & RINGBUF_DISCARD_BIT == 0 && len <= self.size {
                let mut out = vec![0u8; len];
                for (i, b) in out.iter_mut().enumerate() {
                    // SAFETY: the data area is mapped twice, so `at + 8 + len` stays
                    // within `page + 2 * size`.
                    *b = unsafe {
                        self.producer
                            .as_ptr()
                            .add(at + RINGBUF_HDR_SZ + i)
                            .read_volatile()
                    };
                }
                Some(out)
            } else {
                None
            };
            self.consumer_pos()
                .store(cons + total as u64, Ordering::Release);
            if record.is_some() {
                return record;
            }
        }
    }

    /// All records ready now.
    pub fn drain(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.next()).collect()
    }

    /// Whether a record is waiting to be read (committed, not busy).
    fn ready(&self) -> bool {
        let cons = self.consumer_pos().load(Ordering::Acquire);
        // SAFETY: the producer page starts with the 8-byte producer position.
        let prod =
            unsafe { AtomicU64::from_ptr(self.producer.as_ptr().cast()) }.load(Ordering::Acquire);
        cons < prod
    }

    /// Waits until the kernel signals data (or `timeout` passes); returns whether data
    /// is ready. A record still being written counts as data: [`next`](Self::next) may
    /// then return `None` for a moment. Programs that commit with `BPF_RB_NO_WAKEUP` signal nothing: poll
    /// [`next`](Self::next) for those.
    pub fn wait(&self, timeout: std::time::Duration) -> Result<bool, SysError> {
        use std::os::fd::AsRawFd;
        if self.ready() {
            return Ok(true);
        }
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the call's duration.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let source = std::io::Error::last_os_error();
            if source.kind() == std::io::ErrorKind::Interrupted {
                return Ok(self.ready());
            }
            return Err(SysError {
                cmd: Cmd::Poll,
                source,
            });
        }
        Ok(self.ready())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::prog::{LoadOptions, Program};
    use crate::bpf::sys::FakeKernel;
    use ferrocat_plugin_api::ebpf::insn::{Insn, encode};

    fn fake() -> Arc<FakeKernel> {
        FakeKernel::new(4)
    }

    #[test]
    fn hash_round_trip_and_iteration() {
        let k = fake();
        let m = Map::create_with(k, &MapSpec::hash("h", 4, 8, 16)).expect("create");
        for i in 0u32..5 {
            m.update(
                &i.to_ne_bytes(),
                &u64::from(i * 10).to_ne_bytes(),
                UpdateMode::NoExist,
            )
            .expect("insert");
        }
        assert_eq!(
            m.lookup(&3u32.to_ne_bytes()).expect("lookup"),
            Some(30u64.to_ne_bytes().to_vec())
        );
        assert!(matches!(
            m.update(&3u32.to_ne_bytes(), &[0; 8], UpdateMode::NoExist),
            Err(MapError::Sys { .. })
        ));
        assert!(m.delete(&3u32.to_ne_bytes()).expect("delete"));
        assert!(!m.delete(&3u32.to_ne_bytes()).expect("delete again"));
        assert_eq!(m.lookup(&3u32.to_ne_bytes()).expect("lookup"), None);
        let mut keys: Vec<u32> = m
            .keys()
            .expect("keys")
            .iter()
            .map(|k| u32::from_ne_bytes([k[0], k[1], k[2], k[3]]))
            .collect();
        keys.sort();
        assert_eq!(keys, vec![0, 1, 2, 4]);
        assert_eq!(m.entries().expect("entries").len(), 4);
    }

    #[test]
    fn sizes_are_checked_before_the_kernel_is_asked() {
        let m = Map::create_with(fake(), &MapSpec::hash("sized", 4, 8, 4)).expect("create");
        let e = m.lookup(&[1, 2]).expect_err("short key");
        assert_eq!(
            e.to_string(),
            "map `sized`: key of 2 bytes, the map's keys have 4"
        );
        assert!(matches!(
            m.update(&[0; 4], &[0; 3], UpdateMode::Any),
            Err(MapError::ValueSize {
                expected: 8,
                got: 3,
                ..
            })
        ));
        assert!(matches!(m.mmap(), Err(MapError::WrongType { .. })));
    }

    #[test]
    fn percpu_values_are_per_cpu_and_summed() {
        let m = Map::create_with(fake(), &MapSpec::percpu_array("pc", 4, 2)).expect("create");
        let values: Vec<Vec<u8>> = (1u32..=4).map(|v| v.to_le_bytes().to_vec()).collect();
        m.update_percpu(&1u32.to_ne_bytes(), &values, UpdateMode::Any)
            .expect("update");
        assert_eq!(
            m.lookup_percpu(&1u32.to_ne_bytes()).expect("lookup"),
            Some(values)
        );
        assert_eq!(
            m.sum_percpu(&1u32.to_ne_bytes(), 0, 4).expect("sum"),
            Some(10)
        );
        assert_eq!(
            m.sum_percpu(&0u32.to_ne_bytes(), 0, 4).expect("sum"),
            Some(0)
        );
        // Fields outside the value (also where offset + width overflows) and odd widths
        // are errors naming the value size.
        for (offset, width) in [
            (1, 4),
            (4, 1),
            (0, 3),
            (0, 16),
            (usize::MAX, 4),
            (usize::MAX - 2, 8),
        ] {
            assert!(
                matches!(
                    m.sum_percpu(&1u32.to_ne_bytes(), offset, width),
                    Err(MapError::ValueSize { expected: 4, .. })
                ),
                "offset {offset} width {width}"
            );
        }
        assert!(matches!(
            m.lookup(&0u32.to_ne_bytes()),
            Err(MapError::WrongType { .. })
        ));
    }

    #[test]
    fn mmapped_memory_is_bounds_and_alignment_checked() {
        let m = Map::create_with(fake(), &MapSpec::mmapable_array("vars", 24, 1)).expect("create");
        let mem = m.mmap().expect("mmap");
        assert_eq!(mem.len(), 24);
        mem.write_i32(4, -7).expect("write");
        assert_eq!(mem.read_i32(4).expect("read"), -7);
        assert_eq!(mem.fetch_add::<u64>(8, 5).expect("add"), 0);
        assert_eq!(mem.fetch_add::<u64>(8, 5).expect("add"), 5);
        assert_eq!(mem.read_u64(8).expect("read"), 10);
        assert_eq!(mem.compare_exchange::<u64>(8, 10, 1).expect("cas"), Ok(10));
        assert_eq!(mem.compare_exchange::<u64>(8, 10, 2).expect("cas"), Err(1));
        // The map's own lookup sees what the host wrote through the mapping.
        let v = m
            .lookup(&0u32.to_ne_bytes())
            .expect("lookup")
            .expect("entry");
        assert_eq!(&v[4..8], &(-7i32).to_ne_bytes());
        assert!(matches!(
            mem.read_u64(20),
            Err(MemoryError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.read_u64(24),
            Err(MemoryError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.read_u32(2),
            Err(MemoryError::Misaligned { .. })
        ));
        assert!(matches!(
            mem.read_u64(usize::MAX - 2),
            Err(MemoryError::OutOfBounds { .. })
        ));
        mem.write_bytes(17, &[1, 2, 3]).expect("bytes");
        let mut b = [0u8; 3];
        mem.read_bytes(17, &mut b).expect("bytes");
        assert_eq!(b, [1, 2, 3]);
    }

    #[test]
    fn ring_buffer_reader_wraps_skips_discarded_and_stops_at_busy() {
        use crate::bpf::sys::FakeRecord;
        let k = fake();
        let rb = Map::create_with(k.clone(), &MapSpec::ring_buf("rb", 4096)).expect("create");
        let mut reader = RingBufReader::new(&rb).expect("reader");
        assert_eq!(reader.next(), None);
        // 20-byte records take 32 bytes: 128 fill the buffer; 1000 wrap it many times.
        let mut got = Vec::new();
        for i in 0u32..1000 {
            let mut rec = vec![0u8; 20];
            rec[..4].copy_from_slice(&i.to_le_bytes());
            rec[19] = 0x5a;
            let state = if i % 7 == 3 {
                FakeRecord::Discarded
            } else {
                FakeRecord::Committed
            };
            k.ringbuf_write(rb.as_fd(), &rec, state).expect("write");
            if i % 50 == 49 {
                got.extend(reader.drain());
            }
        }
        got.extend(reader.drain());
        let expected: Vec<Vec<u8>> = (0u32..1000)
            .filter(|i| i % 7 != 3)
            .map(|i| {
                let mut rec = vec![0u8; 20];
                rec[..4].copy_from_slice(&i.to_le_bytes());
                rec[19] = 0x5a;
                rec
            })
            .collect();
        assert_eq!(got, expected);

        // A full buffer refuses records until the reader consumes.
        for _ in 0..128 {
            k.ringbuf_write(rb.as_fd(), &[1; 20], FakeRecord::Committed)
                .expect("fits");
        }
        assert!(
            k.ringbuf_write(rb.as_fd(), &[1; 20], FakeRecord::Committed)
                .is_err()
        );
        assert_eq!(reader.drain().len(), 128);

        // A busy record holds back itself and everything after it.
        let busy = k
            .ringbuf_write(rb.as_fd(), b"first", FakeRecord::Busy)
            .expect("write");
        k.ringbuf_write(rb.as_fd(), b"second", FakeRecord::Committed)
            .expect("write");
        assert_eq!(reader.next(), None);
        assert!(reader.wait(std::time::Duration::ZERO).expect("wait"));
        assert_eq!(reader.next(), None);
        k.ringbuf_commit(rb.as_fd(), busy).expect("commit");
        assert_eq!(reader.next(), Some(b"first".to_vec()));
        assert_eq!(reader.next(), Some(b"second".to_vec()));
        assert_eq!(reader.next(), None);
    }

    #[test]
    fn prog_array_holds_programs_and_refuses_noexist() {
        let k = fake();
        let pa = Map::create_with(k.clone(), &MapSpec::prog_array("slots", 4)).expect("create");
        let p =
            Program::load_with(k, &encode(&[Insn::Exit]), &LoadOptions::xdp("p")).expect("load");
        pa.set_prog(1, &p).expect("set");
        assert_eq!(pa.prog_id_at(1).expect("slot"), Some(p.id().expect("id")));
        assert_eq!(pa.prog_id_at(0).expect("slot"), None);
        assert!(pa.clear_prog(1).expect("clear"));
        assert_eq!(pa.prog_id_at(1).expect("slot"), None);
        assert!(!pa.clear_prog(1).expect("clear again"));
        assert!(matches!(
            pa.lookup(&[0; 4]),
            Err(MapError::WrongType { .. })
        ));
    }
}
