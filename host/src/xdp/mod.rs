//! Generic XDP programs written in Rust: the seed's "EBPFCat can be used as a speed boost
//! for normal Rust programs", for any packet processing, not only EtherCAT.
//!
//! A program is a Rust type implementing [`XdpProgram`]: [`declare`](XdpProgram::declare)
//! creates its variables and maps (typed handles, see [`Global`], [`PerCpuArray`],
//! [`HashMap`]), and [`program`](XdpProgram::program) generates its eBPF with the builder
//! or the `ebpf!` DSL; [`xdp_program!`] writes the type and the implementation from a
//! list of fields. [`Xdp`] creates the maps, generates and links the code (as a
//! standalone program, `ferrocat::link::link_standalone`) and loads it; the same handles
//! then read and write the values from Rust, no unsafe code needed:
//!
//! ```no_run
//! use ferrocat::xdp::{XDP_PASS, Xdp, xdp_program};
//! use ferrocat_plugin_api::ebpf;
//!
//! xdp_program! {
//!     /// Counts packets.
//!     pub struct Counter {
//!         /// Packets seen.
//!         pub count: global(u64),
//!     }
//!     fn program(&self, b) {
//!         ebpf! { b => count += 1; b.exit(XDP_PASS); }
//!     }
//! }
//!
//! # fn main() -> Result<(), ferrocat::xdp::Error> {
//! let c = Xdp::<Counter>::new()?;
//! let _running = c.run("eth0")?; // detached when dropped
//! println!("number of packets: {}", c.count.get()?);
//! # Ok(())
//! # }
//! ```
//!
//! The same program by hand:
//!
//! ```
//! use ferrocat::xdp::{Builder, Declare, Global, XDP_PASS, XdpProgram};
//!
//! #[derive(Debug)]
//! pub struct Counter {
//!     pub count: Global<u64>,
//! }
//!
//! impl XdpProgram for Counter {
//!     const NAME: &'static str = "Counter";
//!     fn declare(d: &mut Declare) -> Self {
//!         Counter { count: d.global("count") }
//!     }
//!     fn program(&self, b: &Builder) {
//!         self.count.var(b).add_assign(1u32);
//!         b.exit(XDP_PASS);
//!     }
//! }
//! ```
//!
//! Running: [`Xdp::run`] attaches for a scope (detached on drop, also on error or panic);
//! [`Xdp::attach`] + [`Xdp::pin_maps`] leave the program running after the process
//! exits, and [`Xdp::load_maps`] + [`Xdp::detach`] pick it up later in another process
//! (or `ferrocat xdp detach IFACE`).
//!
//! Map access in the program (`PerCpuArray::at`, `HashMap::entry`/`add`) loads the map by
//! descriptor (`BPF_PSEUDO_MAP_FD`); the linker accepts such loads of exactly the maps the
//! program declared (`StandaloneLink::map_fds`, see [`link_program`]).

mod error;
mod pins;
mod vars;

use std::ops::Deref;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

pub use ferrocat_plugin_api::ebpf::builder::{Builder, MapRef, Var};

pub use error::Error;
pub use pins::unpin_dir;
pub use vars::{Global, HashMap, PerCpuArray, Value};
use vars::{Globals, MapSlot};

use crate::bpf::bpffs::{self, Bpffs, DEFAULT_BPFFS};
use crate::bpf::map::{BPF_F_NO_PREALLOC, Map, MapSpec, MapType};
use crate::bpf::prog::{LoadOptions, Program};
use crate::bpf::xdp::{self as kxdp, XdpLink};
use crate::link::{LinkedProgram, StandaloneLink, VariableBlock, link_standalone};
use ferrocat_plugin_api::fragment::{Fragment, ScalarType};

pub use crate::bpf::xdp::XdpMode;
pub use crate::link::{XDP_DROP, XDP_PASS, XDP_TX};

/// `XDP_ABORTED` (`enum xdp_action`, include/uapi/linux/bpf.h): drop, with a trace event.
pub const XDP_ABORTED: i32 = 0;
/// `XDP_REDIRECT` (`enum xdp_action`).
pub const XDP_REDIRECT: i32 = 4;

/// Name of the pin of the globals map (the map itself is named after its program).
pub const GLOBALS_MAP: &str = "globals";
/// Name of the pinned XDP link inside a pin directory.
pub const LINK_PIN: &str = "link";

