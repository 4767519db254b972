//! Test harness for running builder fragments in the kernel: a minimal standalone
//! linker (prologue, relocations, optional regions, epilogue) written for these tests,
//! program load through the real verifier, `BPF_PROG_TEST_RUN` and the variable block
//! as a one-entry mmapable ARRAY map.
//!
//! The prologue follows docs/fragment-abi.md: r9 = packet data after a length check,
//! r8 = the variable block (`BPF_PSEUDO_MAP_VALUE`), and the cycle time at r10 - 8 —
//! copied from a slot of the variable block so tests choose it.

#![allow(dead_code)]

use std::collections::HashMap;

use ferrocat::bpf::map::{Map, MapSpec, UpdateMode};
use ferrocat::bpf::prog::{Program, TestRun};
use ferrocat_plugin_api::ebpf::insn::{self, AluOp, Insn, JmpCond, RawInsn, Reg, Size, Src};
use ferrocat_plugin_api::fragment::{
    CYCLE_TIME_SLOT, Fragment, PROLOGUE_STACK, RelocKind, ScalarType, VarKind,
};

/// `XDP_PASS`, the verdict when the frame is too short.
pub const XDP_PASS: i32 = 2;
/// `XDP_TX`, the harness epilogue's verdict.
pub const XDP_TX: i32 = 3;

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
    block_size: u32,
    dev: HashMap<String, u32>,
    cycle_off: u32,
    /// Instructions of the linked program.
    pub insns: usize,
}

fn mov(dst: Reg, imm: i32) -> Insn {
    Insn::Alu {
        wide: true,
        op: AluOp::Mov,
        dst,
        src: Src::Imm(imm),
    }
}

