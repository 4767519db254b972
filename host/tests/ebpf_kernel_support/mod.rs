//! Test harness for running builder fragments in the kernel through ferrocat's own
//! linker (`ferrocat::link`): a fragment becomes a one-device sync-group program (its
//! foreign variables served by stand-in devices of the same group), or a standalone
//! program if it sets a verdict; the variable block is a one-entry mmapable ARRAY map;
//! runs use `BPF_PROG_TEST_RUN`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use ferrocat::bpf::map::{Map, MapSpec, UpdateMode};
use ferrocat::bpf::prog::{LoadOptions, Program, TestRun};
use ferrocat::link::{
    GroupDevice, GroupLink, LinkedProgram, StandaloneLink, TerminalLayout, VariableAddress,
    VariableBlock, link_group, link_standalone, standalone_variable_block, variable_block,
};
use ferrocat_plugin_api::fragment::{Fragment, VarDecl, VarKind};

/// `XDP_PASS`, the verdict when the frame is too short.
pub const XDP_PASS: i32 = 2;
/// `XDP_TX`, the verdict of a sync-group program.
pub const XDP_TX: i32 = 3;

/// Name of the device the fragment under test belongs to in its group.
const DEVICE: &str = "dut";

/// Where a terminal variable sits in the test packet.
#[derive(Clone, Copy, Debug)]
pub struct TermAt {
    /// Byte offset from the packet start.
    pub byte: u32,
    /// Bit position in that byte (bit fields).
    pub bit: u8,
}

/// A loaded fragment with its variable block.
#[derive(Debug)]
pub struct Loaded {
    /// The program.
    pub prog: Program,
    map: Map,
    block: VariableBlock,
    /// The device the fragment's own variables belong to in `block`.
    device: &'static str,
    /// Instructions of the linked program.
    pub insns: usize,
}

/// Links `frag` with ferrocat's linker and loads it: terminal variables at `terms` (by
/// `"link.name"`), optional links in `connected` connected, the others left unconnected
/// (the linker removes their regions). Foreign variables (`"link.name"`) live in a
/// stand-in device named after the link. A fragment that sets a verdict is linked as a
/// standalone program (the ABI refuses it in a group; it may then have no foreign
/// variables).
pub fn load(frag: &Fragment, terms: &[(&str, TermAt)], connected: &[&str]) -> Loaded {
    let mut layouts: BTreeMap<String, TerminalLayout> = BTreeMap::new();
    let mut foreign: BTreeMap<String, Vec<VarDecl>> = BTreeMap::new();
    for v in &frag.vars {
        match &v.kind {
            VarKind::Terminal { link, optional } => {
                if *optional && !connected.contains(&link.as_str()) {
                    continue;
                }
                let key = format!("{link}.{}", v.name);
                let Some((_, at)) = terms.iter().find(|(k, _)| *k == key) else {
                    continue;
                };
                let addr = VariableAddress {
                    byte_offset: at.byte,
                    bit_offset: at.bit,
                    bit_len: v.ty.scalar.packet_bits(),
                };
                let layout = layouts
                    .remove(link)
                    .unwrap_or_else(|| TerminalLayout::new(link.clone()));
                layouts.insert(link.clone(), layout.with(v.name.clone(), addr));
            }
            VarKind::Foreign { link } => foreign.entry(link.clone()).or_default().push(VarDecl {
                kind: VarKind::Device,
                name: v.name.clone(),
                ty: v.ty,
            }),
            VarKind::Device => {}
        }
    }

    let (linked, map, device): (LinkedProgram, Map, &'static str) = if frag.sets_verdict {
        assert!(
            foreign.is_empty(),
            "fragment `{}`: a standalone program has no foreign variables",
            frag.name
        );
        let block = standalone_variable_block(frag).unwrap_or_else(|e| panic!("{e:?}"));
        let map = block_map(&block);
        let mut link = StandaloneLink::new(frag.clone()).with_variable_map(map.raw_fd());
        link.terminals = layouts;
        let linked = link_standalone(&link)
            .unwrap_or_else(|e| panic!("fragment `{}` does not link: {e:?}", frag.name));
        (linked, map, "")
    } else {
        let mut dut = GroupDevice::new(DEVICE, frag.clone());
        for (name, layout) in layouts {
            dut = dut.terminal(name, layout);
        }
        let mut devices = Vec::new();
        for (link, vars) in foreign {
            dut = dut.device_link(link.clone(), link.clone());
            devices.push(GroupDevice::new(link.clone(), stand_in(&link, vars)));
        }
        devices.insert(0, dut);
        let block = variable_block(&devices).unwrap_or_else(|e| panic!("{e:?}"));
        let map = block_map(&block);
        let linked = link_group(&GroupLink::new(devices, map.raw_fd()))
            .unwrap_or_else(|e| panic!("fragment `{}` does not link: {e:?}", frag.name));
        (linked, map, DEVICE)
    };
    let source_map = linked.bpf_source_map();
    let options = LoadOptions::xdp(&frag.name).with_source_map(&source_map);
    let prog = Program::load(&linked.insns, &options)
        .unwrap_or_else(|e| panic!("fragment `{}` rejected: {e}", frag.name));
    let l = Loaded {
        prog,
        map,
        block: linked.variables.clone(),
        device,
        insns: linked.insns.len(),
    };
    l.write_block(&vec![0; l.block_size() as usize]);
    l
}

