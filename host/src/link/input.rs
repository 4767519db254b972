//! What the linker is given: fragments with the device each belongs to, where the
//! process image puts each terminal variable, and how devices link to each other.

use ferrocat_plugin_api::fragment::Fragment;
use std::collections::BTreeMap;

/// `enum xdp_action` (include/uapi/linux/bpf.h): let the frame continue to the stack.
pub const XDP_PASS: i32 = 2;
/// `enum xdp_action`: send the frame back out of the interface it came in on.
pub const XDP_TX: i32 = 3;
/// `enum xdp_action`: drop the frame.
pub const XDP_DROP: i32 = 1;

/// Where a terminal variable lies in the cyclic frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VariableAddress {
    /// Offset of the variable's first byte from the packet base (r9, `xdp_md->data`).
    pub byte_offset: u32,
    /// Position of the variable's lowest bit within its first byte (0..=7).
    pub bit_offset: u8,
    /// Width of the variable in bits, as the terminal driver declares it.
    pub bit_len: u32,
}

impl VariableAddress {
    /// A byte-aligned variable of `bit_len` bits at `byte_offset`.
    pub const fn bytes(byte_offset: u32, bit_len: u32) -> VariableAddress {
        VariableAddress {
            byte_offset,
            bit_offset: 0,
            bit_len,
        }
    }

    /// A bit field of `bit_len` bits starting at bit `bit_offset` of byte `byte_offset`.
    pub const fn bits(byte_offset: u32, bit_offset: u8, bit_len: u32) -> VariableAddress {
        VariableAddress {
            byte_offset,
            bit_offset,
            bit_len,
        }
    }
}

/// The process-image layout of one terminal: where each of its driver's variables lies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TerminalLayout {
    /// The terminal's name, for errors (e.g. `"EL7031 at 1003"`).
    pub name: String,
    /// Variable name (the terminal driver's) → address.
    pub vars: BTreeMap<String, VariableAddress>,
}

impl TerminalLayout {
    /// An empty layout for the terminal `name`.
    pub fn new(name: impl Into<String>) -> TerminalLayout {
        TerminalLayout {
            name: name.into(),
            vars: BTreeMap::new(),
        }
    }

    /// The same layout with variable `name` at `addr`.
    pub fn with(mut self, name: impl Into<String>, addr: VariableAddress) -> TerminalLayout {
        self.vars.insert(name.into(), addr);
        self
    }
}

/// One device of a sync group as the linker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDevice {
    /// The device's name (device variables are placed and reported under it).
    pub name: String,
    /// Its fragment.
    pub fragment: Fragment,
    /// Terminal link name → the terminal connected to it. A link absent here is
    /// unconnected (allowed only for optional links).
    pub terminals: BTreeMap<String, TerminalLayout>,
    /// Device link name → the name of another device of the same group.
    pub device_links: BTreeMap<String, String>,
}

impl GroupDevice {
    /// A device with no links.
    pub fn new(name: impl Into<String>, fragment: Fragment) -> GroupDevice {
        GroupDevice {
            name: name.into(),
            fragment,
            terminals: BTreeMap::new(),
            device_links: BTreeMap::new(),
        }
    }

    /// The same device with terminal link `link` connected to `terminal`.
    pub fn terminal(mut self, link: impl Into<String>, terminal: TerminalLayout) -> GroupDevice {
        self.terminals.insert(link.into(), terminal);
        self
    }

    /// The same device with device link `link` pointing at device `other`.
    pub fn device_link(mut self, link: impl Into<String>, other: impl Into<String>) -> GroupDevice {
        self.device_links.insert(link.into(), other.into());
        self
    }
}

/// Everything needed to link a sync group's program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLink {
    /// The devices, in the order their fragments run.
    pub devices: Vec<GroupDevice>,
    /// File descriptor of the one-entry mmapable ARRAY map holding the variable block
    /// (its value size must be at least [`VariableBlock::size`](super::VariableBlock)).
    pub variable_map_fd: i32,
    /// Verdict of the epilogue when every fragment ran ([`XDP_TX`] for a cyclic frame).
    pub verdict: i32,
}

impl GroupLink {
    /// A group of `devices` whose variable block lives in map `variable_map_fd`, sending
    /// the frame back (`XDP_TX`).
    pub fn new(devices: Vec<GroupDevice>, variable_map_fd: i32) -> GroupLink {
        GroupLink {
            devices,
            variable_map_fd,
            verdict: XDP_TX,
        }
    }
}

/// Everything needed to link a standalone (generic XDP) program: one fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandaloneLink {
    /// The program's fragment; its device variables are the program's globals.
    pub fragment: Fragment,
    /// Terminal links, if the program addresses relocated packet fields (usually none:
    /// generic programs use fixed packet fields).
    pub terminals: BTreeMap<String, TerminalLayout>,
    /// File descriptor of the one-entry mmapable ARRAY map holding the globals; needed
    /// only if the fragment declares device variables.
    pub variable_map_fd: Option<i32>,
    /// Helpers the program may call; `None` allows any (the kernel decides).
    pub allowed_helpers: Option<Vec<i32>>,
    /// Maps the program may load by descriptor (`LD_IMM64` with `BPF_PSEUDO_MAP_FD`, for
    /// `bpf_map_lookup_elem` on its per-CPU and hash maps); a load of any other
    /// descriptor is a link error.
    pub map_fds: Vec<i32>,
}

impl StandaloneLink {
    /// A standalone program of `fragment` with no terminals, no globals map and any
    /// helper allowed.
    pub fn new(fragment: Fragment) -> StandaloneLink {
        StandaloneLink {
            fragment,
            terminals: BTreeMap::new(),
            variable_map_fd: None,
            allowed_helpers: None,
            map_fds: Vec::new(),
        }
    }

    /// The same program with its globals in map `fd`.
    pub fn with_variable_map(mut self, fd: i32) -> StandaloneLink {
        self.variable_map_fd = Some(fd);
        self
    }
}