/// Declares a generic XDP program in one place: the struct with its handles, its
/// [`XdpProgram`] implementation (each handle declared under its field's name, the
/// program named after the struct) and its `program` method. The fields say what they
/// are as [`Declare`]'s methods do: `global(T)`, `per_cpu_array(T, ENTRIES)`,
/// `hash_map(K, V, MAX_ENTRIES)`. In `program`, `b` is the `&Builder` and every global
/// is in scope under its field's name as the program's variable (`count` is
/// `self.count.var(b)`); maps are used through their handles (`self.counts.add(..)`).
///
/// ```no_run
/// use ferrocat::xdp::{XDP_PASS, Xdp, xdp_program};
/// use ferrocat_plugin_api::ebpf;
///
/// xdp_program! {
///     /// Counts packets.
///     pub struct Counter {
///         /// Packets seen.
///         pub count: global(u64),
///     }
///     fn program(&self, b) {
///         ebpf! { b => count += 1; b.exit(XDP_PASS); }
///     }
/// }
///
/// # fn main() -> Result<(), ferrocat::xdp::Error> {
/// let c = Xdp::<Counter>::new()?;
/// let _running = c.run("eth0")?;
/// println!("number of packets: {}", c.count.get()?);
/// # Ok(())
/// # }
/// ```
///
/// It expands to a plain `#[derive(Debug)]` struct (`count: Global<u64>`) and
/// `impl XdpProgram`; write those by hand for anything it does not cover.
#[macro_export]
macro_rules! xdp_program {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $fvis:vis $field:ident : $kind:ident ( $($arg:tt)* )
            ),* $(,)?
        }
        fn program(&$self:ident, $b:ident) $body:block
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis struct $name {
            $(
                $(#[$fmeta])*
                $fvis $field: $crate::__xdp_field!(type $kind($($arg)*)),
            )*
        }

        impl $crate::xdp::XdpProgram for $name {
            const NAME: &'static str = stringify!($name);

            fn declare(d: &mut $crate::xdp::Declare) -> Self {
                $name {
                    $( $field: $crate::__xdp_field!(declare d, $field, $kind($($arg)*)), )*
                }
            }

            fn program(&$self, $b: &$crate::xdp::Builder) {
                $( $crate::__xdp_field!(bind $self, $b, $field, $kind($($arg)*)); )*
                $body
            }
        }
    };
}

/// The type and the declaration of one field of [`xdp_program!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __xdp_field {
    (type global($t:ty)) => { $crate::xdp::Global<$t> };
    (type per_cpu_array($t:ty, $n:expr)) => { $crate::xdp::PerCpuArray<$t> };
    (type hash_map($k:ty, $v:ty, $n:expr)) => { $crate::xdp::HashMap<$k, $v> };
    (type $other:ident($($arg:tt)*)) => {
        ::core::compile_error!(concat!(
            "xdp_program!: unknown field kind `", stringify!($other),
            "`; the kinds are global(T), per_cpu_array(T, ENTRIES), hash_map(K, V, MAX_ENTRIES)"
        ))
    };
    (declare $d:ident, $f:ident, global($t:ty)) => { $d.global(stringify!($f)) };
    (declare $d:ident, $f:ident, per_cpu_array($t:ty, $n:expr)) => {
        $d.per_cpu_array(stringify!($f), $n)
    };
    (declare $d:ident, $f:ident, hash_map($k:ty, $v:ty, $n:expr)) => {
        $d.hash_map(stringify!($f), $n)
    };
    // Never compiled: the field's type already stopped the build with the message above.
    (declare $d:ident, $f:ident, $other:ident($($arg:tt)*)) => { ::core::unreachable!() };
    (bind $s:ident, $b:ident, $f:ident, global($t:ty)) => {
        #[allow(unused_variables)]
        let $f = $s.$f.var($b);
    };
    (bind $s:ident, $b:ident, $f:ident, $other:ident($($arg:tt)*)) => {};
}

pub use crate::xdp_program;

/// A generic XDP program: its variables and maps, and the code that uses them.
pub trait XdpProgram: Sized {
    /// The program's name (the kernel keeps 15 characters of `[A-Za-z0-9_]`; others
    /// become `_`).
    const NAME: &'static str;

    /// Declares the program's variables and maps, returning the program with its
    /// handles. Runs once per [`Xdp`], before the maps exist.
    fn declare(d: &mut Declare) -> Self;

