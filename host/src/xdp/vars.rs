//! The variables of a generic XDP program, typed on both sides: each handle gives the
//! program's builder a variable (or map access) and gives the host the same value as a
//! Rust value.
//!
//! - [`Global`]: a scalar in the program's globals block, an mmapable one-entry ARRAY
//!   map; the host reads and writes it in mapped memory (atomically, no syscall).
//! - [`PerCpuArray`]: a PERCPU_ARRAY; the program changes its own CPU's copy without
//!   atomics, the host reads the copies per CPU or summed.
//! - [`HashMap`]: a HASH map (a dictionary); the program counts or updates per key, the
//!   host gets, inserts, removes and iterates.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use ferrocat_plugin_api::ebpf::builder::{Builder, IntoExpr, MapRef, Var};
use ferrocat_plugin_api::fragment::ScalarType;

use super::error::Error;
use crate::bpf::map::{Map, MapMemory, MapSpec, Scalar, UpdateMode};
use crate::link::VariableBlock;

/// A scalar type usable as a variable, map key or map value: `u8`..`u64`, `i8`..`i64`.
pub trait Value: Scalar + fmt::Debug + Ord + Send + Sync + 'static {
    /// The builder's type of it.
    const TYPE: ScalarType;
    /// Its bytes as the kernel stores it (little endian).
    fn to_le(self) -> Vec<u8>;
    /// The value from the kernel's bytes (`bytes.len()` is its size).
    fn from_le(bytes: &[u8]) -> Self;
    /// `self + other`, wrapping (sums of per-CPU counters).
    fn wrapping_sum(self, other: Self) -> Self;
    /// Zero.
    const ZERO: Self;
}

macro_rules! value {
    ($($t:ty => $s:ident),*) => {$(
        impl Value for $t {
            const TYPE: ScalarType = ScalarType::$s;
            const ZERO: Self = 0;
            fn to_le(self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }
            fn from_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                let n = b.len().min(bytes.len());
                b[..n].copy_from_slice(&bytes[..n]);
                <$t>::from_le_bytes(b)
            }
            fn wrapping_sum(self, other: Self) -> Self {
                self.wrapping_add(other)
            }
        }
    )*};
}

value!(u8 => U8, u16 => U16, u32 => U32, u64 => U64, i8 => I8, i16 => I16, i32 => I32, i64 => I64);

/// A map of the program and, once created or opened, the kernel's map.
#[derive(Debug)]
pub(crate) struct MapSlot {
    /// The name in the program (and of its pin).
    pub name: String,
    /// What to create.
    pub spec: MapSpec,
    /// The map.
    pub map: OnceLock<Map>,
}

impl MapSlot {
    pub(crate) fn get(&self) -> Result<&Map, Error> {
        self.map.get().ok_or_else(|| Error::NotLoaded {
            map: self.name.clone(),
        })
    }

    fn map_ref(&self, key: ScalarType, value: ScalarType) -> MapRef {
        // Before creation the descriptor is unknown; programs are only built after
        // their maps exist (`Xdp::new`, `Xdp::load_maps`), so -1 never reaches a load.
        let fd = self.map.get().map_or(-1, Map::raw_fd);
        MapRef { fd, key, value }
    }

    fn err(&self, source: crate::bpf::map::MapError) -> Error {
        Error::Map {
            map: self.name.clone(),
            source,
        }
    }
}

/// The program's globals once loaded: the map, its mapped memory and where the linker
/// placed each (their names and types are in `Declare`).
#[derive(Debug, Default)]
pub(crate) struct Globals {
    pub map: OnceLock<Map>,
    pub mem: OnceLock<MapMemory>,
    pub block: OnceLock<VariableBlock>,
}

/// A global variable of the program (the seed's `userspace.globalVar()`): a `T` in the
/// globals block, visible from eBPF as a variable and from Rust with
/// [`get`](Self::get) / [`set`](Self::set).
pub struct Global<T> {
    name: String,
    globals: Arc<Globals>,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Global<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Global({})", self.name)
    }
}

impl<T: Value> Global<T> {
    pub(crate) fn new(name: &str, globals: Arc<Globals>) -> Global<T> {
        Global {
            name: name.to_string(),
            globals,
            _t: PhantomData,
        }
    }

    /// The variable in the program being built.
    #[track_caller]
    pub fn var<'b>(&self, b: &'b Builder) -> Var<'b> {
        b.device(&self.name, T::TYPE)
    }

    fn place(&self) -> Result<(&MapMemory, usize), Error> {
        let mem = self.globals.mem.get().ok_or_else(|| Error::NotLoaded {
            map: "globals".into(),
        })?;
        let off = self
            .globals
            .block
            .get()
            .and_then(|b| b.offset("", &self.name))
            .ok_or_else(|| Error::UnknownGlobal {
                var: self.name.clone(),
            })?;
        Ok((mem, off as usize))
    }

    fn mem_err(&self, source: crate::bpf::map::MemoryError) -> Error {
        Error::Memory {
            var: self.name.clone(),
            source,
        }
    }

    /// The current value (one atomic load from the shared memory).
    pub fn get(&self) -> Result<T, Error> {
        let (mem, off) = self.place()?;
        mem.read(off).map_err(|e| self.mem_err(e))
    }

    /// Sets the value (one atomic store).
    pub fn set(&self, v: T) -> Result<(), Error> {
        let (mem, off) = self.place()?;
        mem.write(off, v).map_err(|e| self.mem_err(e))
    }

    /// Atomically adds `v`, returning the old value.
    pub fn fetch_add(&self, v: T) -> Result<T, Error> {
        let (mem, off) = self.place()?;
        mem.fetch_add(off, v).map_err(|e| self.mem_err(e))
    }
}

