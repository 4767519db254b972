//! A disassembler printing instructions in the kernel verifier's syntax.
//!
//! The text of each instruction follows the kernel's `print_bpf_insn`
//! (kernel/bpf/disasm.c), which is what a verifier log shows, so a listing from
//! [`listing`] can be read side by side with a verifier error:
//!
//! ```text
//! 0: (61) r2 = *(u32 *)(r8 +12)
//! 1: (7b) *(u64 *)(r10 -8) = r1
//! 2: (1d) if r3 <= r2 goto pc+2
//! 3: (85) call bpf_ktime_get_ns#5
//! ```
//!
//! Two deliberate differences from the kernel: a 64-bit immediate load of a map
//! (`BPF_PSEUDO_MAP_FD` / `BPF_PSEUDO_MAP_VALUE`) is printed as `map[fd:N]` /
//! `map[fd:N][0]+off` (the kernel hides the pointer unless it may leak it; `bpftool`
//! prints the same shape with the map's id), and a slot that does not decode is printed
//! as `(code) invalid: reason` instead of the kernel's `BUG_...` text. Disassembly never
//! panics, whatever the slots hold.

use super::insn::{AluOp, AtomicOp, DecodeError, Endian, Insn, JmpCond, RawInsn, Reg, Size, Src};

/// Name of the helper numbered `id` as the kernel prints it (`bpf_` + the name in
/// `__BPF_FUNC_MAPPER`, include/uapi/linux/bpf.h), for the helpers ferrocat's programs
/// are likely to call; `None` for others.
pub fn helper_name(id: i32) -> Option<&'static str> {
    // Ids from `enum bpf_func_id`, include/uapi/linux/bpf.h.
    Some(match id {
        1 => "bpf_map_lookup_elem",
        2 => "bpf_map_update_elem",
        3 => "bpf_map_delete_elem",
        5 => "bpf_ktime_get_ns",
        6 => "bpf_trace_printk",
        7 => "bpf_get_prandom_u32",
        8 => "bpf_get_smp_processor_id",
        12 => "bpf_tail_call",
        23 => "bpf_redirect",
        44 => "bpf_xdp_adjust_head",
        51 => "bpf_redirect_map",
        54 => "bpf_xdp_adjust_meta",
        65 => "bpf_xdp_adjust_tail",
        125 => "bpf_ktime_get_boot_ns",
        130 => "bpf_ringbuf_output",
        131 => "bpf_ringbuf_reserve",
        132 => "bpf_ringbuf_submit",
        133 => "bpf_ringbuf_discard",
        134 => "bpf_ringbuf_query",
        _ => return None,
    })
}

fn size_name(size: Size, signed: bool) -> &'static str {
    match (size, signed) {
        (Size::B, false) => "u8",
        (Size::H, false) => "u16",
        (Size::W, false) => "u32",
        (Size::DW, false) => "u64",
        (Size::B, true) => "s8",
        (Size::H, true) => "s16",
        (Size::W, true) => "s32",
        (Size::DW, true) => "s64",
    }
}

fn alu_op_str(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "+=",
        AluOp::Sub => "-=",
        AluOp::Mul => "*=",
        AluOp::Div => "/=",
        AluOp::SDiv => "s/=",
        AluOp::Or => "|=",
        AluOp::And => "&=",
        AluOp::Lsh => "<<=",
        AluOp::Rsh => ">>=",
        AluOp::Mod => "%=",
        AluOp::SMod => "s%=",
        AluOp::Xor => "^=",
        AluOp::Mov => "=",
        AluOp::Arsh => "s>>=",
    }
}

fn jmp_op_str(cond: JmpCond) -> &'static str {
    match cond {
        JmpCond::Eq => "==",
        JmpCond::Gt => ">",
        JmpCond::Ge => ">=",
        JmpCond::Set => "&",
        JmpCond::Ne => "!=",
        JmpCond::SGt => "s>",
        JmpCond::SGe => "s>=",
        JmpCond::Lt => "<",
        JmpCond::Le => "<=",
        JmpCond::SLt => "s<",
        JmpCond::SLe => "s<=",
    }
}

/// `r3` for 64-bit operations, `w3` for 32-bit ones.
fn reg(wide: bool, r: Reg) -> String {
    format!("{}{}", if wide { 'r' } else { 'w' }, r.index())
}

/// `(r8 +12)`, `(r10 -8)`: the kernel's `(r%d %+d)`.
fn addr(base: Reg, off: i16) -> String {
    format!("({base} {off:+})")
}