/// Links `frag` standalone: terminal variables at `terms` (by `"link.name"`), optional
/// links in `connected` kept, others deleted; device variables laid out naturally
/// aligned in declaration order.
pub fn load(frag: &Fragment, terms: &[(&str, TermAt)], connected: &[&str]) -> Loaded {
    let terms: HashMap<String, TermAt> = terms.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    // Variable block layout.
    let mut dev = HashMap::new();
    let mut off = 0u32;
    let mut var_off = vec![0i64; frag.vars.len()];
    let mut min_len = frag.fixed_packet_len;
    for (k, v) in frag.vars.iter().enumerate() {
        match &v.kind {
            VarKind::Device | VarKind::Foreign { .. } => {
                let key = match &v.kind {
                    VarKind::Foreign { link } => format!("{link}.{}", v.name),
                    _ => v.name.clone(),
                };
                let size = v.ty.scalar.memory_bytes();
                off = off.div_ceil(size) * size;
                dev.insert(key, off);
                var_off[k] = i64::from(off);
                off += size;
            }
            VarKind::Terminal { link, .. } => {
                let key = format!("{link}.{}", v.name);
                if let Some(t) = terms.get(&key) {
                    var_off[k] = i64::from(t.byte);
                    let end = if v.ty.scalar.is_bit_field() {
                        let n = bits_of(v.ty.scalar);
                        t.byte
                            + [1, 2, 4, 8]
                                .into_iter()
                                .find(|w| n + 7 <= w * 8)
                                .unwrap_or(8)
                    } else {
                        t.byte + v.ty.scalar.memory_bytes()
                    };
                    min_len = min_len.max(end);
                }
            }
        }
    }
    let cycle_off = off.div_ceil(8) * 8;
    let block_size = cycle_off + 8;

    // Relocate.
    let mut slots = frag.insns.clone();
    let mut deleted: Vec<(usize, usize)> = Vec::new();
    for r in &frag.relocs {
        if let RelocKind::Optional { link, len } = &r.kind
            && !connected.contains(&link.as_str())
        {
            deleted.push((r.insn as usize, *len as usize));
        }
    }
    for r in &frag.relocs {
        let i = r.insn as usize;
        if deleted.iter().any(|&(s, n)| (s..s + n).contains(&i)) {
            continue;
        }
        let term = |var: u32| {
            let v = &frag.vars[var as usize];
            let key = match &v.kind {
                VarKind::Terminal { link, .. } => format!("{link}.{}", v.name),
                _ => panic!("relocation of a non-terminal variable as terminal"),
            };
            let at = *terms
                .get(&key)
                .unwrap_or_else(|| panic!("no place for terminal {key}"));
            (at, bits_of(v.ty.scalar))
        };
        match &r.kind {
            RelocKind::TerminalByte(v) => {
                let (at, _) = term(*v);
                slots[i].off = slots[i].off.checked_add(at.byte as i16).expect("off fits");
            }
            RelocKind::TerminalBitShift(v) => {
                let (at, _) = term(*v);
                slots[i].imm += i32::from(at.bit);
            }
            RelocKind::TerminalBitMask(v) => {
                let (at, n) = term(*v);
                let m = (((1u64 << n) - 1) << at.bit) as u32 as i32;
                slots[i].imm = slots[i].imm.wrapping_add(m);
            }
            RelocKind::TerminalBitClear(v) => {
                let (at, n) = term(*v);
                let m = !((((1u64 << n) - 1) << at.bit) as u32) as i32;
                slots[i].imm = slots[i].imm.wrapping_add(m);
            }
            RelocKind::DeviceVar(v) => {
                let o = var_off[*v as usize] as i16;
                slots[i].off = slots[i].off.checked_add(o).expect("off fits");
            }
            RelocKind::Stack => {
                slots[i].off = slots[i].off.checked_sub(PROLOGUE_STACK).expect("off fits");
            }
            RelocKind::Helper(id) => slots[i].imm += id,
            RelocKind::Optional { .. } => {}
        }
    }
    deleted.sort();
    for &(start, len) in deleted.iter().rev() {
        delete_region(&mut slots, start, len);
    }

    // Prologue and epilogue.
    let mut prog: Vec<RawInsn> = Vec::new();
    let mut pro = vec![
        Insn::Load {
            size: Size::W,
            signed: false,
            dst: Reg::R9,
            src: Reg::R1,
            off: 0,
        },
        Insn::Load {
            size: Size::W,
            signed: false,
            dst: Reg::R2,
            src: Reg::R1,
            off: 4,
        },
        Insn::Alu {
            wide: true,
            op: AluOp::Mov,
            dst: Reg::R3,
            src: Src::Reg(Reg::R9),
        },
        Insn::Alu {
            wide: true,
            op: AluOp::Add,
            dst: Reg::R3,
            src: Src::Imm(min_len as i32),
        },
    ];
    let map = Map::create(&MapSpec::mmapable_array("fc_test", block_size, 1))
        .expect("create the variable block map (needs root and bpf(2))");
    let tail = vec![
        Insn::LdMapValue {
            dst: Reg::R8,
            fd: map.raw_fd(),
            off: 0,
        },
        Insn::Load {
            size: Size::DW,
            signed: false,
            dst: Reg::R1,
            src: Reg::R8,
            off: cycle_off as i16,
        },
        Insn::Store {
            size: Size::DW,
            dst: Reg::R10,
            off: CYCLE_TIME_SLOT,
            src: Src::Reg(Reg::R1),
        },
    ];
    let tail_slots: usize = tail.iter().map(|i| i.slots()).sum();
    let epilogue = if frag.sets_verdict {
        vec![Insn::Exit]
    } else {
        vec![mov(Reg::R0, XDP_TX), Insn::Exit]
    };
    let epi_slots: usize = epilogue.iter().map(|i| i.slots()).sum();
    // if r3 > r2 goto pass (pass is after the epilogue)
    let pass_label_fixup = tail_slots + slots.len() + epi_slots;
    pro.push(Insn::Jmp {
        wide: true,
        cond: JmpCond::Le,
        dst: Reg::R3,
        src: Src::Reg(Reg::R2),
        off: 1,
    });
    pro.push(Insn::JaLong {
        imm: pass_label_fixup as i32,
    });
    prog.extend(insn::encode(&pro));
    prog.extend(insn::encode(&tail));
    prog.extend(slots);
    prog.extend(insn::encode(&epilogue));
    prog.extend(insn::encode(&[mov(Reg::R0, XDP_PASS), Insn::Exit]));
    let insns = prog.len();
    let loaded = Program::load_xdp(&frag.name, &prog);
    let prog = match loaded {
        Ok(p) => p,
        Err(e) => panic!(
            "fragment `{}` rejected: {e}\nlisting:\n{}",
            frag.name,
            ferrocat_plugin_api::ebpf::disasm::listing(&prog)
        ),
    };
    let l = Loaded {
        prog,
        map,
        block_size,
        dev,
        cycle_off,
        insns,
    };
    l.write_block(&vec![0; block_size as usize]);
    l
}

/// Width in bits of a packet type.
fn bits_of(t: ScalarType) -> u32 {
    match t {
        ScalarType::Bool => 1,
        ScalarType::Bits(n) => u32::from(n),
        other => other.packet_bits(),
    }
}

/// Deletes `len` slots at `start`, shortening jumps that cross them.
fn delete_region(slots: &mut Vec<RawInsn>, start: usize, len: usize) {
    let decoded = insn::decode(slots).expect("fragment decodes");
    for (at, i) in decoded {
        let (from, target) = match i {
            Insn::Ja { off } | Insn::Jmp { off, .. } => (at, at as i64 + 1 + i64::from(off)),
            Insn::JaLong { imm } => (at, at as i64 + 1 + i64::from(imm)),
            _ => continue,
        };
        if from < start && target >= (start + len) as i64 {
            match i {
                Insn::JaLong { .. } => slots[from].imm -= len as i32,
                _ => slots[from].off -= len as i16,
            }
        }
    }
    slots.drain(start..start + len);
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
        *self
            .dev
            .get(name)
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

    /// Sets the cycle time the prologue puts at r10 - 8.
    pub fn set_cycle_time(&self, t: u64) {
        let mut b = self.block();
        let o = self.cycle_off as usize;
        b[o..o + 8].copy_from_slice(&t.to_le_bytes());
        self.write_block(&b);
    }

    /// Size of the variable block in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }
}