    /// Generates the program's code. The program ends with `b.exit(verdict)`; falling
    /// off the end, or a packet shorter than the fixed packet fields it reads, passes
    /// the packet (`XDP_PASS`).
    fn program(&self, b: &Builder);
}

/// Where a program declares its variables and maps (see [`XdpProgram::declare`]).
///
/// Names are checked here and a mistake is reported by [`Xdp::new`] (or
/// [`Xdp::load_maps`]) as [`Error::Declare`], before any map exists: a name used twice,
/// an empty one, or a map name that cannot be a pin (a `/`, `.` or `..`, or the
/// reserved [`GLOBALS_MAP`] and [`LINK_PIN`]).
#[derive(Debug, Default)]
pub struct Declare {
    globals: Arc<Globals>,
    /// The globals' names and types, in declaration order.
    vars: Vec<(String, ScalarType)>,
    maps: Vec<Arc<MapSlot>>,
    /// Where each global and map was declared (for the messages below).
    at: Vec<(String, &'static Location<'static>)>,
    /// Mistakes found, each a sentence naming the declaration.
    problems: Vec<String>,
}

/// The kernel's map names: at most 15 bytes of `[A-Za-z0-9_.]`.
fn kernel_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(15)
        .collect()
}

/// The kernel's program names: at most 15 bytes of `[A-Za-z0-9_]`.
fn prog_name(name: &str) -> String {
    kernel_name(name).replace('.', "_")
}

impl Declare {
    /// A global variable `name` of type `T` (initially 0).
    #[track_caller]
    pub fn global<T: Value>(&mut self, name: &str) -> Global<T> {
        self.check("global", name, false, Location::caller());
        self.vars.push((name.to_string(), T::TYPE));
        Global::new(name, Arc::clone(&self.globals))
    }

    /// Records what is wrong with the name of a global or (`is_map`) map declared `at`.
    fn check(&mut self, kind: &str, name: &str, is_map: bool, at: &'static Location<'static>) {
        let earlier = self.at.iter().find(|(n, _)| n == name).map(|(_, a)| *a);
        let problem = if name.is_empty() {
            Some("has an empty name".to_string())
        } else if let Some(first) = earlier {
            Some(format!("is declared twice (first at {first})"))
        } else if is_map && (name == GLOBALS_MAP || name == LINK_PIN) {
            Some(format!(
                "takes a reserved pin name (`{GLOBALS_MAP}` and `{LINK_PIN}` are)"
            ))
        } else if is_map && (name.contains(['/', '\0']) || name == "." || name == "..") {
            Some("cannot be a pin name (no `/`, `.` or `..`)".to_string())
        } else {
            None
        };
        if let Some(p) = problem {
            self.problems.push(format!("{kind} `{name}` at {at} {p}"));
        }
        self.at.push((name.to_string(), at));
    }

    /// The problems found, as the error of program `program`.
    fn finish(&self, program: &str) -> Result<(), Error> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(Error::Declare {
            program: program.to_string(),
            problems: self.problems.join("; "),
        })
    }

    #[track_caller]
    fn map(&mut self, name: &str, spec: MapSpec) -> Arc<MapSlot> {
        self.check("map", name, true, Location::caller());
        let slot = Arc::new(MapSlot {
            name: name.to_string(),
            spec,
            map: OnceLock::new(),
        });
        self.maps.push(Arc::clone(&slot));
        slot
    }

    /// A per-CPU array `name` of `entries` values of type `T`.
    #[track_caller]
    pub fn per_cpu_array<T: Value>(&mut self, name: &str, entries: u32) -> PerCpuArray<T> {
        let spec = MapSpec::percpu_array(&kernel_name(name), T::SIZE as u32, entries);
        PerCpuArray::new(self.map(name, spec))
    }

    /// A hash map `name` from `K` to `V` with room for `max_entries` keys.
    #[track_caller]
    pub fn hash_map<K: Value, V: Value>(&mut self, name: &str, max_entries: u32) -> HashMap<K, V> {
        let mut spec = MapSpec::hash(
            &kernel_name(name),
            K::SIZE as u32,
            V::SIZE as u32,
            max_entries,
        );
        spec.flags |= BPF_F_NO_PREALLOC;
        HashMap::new(self.map(name, spec))
    }
}