/// The instruction's text in the verifier's syntax, without slot number and opcode
/// (`r2 = *(u32 *)(r8 +12)`, `if w1 s> 0x5 goto pc-3`, `call bpf_ktime_get_ns#5`).
pub fn format_insn(insn: &Insn) -> String {
    match *insn {
        Insn::Alu { wide, op, dst, src } => match src {
            Src::Reg(s) => format!("{} {} {}", reg(wide, dst), alu_op_str(op), reg(wide, s)),
            Src::Imm(i) => format!("{} {} {}", reg(wide, dst), alu_op_str(op), i),
        },
        Insn::Neg { wide, dst } => format!("{} = -{}", reg(wide, dst), reg(wide, dst)),
        Insn::MovSx {
            wide,
            dst,
            src,
            bits,
        } => format!("{} = (s{}){}", reg(wide, dst), bits, reg(wide, src)),
        Insn::End { op, dst, bits } => {
            let prefix = match op {
                Endian::ToLe => "le",
                Endian::ToBe => "be",
                Endian::Swap => "bswap",
            };
            format!("{dst} = {prefix}{bits} {dst}")
        }
        Insn::Load {
            size,
            signed,
            dst,
            src,
            off,
        } => format!("{dst} = *({} *){}", size_name(size, signed), addr(src, off)),
        Insn::Store {
            size,
            dst,
            off,
            src,
        } => {
            let value = match src {
                Src::Reg(s) => s.to_string(),
                Src::Imm(i) => i.to_string(),
            };
            format!(
                "*({} *){} = {value}",
                size_name(size, false),
                addr(dst, off)
            )
        }
        Insn::Atomic {
            size,
            op,
            dst,
            src,
            off,
        } => {
            let ty = size_name(size, false);
            let bits = if size == Size::DW { "64" } else { "" };
            let at = addr(dst, off);
            let fetch =
                |name: &str| format!("{src} = atomic{bits}_fetch_{name}(({ty} *){at}, {src})");
            match op {
                AtomicOp::Add => format!("lock *({ty} *){at} += {src}"),
                AtomicOp::Or => format!("lock *({ty} *){at} |= {src}"),
                AtomicOp::And => format!("lock *({ty} *){at} &= {src}"),
                AtomicOp::Xor => format!("lock *({ty} *){at} ^= {src}"),
                AtomicOp::FetchAdd => fetch("add"),
                AtomicOp::FetchOr => fetch("or"),
                AtomicOp::FetchAnd => fetch("and"),
                AtomicOp::FetchXor => fetch("xor"),
                AtomicOp::Xchg => format!("{src} = atomic{bits}_xchg(({ty} *){at}, {src})"),
                AtomicOp::CmpXchg => {
                    format!("r0 = atomic{bits}_cmpxchg(({ty} *){at}, r0, {src})")
                }
            }
        }
        Insn::LdImm64 { dst, imm } => format!("{dst} = {:#x}", imm as u64),
        Insn::LdMapFd { dst, fd } => format!("{dst} = map[fd:{fd}]"),
        Insn::LdMapValue { dst, fd, off } => format!("{dst} = map[fd:{fd}][0]+{off}"),
        Insn::Ja { off } => format!("goto pc{off:+}"),
        Insn::JaLong { imm } => format!("gotol pc{imm:+}"),
        Insn::Jmp {
            wide,
            cond,
            dst,
            src,
            off,
        } => {
            let rhs = match src {
                Src::Reg(s) => reg(wide, s),
                Src::Imm(i) => format!("{:#x}", i as u32),
            };
            format!(
                "if {} {} {rhs} goto pc{off:+}",
                reg(wide, dst),
                jmp_op_str(cond)
            )
        }
        Insn::Call { helper } => match helper_name(helper) {
            Some(name) => format!("call {name}#{helper}"),
            None => format!("call unknown#{helper}"),
        },
        Insn::Exit => "exit".to_string(),
    }
}

/// One disassembled instruction of a slot sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Index of the instruction's first slot.
    pub slot: usize,
    /// The opcode byte of that slot.
    pub code: u8,
    /// Slots the line covers (2 for 64-bit immediate loads, 1 otherwise, also for a slot
    /// that does not decode).
    pub slots: usize,
    /// The decoded instruction, or why the slot does not decode.
    pub insn: Result<Insn, DecodeError>,
}

impl Line {
    /// The text after the slot number: `(61) r2 = *(u32 *)(r8 +12)`, or
    /// `(ff) invalid: slot 3: unknown opcode 0xff`.
    pub fn text(&self) -> String {
        match &self.insn {
            Ok(insn) => format!("({:02x}) {}", self.code, format_insn(insn)),
            Err(e) => format!("({:02x}) invalid: {e}", self.code),
        }
    }
}

/// Decodes `slots` instruction by instruction; a slot that does not decode becomes a
/// line with the error and the walk continues with the next slot.
pub fn lines(slots: &[RawInsn]) -> Vec<Line> {
    let mut out = Vec::with_capacity(slots.len());
    let mut at = 0;
    while at < slots.len() {
        let insn = Insn::decode_at(slots, at);
        let n = insn.as_ref().map_or(1, Insn::slots);
        out.push(Line {
            slot: at,
            code: slots[at].code,
            slots: n,
            insn,
        });
        at += n;
    }
    out
}

/// Each instruction's first slot with its text `(code) text` as the verifier prints it
/// after the slot number. The second slot of a 64-bit immediate load has no line.
pub fn disassemble(slots: &[RawInsn]) -> Vec<(usize, String)> {
    lines(slots)
        .into_iter()
        .map(|l| (l.slot, l.text()))
        .collect()
}

/// The whole listing, one `N: (code) text` line per instruction, each ending in `\n`.
pub fn listing(slots: &[RawInsn]) -> String {
    let mut out = String::new();
    for (slot, text) in disassemble(slots) {
        out.push_str(&format!("{slot}: {text}\n"));
    }
    out
}

/// The listing of `slots[from..to]` (clamped to the slots present), with slot numbers
/// of the whole sequence; lines that start before `from` are left out. Used to show the
/// code around a failing instruction.
pub fn listing_range(slots: &[RawInsn], from: usize, to: usize) -> String {
    let mut out = String::new();
    for (slot, text) in disassemble(slots) {
        if slot >= from && slot < to {
            out.push_str(&format!("{slot}: {text}\n"));
        }
    }
    out
}
