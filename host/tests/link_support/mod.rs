//! Shared helpers of the linker's tests (`link_rules.rs`, `link_kernel.rs`): fragments
//! assembled by hand from instructions and their relocations.

#![allow(dead_code)]

use ferrocat_plugin_api::ebpf::insn::{Insn, Reg, Size, Src};
use ferrocat_plugin_api::fragment::{Fragment, RelocKind, Relocation, VarDecl};

/// A fragment named `name` of `items` (each instruction with the relocations on it).
pub fn frag(name: &str, vars: Vec<VarDecl>, items: &[(Insn, &[RelocKind])]) -> Fragment {
    let mut insns = Vec::new();
    let mut relocs = Vec::new();
    for (insn, kinds) in items {
        for k in *kinds {
            relocs.push(Relocation {
                insn: insns.len() as u32,
                kind: k.clone(),
            });
        }
        insn.encode(&mut insns);
    }
    Fragment {
        name: name.into(),
        uses_cycle_time: false,
        sets_verdict: false,
        frame_size: 0,
        fixed_packet_len: 0,
        vars,
        insns,
        relocs,
    }
}

/// Register `n`.
pub fn r(n: u8) -> Reg {
    Reg::new(n).expect("register")
}

/// A load of `size` from `base + off` into `dst`.
pub fn ld(size: Size, dst: u8, base: u8, off: i16) -> Insn {
    Insn::Load {
        size,
        signed: false,
        dst: r(dst),
        src: r(base),
        off,
    }
}

/// A store of `src` to `base + off`.
pub fn st(size: Size, base: u8, off: i16, src: u8) -> Insn {
    Insn::Store {
        size,
        dst: r(base),
        off,
        src: Src::Reg(r(src)),
    }
}