/// A generic XDP program `P`, generated, linked and (unless only its pinned maps were
/// opened) loaded; dereferences to `P`, so its handles read the values
/// (`c.count.get()`).
pub struct Xdp<P> {
    program: P,
    decl: Declare,
    linked: LinkedProgram,
    prog: OnceLock<Program>,
    link: Mutex<Option<XdpLink>>,
    mode: XdpMode,
    /// The pin directory: of `load_maps`, or of this instance's `pin_maps`.
    pins: Mutex<Option<Bpffs>>,
}

impl<P> std::fmt::Debug for Xdp<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xdp")
            .field("insns", &self.linked.insns.len())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl<P> Deref for Xdp<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.program
    }
}

/// Where the maps come from.
enum Source<'a> {
    Create,
    Pinned(&'a Bpffs),
}

/// Opens the pin `name` of `fs` as a map of `spec`'s type and sizes.
fn open_pinned(fs: &Bpffs, name: &str, spec: &MapSpec) -> Result<Map, Error> {
    let path = fs.path(name)?;
    let map = fs.open_map(name, spec.map_type)?;
    let got = map.spec();
    let mut what = Vec::new();
    if got.key_size != spec.key_size {
        what.push(format!("{}-byte keys, not {}", got.key_size, spec.key_size));
    }
    if got.value_size != spec.value_size {
        what.push(format!(
            "{}-byte values, not {}",
            got.value_size, spec.value_size
        ));
    }
    // The globals map carries its program's name: globals of another program of the
    // same size would otherwise be read at the wrong places. (A kernel that reports no
    // name cannot tell.)
    if name == GLOBALS_MAP && !got.name.is_empty() && got.name != spec.name {
        what.push(format!(
            "the globals of program `{}`, not of `{}`",
            got.name, spec.name
        ));
    }
    if !what.is_empty() {
        return Err(Error::PinnedLayout {
            path,
            map: name.to_string(),
            what: what.join(" and "),
        });
    }
    Ok(map)
}

/// Builds `P`'s fragment, with every global declared first in declaration order.
fn build<P: XdpProgram>(p: &P, decl: &Declare) -> Result<Fragment, Error> {
    let b = Builder::new(P::NAME);
    for (name, ty) in &decl.vars {
        b.device(name, *ty);
    }
    p.program(&b);
    b.finish().map_err(|source| Error::Build {
        program: P::NAME.to_string(),
        source,
    })
}

/// Links a standalone program whose fragment may load the maps `map_fds` by descriptor
/// (its per-CPU and hash maps) and keeps its globals in map `variable_map_fd`.
pub fn link_program(
    fragment: &Fragment,
    variable_map_fd: Option<i32>,
    map_fds: &[i32],
) -> Result<LinkedProgram, crate::link::LinkErrors> {
    let mut link = StandaloneLink::new(fragment.clone());
    link.variable_map_fd = variable_map_fd;
    link.map_fds = map_fds.to_vec();
    link_standalone(&link)
}

impl<P: XdpProgram> Xdp<P> {
    /// Creates the maps, generates, links and loads the program (not attached yet).
    pub fn new() -> Result<Xdp<P>, Error> {
        let x = Xdp::<P>::prepare(Source::Create)?;
        x.kernel_program()?;
        Ok(x)
    }

    /// Opens the maps a program of this type pinned under `dir` (with
    /// [`pin_maps`](Self::pin_maps), possibly in another process): the handles read
    /// and write the running program's values, and [`detach`](Self::detach) stops it.
    /// The program is generated again (to know the layout) but only loaded into the
    /// kernel if this instance is attached or run. Each pin must be a map of the
    /// declared type and sizes, and the globals those of a program of this name
    /// ([`Error::PinnedLayout`] otherwise).
    pub fn load_maps(dir: impl AsRef<Path>) -> Result<Xdp<P>, Error> {
        let fs = Bpffs::at(dir.as_ref())?;
        let x = Xdp::<P>::prepare(Source::Pinned(&fs))?;
        *x.pin_dir() = Some(fs);
        Ok(x)
    }

