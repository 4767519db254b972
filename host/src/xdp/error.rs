//! Errors of generic XDP programs, each saying what went wrong and what to do.

use std::path::PathBuf;

use ferrocat_plugin_api::ebpf::builder::BuildError;

use crate::bpf::bpffs::BpffsError;
use crate::bpf::map::{MapError, MemoryError};
use crate::bpf::prog::LoadError;
use crate::bpf::xdp::XdpError;
use crate::link::LinkErrors;

/// Why a generic XDP program could not be built, loaded, run, pinned or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program's `declare` method declared a name that cannot be used.
    #[error("declaring XDP program `{program}`: {problems}")]
    Declare {
        /// The program.
        program: String,
        /// Each problem, naming the declaration and where it is.
        problems: String,
    },
    /// The program's `program` method generated code the builder refused.
    #[error("building XDP program `{program}`: {source}")]
    Build {
        /// The program.
        program: String,
        /// The builder's error (it names the statement).
        source: BuildError,
    },
    /// The generated code could not be linked.
    #[error("linking XDP program `{program}`: {source}")]
    Link {
        /// The program.
        program: String,
        /// Every problem found.
        source: LinkErrors,
    },
    /// The kernel refused the program: for a verifier rejection the message holds the
    /// verifier's complaint, the disassembly around the failing instruction and the log.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A map could not be created or used.
    #[error("{source}")]
    Map {
        /// The map's name in the program.
        map: String,
        /// The error (creating needs CAP_BPF or CAP_SYS_ADMIN).
        source: MapError,
    },
    /// The host could not access a variable in mapped memory.
    #[error("variable `{var}`: {source}")]
    Memory {
        /// The variable.
        var: String,
        /// The error.
        source: MemoryError,
    },
    /// Attaching or detaching failed (missing interface, permission, busy interface).
    #[error(transparent)]
    Xdp(#[from] XdpError),
    /// Pinning or opening pins failed (bpffs not mounted, path exists, wrong map type).
    #[error(transparent)]
    Bpffs(#[from] BpffsError),
    /// A pinned map does not have the layout this program declares.
    #[error(
        "{}: pinned map `{map}` has {what}; it was pinned by another program (or another \
         version of it): unpin it or choose another directory",
        path.display()
    )]
    PinnedLayout {
        /// The pin.
        path: PathBuf,
        /// The map.
        map: String,
        /// What differs.
        what: String,
    },
    /// A host access to a map the program has not got yet (not loaded).
    #[error("map `{map}` is not loaded; create the program first")]
    NotLoaded {
        /// The map.
        map: String,
    },
    /// The variable is not part of the program's globals.
    #[error("`{var}` is not a global of this program")]
    UnknownGlobal {
        /// The variable.
        var: String,
    },
    /// Another program runs where a detach of this one was asked; it is left alone.
    #[error(
        "{iface} runs program `{running}`, not `{program}`; not detached (`ferrocat xdp \
         detach {iface}` detaches whatever runs there)"
    )]
    OtherProgram {
        /// The program.
        program: String,
        /// The interface.
        iface: String,
        /// The name of the program running there (as the kernel keeps it).
        running: String,
    },
    /// `attach` on an instance that is attached already.
    #[error("program `{program}` is already attached to {iface}; detach it first")]
    AttachedAlready {
        /// The program.
        program: String,
        /// Where it is attached.
        iface: String,
    },
    /// `pin_maps` on an instance whose maps are pinned already (or opened from pins).
    #[error(
        "the maps of program `{program}` are pinned in {} already; unpin_maps first",
        dir.display()
    )]
    PinnedAlready {
        /// The program.
        program: String,
        /// Where they are pinned.
        dir: PathBuf,
    },
    /// The program is not attached where a detach was asked.
    #[error("program `{program}` is not attached to {iface}")]
    NotAttached {
        /// The program.
        program: String,
        /// The interface.
        iface: String,
    },
    /// The pinned link of the program attaches it to another interface than the one a
    /// detach was asked for; it is left alone.
    #[error(
        "program `{program}` is not attached to {iface}: its pinned link {} attaches it \
         to {attached}; not detached",
        link.display()
    )]
    AttachedElsewhere {
        /// The program.
        program: String,
        /// The interface asked for.
        iface: String,
        /// Where the link attaches the program (an interface name, or an index of
        /// another network namespace).
        attached: String,
        /// The link's pin.
        link: PathBuf,
    },
    /// A directory to unpin is not a directory of pins (or is a whole bpffs).
    #[error("{}: not a pin directory: {why}; nothing unpinned", dir.display())]
    NotPinDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// [`detach`](super::detach) detached the program, but pins of its link could not be
    /// removed (or looked for): while pinned, the link keeps the program loaded.
    #[error(
        "{iface}: XDP program id {prog_id} detached (link id {link_id}), but {}: {source}; \
         while pinned, the link keeps the program loaded in the kernel",
        pins_left(left)
    )]
    PinsLeft {
        /// The interface.
        iface: String,
        /// The program detached.
        prog_id: u32,
        /// Its link.
        link_id: u32,
        /// The pins of the link that were removed.
        unpinned: Vec<PathBuf>,
        /// The pins of the link that are left (empty if they could not be looked for).
        left: Vec<PathBuf>,
        /// Why.
        source: Box<Error>,
    },
    /// A file or directory could not be read or removed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The pins [`Error::PinsLeft`] names, in words.
fn pins_left(left: &[PathBuf]) -> String {
    let list = || {
        left.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match left.len() {
        0 => "the link's pins could not be looked for".to_string(),
        1 => format!("the link's pin {} was not removed", list()),
        _ => format!("the link's pins {} were not removed", list()),
    }
}
