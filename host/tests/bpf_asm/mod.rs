//! Short constructors for hand-assembled test programs, shared by the bpf kernel tests.

#![allow(dead_code)]

use ferrocat_plugin_api::ebpf::insn::{AluOp, AtomicOp, Insn, JmpCond, Reg, Size, Src};

/// `dst = imm` (64 bits).
pub fn mov(dst: Reg, imm: i32) -> Insn {
    Insn::Alu {
        wide: true,
        op: AluOp::Mov,
        dst,
        src: Src::Imm(imm),
    }
}

/// `dst = src` (64 bits).
pub fn mov_reg(dst: Reg, src: Reg) -> Insn {
    Insn::Alu {
        wide: true,
        op: AluOp::Mov,
        dst,
        src: Src::Reg(src),
    }
}

/// `dst += imm` (64 bits).
pub fn add(dst: Reg, imm: i32) -> Insn {
    Insn::Alu {
        wide: true,
        op: AluOp::Add,
        dst,
        src: Src::Imm(imm),
    }
}

/// `dst = *(size *)(src + off)`.
pub fn ldx(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
    Insn::Load {
        size,
        signed: false,
        dst,
        src,
        off,
    }
}

/// `*(size *)(dst + off) = src`.
pub fn stx(size: Size, dst: Reg, off: i16, src: Reg) -> Insn {
    Insn::Store {
        size,
        dst,
        off,
        src: Src::Reg(src),
    }
}

/// `*(size *)(dst + off) = imm`.
pub fn st(size: Size, dst: Reg, off: i16, imm: i32) -> Insn {
    Insn::Store {
        size,
        dst,
        off,
        src: Src::Imm(imm),
    }
}

/// `lock *(u64 *)(dst + off) += src`.
pub fn atomic_add64(dst: Reg, off: i16, src: Reg) -> Insn {
    Insn::Atomic {
        size: Size::DW,
        op: AtomicOp::Add,
        dst,
        src,
        off,
    }
}

/// `if dst COND src goto +off` (64 bits, register operand).
pub fn jmp_reg(cond: JmpCond, dst: Reg, src: Reg, off: i16) -> Insn {
    Insn::Jmp {
        wide: true,
        cond,
        dst,
        src: Src::Reg(src),
        off,
    }
}

/// `if dst COND imm goto +off` (64 bits).
pub fn jmp_imm(cond: JmpCond, dst: Reg, imm: i32, off: i16) -> Insn {
    Insn::Jmp {
        wide: true,
        cond,
        dst,
        src: Src::Imm(imm),
        off,
    }
}

/// The XDP bounds check every packet access needs: with the context in `ctx`, leaves
/// `data` in r2 and `data_end` in r3, and jumps `skip` instructions ahead (past the
/// code using the packet) if the frame is shorter than `len` bytes. Five instructions.
pub fn packet_check(ctx: Reg, len: i32, skip: i16) -> Vec<Insn> {
    vec![
        ldx(Size::W, Reg::R2, ctx, 0),
        ldx(Size::W, Reg::R3, ctx, 4),
        mov_reg(Reg::R4, Reg::R2),
        add(Reg::R4, len),
        jmp_reg(JmpCond::Gt, Reg::R4, Reg::R3, skip),
    ]
}

/// `r0 = verdict; exit`.
pub fn ret(verdict: u32) -> Vec<Insn> {
    vec![mov(Reg::R0, verdict as i32), Insn::Exit]
}

/// Helper ids (`enum bpf_func_id`, include/uapi/linux/bpf.h).
pub const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
/// `bpf_map_update_elem`
pub const BPF_FUNC_MAP_UPDATE_ELEM: i32 = 2;
/// `bpf_ringbuf_output`
pub const BPF_FUNC_RINGBUF_OUTPUT: i32 = 130;

/// A frame of `len` bytes counting up from 0.
pub fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}