    fn prepare(source: Source<'_>) -> Result<Xdp<P>, Error> {
        let mut decl = Declare::default();
        let program = P::declare(&mut decl);
        decl.finish(P::NAME)?;
        for slot in &decl.maps {
            let map = match &source {
                Source::Create => Map::create(&slot.spec).map_err(|e| Error::Map {
                    map: slot.name.clone(),
                    source: e,
                })?,
                Source::Pinned(fs) => open_pinned(fs, &slot.name, &slot.spec)?,
            };
            let _ = slot.map.set(map);
        }
        let fragment = build(&program, &decl)?;
        let block = VariableBlock::place([("", &fragment)]).map_err(|e| Error::Link {
            program: P::NAME.to_string(),
            source: crate::link::LinkErrors(e),
        })?;
        let mut globals_fd = None;
        if !block.vars.is_empty() {
            // Named after the program (the pin is `GLOBALS_MAP`), so that `load_maps`
            // can tell the globals of another program.
            let spec = MapSpec::mmapable_array(&kernel_name(P::NAME), block.size, 1);
            let map = match &source {
                Source::Create => Map::create(&spec).map_err(|e| Error::Map {
                    map: GLOBALS_MAP.into(),
                    source: e,
                })?,
                Source::Pinned(fs) => open_pinned(fs, GLOBALS_MAP, &spec)?,
            };
            let mem = map.mmap().map_err(|e| Error::Map {
                map: GLOBALS_MAP.into(),
                source: e,
            })?;
            globals_fd = Some(map.raw_fd());
            let _ = decl.globals.map.set(map);
            let _ = decl.globals.mem.set(mem);
        }
        let map_fds: Vec<i32> = decl
            .maps
            .iter()
            .filter_map(|slot| slot.map.get().map(Map::raw_fd))
            .collect();
        let linked =
            link_program(&fragment, globals_fd, &map_fds).map_err(|source| Error::Link {
                program: P::NAME.to_string(),
                source,
            })?;
        let _ = decl.globals.block.set(linked.variables.clone());
        Ok(Xdp {
            program,
            decl,
            linked,
            prog: OnceLock::new(),
            link: Mutex::new(None),
            mode: XdpMode::Native,
            pins: Mutex::new(None),
        })
    }

    /// The same program attached in `mode` (native, the default, or generic).
    pub fn with_mode(mut self, mode: XdpMode) -> Xdp<P> {
        self.mode = mode;
        self
    }

    /// The loaded program, loading it now if needed.
    pub fn kernel_program(&self) -> Result<&Program, Error> {
        if let Some(p) = self.prog.get() {
            return Ok(p);
        }
        let map = self.linked.bpf_source_map();
        let name = prog_name(P::NAME);
        let opts = LoadOptions::xdp(&name).with_source_map(&map);
        let p = Program::load(&self.linked.insns, &opts)?;
        Ok(self.prog.get_or_init(|| p))
    }

    /// The linked program's instructions.
    pub fn linked(&self) -> &LinkedProgram {
        &self.linked
    }

    /// The disassembly of the program, as `ferrocat disasm` shows it.
    pub fn listing(&self) -> String {
        self.linked.listing()
    }

    fn lock_link(&self) -> std::sync::MutexGuard<'_, Option<XdpLink>> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pin directory (never held while taking `lock_link`: `attach` takes them in
    /// the other order).
    fn pin_dir(&self) -> std::sync::MutexGuard<'_, Option<Bpffs>> {
        self.pins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches the program to `iface` for the lifetime of the returned guard (the
    /// seed's `async with c.run(iface)`): dropping it detaches, also on an early
    /// return or a panic.
    pub fn run(&self, iface: &str) -> Result<Running<'_, P>, Error> {
        let prog = self.kernel_program()?;
        let link = XdpLink::attach(prog, iface, self.mode)?;
        Ok(Running {
            xdp: self,
            link: Some(link),
        })
    }

    /// Attaches the program to `iface` until [`detach`](Self::detach) (one interface per
    /// instance: a second `attach` is [`Error::AttachedAlready`]); unless its link
    /// is pinned, also until this `Xdp` is dropped or the process exits (the kernel
    /// detaches a link when its last descriptor closes). The link is pinned by
    /// [`pin_maps`](Self::pin_maps), or here if this instance already has a pin
    /// directory (of `pin_maps` or [`load_maps`](Self::load_maps)), so that the order of
    /// `attach` and `pin_maps` does not matter; if that pin fails, the program is
    /// detached again and the error returned.
    pub fn attach(&self, iface: &str) -> Result<(), Error> {
        let mut own = self.lock_link();
        if let Some(l) = own.as_ref() {
            return Err(Error::AttachedAlready {
                program: P::NAME.to_string(),
                iface: l.iface().to_string(),
            });
        }
        let prog = self.kernel_program()?;
        let link = XdpLink::attach(prog, iface, self.mode)?;
        if let Some(fs) = self.pin_dir().as_ref()
            && let Err(e) = link.pin(fs, LINK_PIN)
        {
            if let Err(d) = link.detach() {
                tracing::warn!("detaching XDP program after a failed pin: {d}");
            }
            return Err(e.into());
        }
        *own = Some(link);
        Ok(())
    }