/// The variable block's map (at least 8 bytes: a map value may not be empty).
fn block_map(block: &VariableBlock) -> Map {
    Map::create(&MapSpec::mmapable_array("fc_test", block.size.max(8), 1))
        .expect("create the variable block map (needs root and bpf(2))")
}

/// A device with no code that declares `vars`, so a fragment's foreign variables
/// resolve to it.
fn stand_in(name: &str, vars: Vec<VarDecl>) -> Fragment {
    Fragment {
        name: name.into(),
        uses_cycle_time: false,
        sets_verdict: false,
        frame_size: 0,
        fixed_packet_len: 0,
        vars,
        insns: Vec::new(),
        relocs: Vec::new(),
    }
}

impl Loaded {
    /// Runs the program once on `packet`.
    pub fn run(&self, packet: &[u8]) -> TestRun {
        self.prog.test_run(packet).expect("BPF_PROG_TEST_RUN")
    }

    /// The whole variable block.
    pub fn block(&self) -> Vec<u8> {
        self.map
            .lookup(&0u32.to_le_bytes())
            .expect("lookup")
            .expect("entry 0 exists")
    }

    /// Replaces the whole variable block.
    pub fn write_block(&self, v: &[u8]) {
        self.map
            .update(&0u32.to_le_bytes(), v, UpdateMode::Any)
            .expect("update");
    }

    /// Offset of device variable `name` (`"link.name"` for foreign ones).
    pub fn off(&self, name: &str) -> usize {
        let (device, var) = match name.split_once('.') {
            Some((link, var)) => (link, var),
            None => (self.device, name),
        };
        self.block
            .offset(device, var)
            .unwrap_or_else(|| panic!("no device variable {name}")) as usize
    }

    /// Sets device variable `name` to the low bytes of `v`.
    pub fn set(&self, name: &str, v: i64, bytes: usize) {
        let mut b = self.block();
        let o = self.off(name);
        b[o..o + bytes].copy_from_slice(&v.to_le_bytes()[..bytes]);
        self.write_block(&b);
    }

    /// Sets several 8-byte device variables at once.
    pub fn set_many(&self, vals: &[(&str, i64)]) {
        let mut b = self.block();
        for (name, v) in vals {
            let o = self.off(name);
            b[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
        self.write_block(&b);
    }

    /// Reads device variable `name` (`bytes` wide, little endian, zero-extended).
    pub fn get(&self, name: &str, bytes: usize) -> u64 {
        let b = self.block();
        let o = self.off(name);
        let mut v = [0u8; 8];
        v[..bytes].copy_from_slice(&b[o..o + bytes]);
        u64::from_le_bytes(v)
    }

    /// Reads an 8-byte device variable as i64.
    pub fn get_i64(&self, name: &str) -> i64 {
        self.get(name, 8) as i64
    }

    /// Size of the variable block map's value in bytes.
    pub fn block_size(&self) -> u32 {
        self.block.size.max(8)
    }
}