/// A PERCPU_ARRAY of `T`: every CPU has its own copy of each entry, so the program
/// updates it without atomics; the host reads all copies.
pub struct PerCpuArray<T> {
    slot: Arc<MapSlot>,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for PerCpuArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PerCpuArray({})", self.slot.name)
    }
}

impl<T: Value> PerCpuArray<T> {
    pub(crate) fn new(slot: Arc<MapSlot>) -> PerCpuArray<T> {
        PerCpuArray {
            slot,
            _t: PhantomData,
        }
    }

    /// The map as the builder addresses it.
    pub fn map_ref(&self) -> MapRef {
        self.slot.map_ref(ScalarType::U32, T::TYPE)
    }

    /// In the program: runs `f` with this CPU's copy of entry `index` (skipped if
    /// `index` is out of range); if `f` assigns the variable, what it leaves there is
    /// stored back (a body that only reads it stores nothing: see
    /// [`Builder::map_lookup`]).
    #[track_caller]
    pub fn at<'b>(
        &self,
        b: &'b Builder,
        index: impl IntoExpr<'b>,
        f: impl FnOnce(&'b Builder, Var<'b>),
    ) {
        b.map_lookup(self.map_ref(), index, f);
    }

    /// The copies of entry `index`, one per possible CPU (none if `index` is beyond
    /// the array).
    pub fn per_cpu(&self, index: u32) -> Result<Vec<T>, Error> {
        let map = self.slot.get()?;
        let values = map
            .lookup_percpu(&index.to_le_bytes())
            .map_err(|e| self.slot.err(e))?;
        Ok(values
            .unwrap_or_default()
            .iter()
            .map(|v| T::from_le(v))
            .collect())
    }

    /// The sum of the copies of entry `index` over all CPUs (wrapping).
    pub fn sum(&self, index: u32) -> Result<T, Error> {
        Ok(self
            .per_cpu(index)?
            .into_iter()
            .fold(T::ZERO, T::wrapping_sum))
    }

    /// Sets every CPU's copy of entry `index` to `v`.
    pub fn set_all(&self, index: u32, v: T) -> Result<(), Error> {
        let map = self.slot.get()?;
        let cpus = map.possible_cpus().map_err(|e| self.slot.err(e))?;
        let values = vec![v.to_le(); cpus];
        map.update_percpu(&index.to_le_bytes(), &values, UpdateMode::Any)
            .map_err(|e| self.slot.err(e))
    }
}

/// A HASH map from `K` to `V` (the seed's dictionaries).
pub struct HashMap<K, V> {
    slot: Arc<MapSlot>,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> fmt::Debug for HashMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashMap({})", self.slot.name)
    }
}

impl<K: Value, V: Value> HashMap<K, V> {
    pub(crate) fn new(slot: Arc<MapSlot>) -> HashMap<K, V> {
        HashMap {
            slot,
            _t: PhantomData,
        }
    }

    /// The map as the builder addresses it.
    pub fn map_ref(&self) -> MapRef {
        self.slot.map_ref(K::TYPE, V::TYPE)
    }

    /// In the program: runs `f` with the value under `key`, if present; if `f` assigns
    /// the variable, what it leaves there is stored back, not atomically (a body that
    /// only reads it stores nothing: see [`Builder::map_lookup`]).
    #[track_caller]
    pub fn lookup<'b>(
        &self,
        b: &'b Builder,
        key: impl IntoExpr<'b>,
        f: impl FnOnce(&'b Builder, Var<'b>),
    ) {
        b.map_lookup(self.map_ref(), key, f);
    }

    /// In the program: like [`lookup`](Self::lookup), inserting 0 first if `key` is
    /// absent.
    #[track_caller]
    pub fn entry<'b>(
        &self,
        b: &'b Builder,
        key: impl IntoExpr<'b>,
        f: impl FnOnce(&'b Builder, Var<'b>),
    ) {
        b.map_entry(self.map_ref(), key, f);
    }

    /// In the program: atomically adds `delta` to the value under `key`, inserting 0
    /// first if absent (a counter per key, exact with several CPUs).
    #[track_caller]
    pub fn add<'b>(&self, b: &'b Builder, key: impl IntoExpr<'b>, delta: impl IntoExpr<'b>) {
        b.map_add(self.map_ref(), key, delta);
    }

    /// The value under `key`.
    pub fn get(&self, key: K) -> Result<Option<V>, Error> {
        let map = self.slot.get()?;
        let v = map.lookup(&key.to_le()).map_err(|e| self.slot.err(e))?;
        Ok(v.map(|v| V::from_le(&v)))
    }

    /// Sets the value under `key` (creating or replacing it).
    pub fn insert(&self, key: K, value: V) -> Result<(), Error> {
        let map = self.slot.get()?;
        map.update(&key.to_le(), &value.to_le(), UpdateMode::Any)
            .map_err(|e| self.slot.err(e))
    }

    /// Removes `key`; whether it was present.
    pub fn remove(&self, key: K) -> Result<bool, Error> {
        let map = self.slot.get()?;
        map.delete(&key.to_le()).map_err(|e| self.slot.err(e))
    }

    /// Every entry, sorted by key (a snapshot: the program may change the map while
    /// it is read).
    pub fn entries(&self) -> Result<Vec<(K, V)>, Error> {
        let map = self.slot.get()?;
        let mut out: Vec<(K, V)> = map
            .entries()
            .map_err(|e| self.slot.err(e))?
            .into_iter()
            .map(|(k, v)| (K::from_le(&k), V::from_le(&v)))
            .collect();
        out.sort_by_key(|(k, _)| *k);
        Ok(out)
    }
}