    /// Pins the maps (and the link of [`attach`](Self::attach), if attached) in the
    /// new directory `dir`, created on a bpffs (`/sys/fs/bpf/NAME`, mounting bpffs there if
    /// needed, or any directory on a bpffs): they outlive this process. Returns `dir`.
    /// An existing `dir` is refused (`BpffsError::PathExists`), as is a second pin
    /// directory for the same instance ([`Error::PinnedAlready`]); if a pin fails, the
    /// pins made and the directory are removed again.
    pub fn pin_maps(&self, dir: impl AsRef<Path>) -> Result<PathBuf, Error> {
        let dir = dir.as_ref();
        if let Some(fs) = self.pin_dir().as_ref() {
            return Err(Error::PinnedAlready {
                program: P::NAME.to_string(),
                dir: fs.root().to_path_buf(),
            });
        }
        let (parent, name) = match (dir.parent(), dir.file_name().and_then(|n| n.to_str())) {
            (Some(p), Some(n)) => (p, n),
            _ => {
                return Err(Error::Bpffs(bpffs::BpffsError::InvalidName {
                    name: dir.display().to_string(),
                }));
            }
        };
        let fs = if parent == Path::new(DEFAULT_BPFFS) {
            Bpffs::default_mount()?
        } else {
            Bpffs::at(parent)?
        };
        // A directory of its own, so that a failure half-way can remove every pin made.
        let path = fs.path(name)?;
        if path.symlink_metadata().is_ok() {
            return Err(Error::Bpffs(bpffs::BpffsError::PathExists { path }));
        }
        let path = fs.create_dir(name)?;
        let inner = Bpffs::at(&path)?;
        let mut made = Vec::new();
        if let Err(e) = self.pin_all(&inner, &mut made) {
            for name in made {
                let _ = inner.unpin(name);
            }
            let _ = remove_pin_dir(&path);
            return Err(e);
        }
        *self.pin_dir() = Some(inner);
        Ok(path)
    }

    /// Pins the globals, the maps and the link (if attached) in `fs`, adding the name
    /// of each pin made to `made`.
    fn pin_all<'s>(&'s self, fs: &Bpffs, made: &mut Vec<&'s str>) -> Result<(), Error> {
        if let Some(map) = self.decl.globals.map.get() {
            fs.pin(map, GLOBALS_MAP)?;
            made.push(GLOBALS_MAP);
        }
        for slot in &self.decl.maps {
            fs.pin(slot.get()?, &slot.name)?;
            made.push(&slot.name);
        }
        if let Some(link) = self.lock_link().as_ref() {
            link.pin(fs, LINK_PIN)?;
            made.push(LINK_PIN);
        }
        Ok(())
    }

    /// Removes the pins `pin_all` makes from `fs`, those that exist.
    fn unpin_all(&self, fs: &Bpffs) -> Result<(), Error> {
        fs.unpin(LINK_PIN)?;
        fs.unpin(GLOBALS_MAP)?;
        for slot in &self.decl.maps {
            fs.unpin(&slot.name)?;
        }
        Ok(())
    }

    /// Detaches the program from `iface`: the link this instance attached there, else the
    /// link pinned next to the maps of [`load_maps`](Self::load_maps) if it attaches the
    /// program to `iface` (to another interface: [`Error::AttachedElsewhere`], and
    /// nothing is detached), else the XDP link on `iface` if its program has this
    /// program's name (never another program: that is [`Error::OtherProgram`];
    /// `ferrocat xdp detach IFACE` detaches whatever runs). The detached link's pins are
    /// removed, so that nothing keeps the program loaded; a pinned link that was
    /// detached already (e.g. its interface went away) is unpinned on the way. The map
    /// pins stay ([`unpin_maps`](Self::unpin_maps) removes them).
    pub fn detach(&self, iface: &str) -> Result<(), Error> {
        let mut own = self.lock_link();
        if own.as_ref().is_some_and(|l| l.iface() == iface)
            && let Some(link) = own.take()
        {
            drop(own);
            link.detach()?;
            if let Some(fs) = self.pin_dir().as_ref() {
                fs.unpin(LINK_PIN)?;
            }
            return Ok(());
        }
        drop(own);
        if let Some(fs) = self.pin_dir().as_ref()
            && fs.path(LINK_PIN)?.exists()
            && self.detach_pinned(fs, iface)?
        {
            return Ok(());
        }
        let not_attached = || Error::NotAttached {
            program: P::NAME.to_string(),
            iface: iface.to_string(),
        };
        let Some(id) = kxdp::attached_program(iface)? else {
            return Err(not_attached());
        };
        let running = Program::from_id(id)
            .and_then(|p| p.info())
            .map_err(|source| kxdp::XdpError::Sys {
                what: "read the name of the attached program",
                iface: iface.to_string(),
                source,
            })?
            .name;
        if running != prog_name(P::NAME) {
            return Err(Error::OtherProgram {
                program: P::NAME.to_string(),
                iface: iface.to_string(),
                running,
            });
        }
        match detach(iface)? {
            Some(_) => Ok(()),
            None => Err(not_attached()),
        }
    }

    /// Detaches the link pinned as [`LINK_PIN`] in `fs` if it attaches the program to
    /// `iface`, and removes the pin; returns whether it did. A link detached already is
    /// only unpinned (`false`: the caller looks further).
    fn detach_pinned(&self, fs: &Bpffs, iface: &str) -> Result<bool, Error> {
        let path = fs.path(LINK_PIN)?;
        let link = XdpLink::open_pinned(&path)?;
        let info = link.info()?;
        if info.ifindex == 0 {
            drop(link);
            fs.unpin(LINK_PIN)?;
            return Ok(false);
        }
        // Interface indexes are per network namespace: the link is on `iface` if it has
        // its index and the program rtnetlink reports there is the link's.
        let index = kxdp::ifindex(iface)?;
        if info.ifindex != index || kxdp::attached_program(iface)? != Some(info.prog_id) {
            let attached = if info.ifindex == index {
                format!("ifindex {index} of another network namespace")
            } else {
                link.iface().to_string()
            };
            return Err(Error::AttachedElsewhere {
                program: P::NAME.to_string(),
                iface: iface.to_string(),
                attached,
                link: path,
            });
        }
        link.detach()?;
        fs.unpin(LINK_PIN)?;
        Ok(true)
    }

    /// Removes the pins of [`load_maps`](Self::load_maps)'s (or
    /// [`pin_maps`](Self::pin_maps)'s) directory, maps and link, and the directory
    /// itself; the instance may then pin again. The maps live on while a program uses
    /// them.
    pub fn unpin_maps(&self) -> Result<(), Error> {
        let mut dir = self.pin_dir();
        let Some(fs) = dir.as_ref() else {
            return Ok(());
        };
        self.unpin_all(fs)?;
        remove_pin_dir(fs.root())?;
        *dir = None;
        Ok(())
    }
}

/// Removes an empty pin directory.
fn remove_pin_dir(dir: &Path) -> Result<(), Error> {
    std::fs::remove_dir(dir).map_err(|e| {
        Error::Bpffs(bpffs::BpffsError::Sys {
            path: dir.to_path_buf(),
            source: crate::bpf::sys::SysError {
                cmd: crate::bpf::sys::Cmd::ObjPin,
                source: e,
            },
        })
    })
}

/// A program attached for a scope ([`Xdp::run`]); detaches on drop. Dereferences to the
/// program, so its handles read the values.
pub struct Running<'a, P> {
    xdp: &'a Xdp<P>,
    link: Option<XdpLink>,
}

impl<P> std::fmt::Debug for Running<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("link", &self.link).finish()
    }
}

impl<P> Running<'_, P> {
    /// The interface the program runs on.
    pub fn iface(&self) -> &str {
        self.link.as_ref().map_or("", |l| l.iface())
    }

    /// Detaches now, reporting errors (dropping detaches too, ignoring them).
    pub fn stop(mut self) -> Result<(), Error> {
        match self.link.take() {
            Some(l) => Ok(l.detach()?),
            None => Ok(()),
        }
    }
}

impl<P> Deref for Running<'_, P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.xdp.program
    }
}

impl<P> Drop for Running<'_, P> {
    fn drop(&mut self) {
        if let Some(l) = self.link.take()
            && let Err(e) = l.detach()
        {
            tracing::warn!("detaching XDP program: {e}");
        }
    }
}

/// What [`detach`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    /// The id of the program that was attached.
    pub prog_id: u32,
    /// The id of its XDP link.
    pub link_id: u32,
    /// The pins of the link that were removed.
    pub unpinned: Vec<PathBuf>,
    /// The directories of those pins that still hold other pins (e.g. the maps of
    /// [`Xdp::pin_maps`]) and that [`unpin_dir`] takes: kept, for it to remove. Sorted.
    pub kept: Vec<PathBuf>,
    /// The directories of those pins that still hold other pins but that [`unpin_dir`]
    /// refuses (a bpffs mount itself, or a directory holding directories), each with the
    /// reason: their pins are kept, to be removed one by one. Sorted.
    pub kept_elsewhere: Vec<(PathBuf, String)>,
}

/// Detaches whatever XDP link runs on `iface` (as `ferrocat xdp detach IFACE` does) and
/// removes every pin of that link on the mounted bpf filesystems: a detached link that
/// stays pinned keeps its program loaded in the kernel. Pins of maps are kept. Returns
/// `None` if no program is attached to `iface` through a link. If the program was
/// detached but a pin of its link could not be removed, the error is
/// [`Error::PinsLeft`], which says so and why.
pub fn detach(iface: &str) -> Result<Option<Detached>, Error> {
    let Some(link) = kxdp::find_link(iface)? else {
        return Ok(None);
    };
    let info = link.info()?;
    link.detach()?;
    let pins_left =
        |unpinned: Vec<PathBuf>, left: Vec<PathBuf>, source: Box<Error>| Error::PinsLeft {
            iface: iface.to_string(),
            prog_id: info.prog_id,
            link_id: info.id,
            unpinned,
            left,
            source,
        };
    let found =
        pins::link_pins(info.id).map_err(|e| pins_left(Vec::new(), Vec::new(), Box::new(e)))?;
    let unpinned = pins::unpin_paths(&found).map_err(|f| pins_left(f.removed, f.left, f.error))?;
    let dirs: std::collections::BTreeSet<PathBuf> = unpinned
        .iter()
        .filter_map(|p| p.parent())
        .filter(|d| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some()))
        .map(Path::to_path_buf)
        .collect();
    let mut kept = Vec::new();
    let mut kept_elsewhere = Vec::new();
    for dir in dirs {
        match pins::pin_dir_names(&dir) {
            Ok(_) => kept.push(dir),
            Err(Error::NotPinDir { why, .. }) => kept_elsewhere.push((dir, why)),
            Err(e) => kept_elsewhere.push((dir, e.to_string())),
        }
    }
    Ok(Some(Detached {
        prog_id: info.prog_id,
        link_id: info.id,
        unpinned,
        kept,
        kept_elsewhere,
    }))
}

/// Opens the pinned map `name` in `dir` as a map of `map_type` (for tools that do not
/// know the program type).
pub fn open_pinned_map(dir: &Path, name: &str, map_type: MapType) -> Result<Map, Error> {
    Ok(bpffs::open_map_path(&dir.join(name), map_type)?)
}

/// The program `P` would generate, linked with its globals in map descriptor
/// `globals_fd` (and map loads naming descriptor -1, since no map is created): its
/// disassembly, each part introduced by a `; name` line. Needs no kernel; used to show
/// and test what a program compiles to.
pub fn listing<P: XdpProgram>(globals_fd: i32) -> Result<String, Error> {
    let mut decl = Declare::default();
    let program = P::declare(&mut decl);
    decl.finish(P::NAME)?;
    let fragment = build(&program, &decl)?;
    let has_globals = fragment
        .vars
        .iter()
        .any(|v| matches!(v.kind, ferrocat_plugin_api::fragment::VarKind::Device));
    // No map is created here: map loads name descriptor -1.
    let linked =
        link_program(&fragment, has_globals.then_some(globals_fd), &[-1]).map_err(|source| {
            Error::Link {
                program: P::NAME.to_string(),
                source,
            }
        })?;
    Ok(linked.listing())
}

#[cfg(test)]
mod tests;
