//! eBPF instructions as types, with their encoding to and decoding from the kernel's
//! 64-bit instruction format (`struct bpf_insn`, Documentation/bpf/standardization/
//! instruction-set.rst).
//!
//! [`Insn`] is the decoded, meaningful form; [`RawInsn`] is one 8-byte slot as the kernel
//! sees it. Every instruction occupies one slot except the 64-bit immediate loads
//! ([`Insn::LdImm64`], [`Insn::LdMapFd`], [`Insn::LdMapValue`]), which occupy two. Jump
//! offsets count slots, as in the kernel.

use std::fmt;

/// One of the eleven eBPF registers, `r0`..`r10`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg(u8);

impl Reg {
    /// Return value of helper calls and of the program; clobbered by calls.
    pub const R0: Reg = Reg(0);
    /// First argument register; holds the context on program entry. Clobbered by calls.
    pub const R1: Reg = Reg(1);
    /// Argument register, clobbered by calls.
    pub const R2: Reg = Reg(2);
    /// Argument register, clobbered by calls.
    pub const R3: Reg = Reg(3);
    /// Argument register, clobbered by calls.
    pub const R4: Reg = Reg(4);
    /// Argument register, clobbered by calls.
    pub const R5: Reg = Reg(5);
    /// Callee-saved register.
    pub const R6: Reg = Reg(6);
    /// Callee-saved register.
    pub const R7: Reg = Reg(7);
    /// Callee-saved register.
    pub const R8: Reg = Reg(8);
    /// Callee-saved register.
    pub const R9: Reg = Reg(9);
    /// The read-only frame pointer.
    pub const R10: Reg = Reg(10);
    /// The frame pointer, `r10`.
    pub const FP: Reg = Reg(10);

    /// The register numbered `n`, if `n <= 10`.
    pub const fn new(n: u8) -> Option<Reg> {
        if n <= 10 { Some(Reg(n)) } else { None }
    }

    /// The register's number, 0..=10.
    pub const fn index(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// Width of a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    /// 1 byte (`u8`, `BPF_B`).
    B,
    /// 2 bytes (`u16`, `BPF_H`).
    H,
    /// 4 bytes (`u32`, `BPF_W`).
    W,
    /// 8 bytes (`u64`, `BPF_DW`).
    DW,
}

impl Size {
    /// Number of bytes accessed.
    pub const fn bytes(self) -> u32 {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }

    /// The size of `bytes` bytes, if it is 1, 2, 4 or 8.
    pub const fn from_bytes(bytes: u32) -> Option<Size> {
        match bytes {
            1 => Some(Size::B),
            2 => Some(Size::H),
            4 => Some(Size::W),
            8 => Some(Size::DW),
            _ => None,
        }
    }

    const fn code(self) -> u8 {
        match self {
            Size::W => 0x00,
            Size::H => 0x08,
            Size::B => 0x10,
            Size::DW => 0x18,
        }
    }

    const fn from_code(code: u8) -> Size {
        match code & 0x18 {
            0x00 => Size::W,
            0x08 => Size::H,
            0x10 => Size::B,
            _ => Size::DW,
        }
    }
}

/// The second operand of an ALU or jump instruction: a register or a 32-bit immediate
/// (sign-extended to 64 bits in 64-bit operations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Src {
    /// `BPF_X`: a register.
    Reg(Reg),
    /// `BPF_K`: an immediate.
    Imm(i32),
}

/// Arithmetic and logic operations (`BPF_ALU` / `BPF_ALU64` classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    /// `dst += src`
    Add,
    /// `dst -= src`
    Sub,
    /// `dst *= src`
    Mul,
    /// `dst /= src`, unsigned; `x / 0 == 0`.
    Div,
    /// `dst s/= src`, signed (cpu v4, `off = 1`); `x s/ 0 == 0`.
    SDiv,
    /// `dst |= src`
    Or,
    /// `dst &= src`
    And,
    /// `dst <<= src`, shift amount masked to the operand width.
    Lsh,
    /// `dst >>= src`, logical.
    Rsh,
    /// `dst %= src`, unsigned; `x % 0 == x`.
    Mod,
    /// `dst s%= src`, signed (cpu v4, `off = 1`); `x s% 0 == x`.
    SMod,
    /// `dst ^= src`
    Xor,
    /// `dst = src`
    Mov,
    /// `dst s>>= src`, arithmetic.
    Arsh,
}

impl AluOp {
    const fn code_and_off(self) -> (u8, i16) {
        match self {
            AluOp::Add => (0x00, 0),
            AluOp::Sub => (0x10, 0),
            AluOp::Mul => (0x20, 0),
            AluOp::Div => (0x30, 0),
            AluOp::SDiv => (0x30, 1),
            AluOp::Or => (0x40, 0),
            AluOp::And => (0x50, 0),
            AluOp::Lsh => (0x60, 0),
            AluOp::Rsh => (0x70, 0),
            AluOp::Mod => (0x90, 0),
            AluOp::SMod => (0x90, 1),
            AluOp::Xor => (0xa0, 0),
            AluOp::Mov => (0xb0, 0),
            AluOp::Arsh => (0xc0, 0),
        }
    }
}

/// Conditions of conditional jumps (`BPF_JMP` / `BPF_JMP32` classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JmpCond {
    /// `==`
    Eq,
    /// unsigned `>`
    Gt,
    /// unsigned `>=`
    Ge,
    /// `dst & src != 0`
    Set,
    /// `!=`
    Ne,
    /// signed `>`
    SGt,
    /// signed `>=`
    SGe,
    /// unsigned `<`
    Lt,
    /// unsigned `<=`
    Le,
    /// signed `<`
    SLt,
    /// signed `<=`
    SLe,
}

impl JmpCond {
    const fn code(self) -> u8 {
        match self {
            JmpCond::Eq => 0x10,
            JmpCond::Gt => 0x20,
            JmpCond::Ge => 0x30,
            JmpCond::Set => 0x40,
            JmpCond::Ne => 0x50,
            JmpCond::SGt => 0x60,
            JmpCond::SGe => 0x70,
            JmpCond::Lt => 0xa0,
            JmpCond::Le => 0xb0,
            JmpCond::SLt => 0xc0,
            JmpCond::SLe => 0xd0,
        }
    }

    const fn from_code(code: u8) -> Option<JmpCond> {
        Some(match code {
            0x10 => JmpCond::Eq,
            0x20 => JmpCond::Gt,
            0x30 => JmpCond::Ge,
            0x40 => JmpCond::Set,
            0x50 => JmpCond::Ne,
            0x60 => JmpCond::SGt,
            0x70 => JmpCond::SGe,
            0xa0 => JmpCond::Lt,
            0xb0 => JmpCond::Le,
            0xc0 => JmpCond::SLt,
            0xd0 => JmpCond::SLe,
            _ => return None,
        })
    }

    /// The condition that holds exactly when `self` does not.
    pub const fn negate(self) -> Option<JmpCond> {
        Some(match self {
            JmpCond::Eq => JmpCond::Ne,
            JmpCond::Ne => JmpCond::Eq,
            JmpCond::Gt => JmpCond::Le,
            JmpCond::Le => JmpCond::Gt,
            JmpCond::Ge => JmpCond::Lt,
            JmpCond::Lt => JmpCond::Ge,
            JmpCond::SGt => JmpCond::SLe,
            JmpCond::SLe => JmpCond::SGt,
            JmpCond::SGe => JmpCond::SLt,
            JmpCond::SLt => JmpCond::SGe,
            JmpCond::Set => return None,
        })
    }

    /// The condition with its operands swapped (`a < b` ⇔ `b > a`).
    pub const fn swap(self) -> JmpCond {
        match self {
            JmpCond::Eq | JmpCond::Ne | JmpCond::Set => self,
            JmpCond::Gt => JmpCond::Lt,
            JmpCond::Lt => JmpCond::Gt,
            JmpCond::Ge => JmpCond::Le,
            JmpCond::Le => JmpCond::Ge,
            JmpCond::SGt => JmpCond::SLt,
            JmpCond::SLt => JmpCond::SGt,
            JmpCond::SGe => JmpCond::SLe,
            JmpCond::SLe => JmpCond::SGe,
        }
    }
}

/// Byte-order operations (`BPF_END`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endian {
    /// Convert to little endian (`le16`/`le32`/`le64`): truncation only on x86.
    ToLe,
    /// Convert to big endian (`be16`/`be32`/`be64`).
    ToBe,
    /// Unconditional byte swap (`bswap16/32/64`, cpu v4, `BPF_ALU64 | BPF_END`).
    Swap,
}

/// Read-modify-write operations of `BPF_ATOMIC` (`BPF_STX | BPF_ATOMIC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// `*(dst + off) += src`
    Add,
    /// `*(dst + off) |= src`
    Or,
    /// `*(dst + off) &= src`
    And,
    /// `*(dst + off) ^= src`
    Xor,
    /// `src = atomic_fetch_add(dst + off, src)`
    FetchAdd,
    /// `src = atomic_fetch_or(dst + off, src)`
    FetchOr,
    /// `src = atomic_fetch_and(dst + off, src)`
    FetchAnd,
    /// `src = atomic_fetch_xor(dst + off, src)`
    FetchXor,
    /// `src = xchg(dst + off, src)`
    Xchg,
    /// `r0 = cmpxchg(dst + off, r0, src)`
    CmpXchg,
}

impl AtomicOp {
    const fn imm(self) -> i32 {
        const FETCH: i32 = 0x01;
        match self {
            AtomicOp::Add => 0x00,
            AtomicOp::Or => 0x40,
            AtomicOp::And => 0x50,
            AtomicOp::Xor => 0xa0,
            AtomicOp::FetchAdd => FETCH,
            AtomicOp::FetchOr => 0x40 | FETCH,
            AtomicOp::FetchAnd => 0x50 | FETCH,
            AtomicOp::FetchXor => 0xa0 | FETCH,
            AtomicOp::Xchg => 0xe0 | FETCH,
            AtomicOp::CmpXchg => 0xf0 | FETCH,
        }
    }

    const fn from_imm(imm: i32) -> Option<AtomicOp> {
        Some(match imm {
            0x00 => AtomicOp::Add,
            0x40 => AtomicOp::Or,
            0x50 => AtomicOp::And,
            0xa0 => AtomicOp::Xor,
            0x01 => AtomicOp::FetchAdd,
            0x41 => AtomicOp::FetchOr,
            0x51 => AtomicOp::FetchAnd,
            0xa1 => AtomicOp::FetchXor,
            0xe1 => AtomicOp::Xchg,
            0xf1 => AtomicOp::CmpXchg,
            _ => return None,
        })
    }
}

/// `src_reg` value of a `BPF_LD | BPF_IMM | BPF_DW` that loads a map's address.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `src_reg` value of a `BPF_LD | BPF_IMM | BPF_DW` that loads the address of a map
/// value (`imm` of the first slot: map fd; `imm` of the second: offset into value 0).
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;

/// One decoded eBPF instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Insn {
    /// `dst = dst OP src` in 64 bits (`wide`, `BPF_ALU64`) or 32 bits (`BPF_ALU`, result
    /// zero-extended).
    Alu {
        /// 64-bit operation if true, 32-bit otherwise.
        wide: bool,
        /// The operation.
        op: AluOp,
        /// Destination and first operand.
        dst: Reg,
        /// Second operand.
        src: Src,
    },
    /// `dst = -dst`.
    Neg {
        /// 64-bit operation if true, 32-bit otherwise.
        wide: bool,
        /// The register negated in place.
        dst: Reg,
    },
    /// `dst = (s8|s16|s32) src`: sign-extending move (cpu v4, `BPF_MOV` with `off`).
    MovSx {
        /// 64-bit result if true, 32-bit (zero-extended) otherwise.
        wide: bool,
        /// Destination.
        dst: Reg,
        /// Source register.
        src: Reg,
        /// Width of the source value that is sign-extended: 8, 16 or 32.
        bits: u8,
    },
    /// Byte-order conversion of the low `bits` (16, 32, 64) of `dst`.
    End {
        /// Which conversion.
        op: Endian,
        /// The register converted in place.
        dst: Reg,
        /// 16, 32 or 64.
        bits: u8,
    },
    /// `dst = *(size *)(src + off)`, zero-extended, or sign-extended if `signed`
    /// (`BPF_MEMSX`, cpu v4; not for 8-byte loads).
    Load {
        /// Access width.
        size: Size,
        /// Sign-extend the loaded value.
        signed: bool,
        /// Destination.
        dst: Reg,
        /// Base address.
        src: Reg,
        /// Offset from the base.
        off: i16,
    },
    /// `*(size *)(dst + off) = src` (`BPF_STX` for a register, `BPF_ST` for an
    /// immediate).
    Store {
        /// Access width.
        size: Size,
        /// Base address.
        dst: Reg,
        /// Offset from the base.
        off: i16,
        /// The value stored.
        src: Src,
    },
    /// An atomic read-modify-write of 4 or 8 bytes at `dst + off`.
    Atomic {
        /// `W` or `DW`.
        size: Size,
        /// The operation.
        op: AtomicOp,
        /// Base address.
        dst: Reg,
        /// Operand (and, for fetching operations, the register receiving the old value).
        src: Reg,
        /// Offset from the base.
        off: i16,
    },
    /// `dst = imm` with a full 64-bit immediate (two slots).
    LdImm64 {
        /// Destination.
        dst: Reg,
        /// The constant.
        imm: i64,
    },
    /// `dst = map` by file descriptor (two slots, `BPF_PSEUDO_MAP_FD`).
    LdMapFd {
        /// Destination.
        dst: Reg,
        /// The map's file descriptor.
        fd: i32,
    },
    /// `dst = &map[0] + off` (two slots, `BPF_PSEUDO_MAP_VALUE`): direct address of the
    /// value of a one-entry array map.
    LdMapValue {
        /// Destination.
        dst: Reg,
        /// The map's file descriptor.
        fd: i32,
        /// Offset into the map value.
        off: u32,
    },
    /// `goto +off` (`BPF_JMP | BPF_JA`, 16-bit offset).
    Ja {
        /// Offset in slots relative to the next instruction.
        off: i16,
    },
    /// `gotol +imm` (`BPF_JMP32 | BPF_JA`, cpu v4, 32-bit offset in `imm`).
    JaLong {
        /// Offset in slots relative to the next instruction.
        imm: i32,
    },
    /// `if dst COND src goto +off`, comparing 64 bits (`BPF_JMP`) or 32 (`BPF_JMP32`).
    Jmp {
        /// 64-bit comparison if true, 32-bit otherwise.
        wide: bool,
        /// The condition.
        cond: JmpCond,
        /// First operand.
        dst: Reg,
        /// Second operand.
        src: Src,
        /// Offset in slots relative to the next instruction.
        off: i16,
    },
    /// `call helper`: calls the kernel helper numbered `helper`; clobbers r1–r5,
    /// result in r0.
    Call {
        /// Helper id (`enum bpf_func_id`).
        helper: i32,
    },
    /// `exit`: return r0.
    Exit,
}

/// One 8-byte instruction slot as the kernel reads it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RawInsn {
    /// Operation code: class, size/source and operation bits.
    pub code: u8,
    /// Destination register in the low nibble, source register in the high nibble.
    pub regs: u8,
    /// Signed 16-bit offset.
    pub off: i16,
    /// Signed 32-bit immediate.
    pub imm: i32,
}

impl fmt::Debug for RawInsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{code: {:#04x}, dst: r{}, src: r{}, off: {}, imm: {}}}",
            self.code,
            self.dst(),
            self.src(),
            self.off,
            self.imm
        )
    }
}

impl RawInsn {
    /// A slot from its fields.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> RawInsn {
        RawInsn {
            code,
            regs: (dst & 0x0f) | (src << 4),
            off,
            imm,
        }
    }

    /// Destination register number (low nibble).
    pub const fn dst(self) -> u8 {
        self.regs & 0x0f
    }

    /// Source register number (high nibble).
    pub const fn src(self) -> u8 {
        self.regs >> 4
    }

    /// The slot's 8 bytes in the order the kernel reads them (little endian host).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }

    /// A slot from its 8 bytes.
    pub fn from_bytes(b: [u8; 8]) -> RawInsn {
        RawInsn {
            code: b[0],
            regs: b[1],
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

// Instruction classes (instruction-set.rst, "Instruction classes").
const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_JMP32: u8 = 0x06;
const CLASS_ALU64: u8 = 0x07;
// Source bit of ALU/JMP classes.
const SRC_X: u8 = 0x08;
// Modes of load/store classes.
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const MODE_MEMSX: u8 = 0x80;
const MODE_ATOMIC: u8 = 0xc0;
// Operation codes outside AluOp/JmpCond.
const OP_NEG: u8 = 0x80;
const OP_END: u8 = 0xd0;
const OP_MOV: u8 = 0xb0;
const OP_JA: u8 = 0x00;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;

/// Why a sequence of slots is not a valid instruction stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The opcode is not one ferrocat knows.
    #[error("slot {slot}: unknown opcode {code:#04x}")]
    UnknownOpcode {
        /// Index of the slot.
        slot: usize,
        /// The opcode byte.
        code: u8,
    },
    /// A register number above 10.
    #[error("slot {slot}: invalid register number {reg}")]
    BadRegister {
        /// Index of the slot.
        slot: usize,
        /// The register number.
        reg: u8,
    },
    /// A field holds a value the opcode does not allow (e.g. a byte-swap width of 24).
    #[error("slot {slot}: {what}")]
    BadField {
        /// Index of the slot.
        slot: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A 64-bit immediate load whose second slot is missing.
    #[error("slot {slot}: 64-bit immediate load lacks its second slot")]
    TruncatedLdImm64 {
        /// Index of the first slot.
        slot: usize,
    },
}

impl Insn {
    /// Number of 8-byte slots the instruction occupies (2 for 64-bit immediate loads).
    pub const fn slots(&self) -> usize {
        match self {
            Insn::LdImm64 { .. } | Insn::LdMapFd { .. } | Insn::LdMapValue { .. } => 2,
            _ => 1,
        }
    }

    /// Appends the instruction's slots to `out`.
    pub fn encode(&self, out: &mut Vec<RawInsn>) {
        let r = |reg: Reg| reg.index();
        match *self {
            Insn::Alu { wide, op, dst, src } => {
                let class = if wide { CLASS_ALU64 } else { CLASS_ALU };
                let (opc, off) = op.code_and_off();
                out.push(match src {
                    Src::Reg(s) => RawInsn::new(class | SRC_X | opc, r(dst), r(s), off, 0),
                    Src::Imm(i) => RawInsn::new(class | opc, r(dst), 0, off, i),
                });
            }
            Insn::Neg { wide, dst } => {
                let class = if wide { CLASS_ALU64 } else { CLASS_ALU };
                out.push(RawInsn::new(class | OP_NEG, r(dst), 0, 0, 0));
            }
            Insn::MovSx {
                wide,
                dst,
                src,
                bits,
            } => {
                let class = if wide { CLASS_ALU64 } else { CLASS_ALU };
                out.push(RawInsn::new(
                    class | SRC_X | OP_MOV,
                    r(dst),
                    r(src),
                    i16::from(bits),
                    0,
                ));
            }
            Insn::End { op, dst, bits } => {
                let code = match op {
                    Endian::ToLe => CLASS_ALU | OP_END,
                    Endian::ToBe => CLASS_ALU | SRC_X | OP_END,
                    Endian::Swap => CLASS_ALU64 | OP_END,
                };
                out.push(RawInsn::new(code, r(dst), 0, 0, i32::from(bits)));
            }
            Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let mode = if signed { MODE_MEMSX } else { MODE_MEM };
                out.push(RawInsn::new(
                    CLASS_LDX | mode | size.code(),
                    r(dst),
                    r(src),
                    off,
                    0,
                ));
            }
            Insn::Store {
                size,
                dst,
                off,
                src,
            } => out.push(match src {
                Src::Reg(s) => {
                    RawInsn::new(CLASS_STX | MODE_MEM | size.code(), r(dst), r(s), off, 0)
                }
                Src::Imm(i) => RawInsn::new(CLASS_ST | MODE_MEM | size.code(), r(dst), 0, off, i),
            }),
            Insn::Atomic {
                size,
                op,
                dst,
                src,
                off,
            } => out.push(RawInsn::new(
                CLASS_STX | MODE_ATOMIC | size.code(),
                r(dst),
                r(src),
                off,
                op.imm(),
            )),
            Insn::LdImm64 { dst, imm } => {
                out.push(RawInsn::new(
                    CLASS_LD | MODE_IMM | Size::DW.code(),
                    r(dst),
                    0,
                    0,
                    imm as i32,
                ));
                out.push(RawInsn::new(0, 0, 0, 0, (imm >> 32) as i32));
            }
            Insn::LdMapFd { dst, fd } => {
                out.push(RawInsn::new(
                    CLASS_LD | MODE_IMM | Size::DW.code(),
                    r(dst),
                    BPF_PSEUDO_MAP_FD,
                    0,
                    fd,
                ));
                out.push(RawInsn::new(0, 0, 0, 0, 0));
            }
            Insn::LdMapValue { dst, fd, off } => {
                out.push(RawInsn::new(
                    CLASS_LD | MODE_IMM | Size::DW.code(),
                    r(dst),
                    BPF_PSEUDO_MAP_VALUE,
                    0,
                    fd,
                ));
                out.push(RawInsn::new(0, 0, 0, 0, off as i32));
            }
            Insn::Ja { off } => out.push(RawInsn::new(CLASS_JMP | OP_JA, 0, 0, off, 0)),
            Insn::JaLong { imm } => out.push(RawInsn::new(CLASS_JMP32 | OP_JA, 0, 0, 0, imm)),
            Insn::Jmp {
                wide,
                cond,
                dst,
                src,
                off,
            } => {
                let class = if wide { CLASS_JMP } else { CLASS_JMP32 };
                out.push(match src {
                    Src::Reg(s) => RawInsn::new(class | SRC_X | cond.code(), r(dst), r(s), off, 0),
                    Src::Imm(i) => RawInsn::new(class | cond.code(), r(dst), 0, off, i),
                });
            }
            Insn::Call { helper } => out.push(RawInsn::new(CLASS_JMP | OP_CALL, 0, 0, 0, helper)),
            Insn::Exit => out.push(RawInsn::new(CLASS_JMP | OP_EXIT, 0, 0, 0, 0)),
        }
    }

    /// Decodes the instruction starting at `slots[at]`.
    pub fn decode_at(slots: &[RawInsn], at: usize) -> Result<Insn, DecodeError> {
        let raw = slots[at];
        let reg = |n: u8| Reg::new(n).ok_or(DecodeError::BadRegister { slot: at, reg: n });
        let unknown = DecodeError::UnknownOpcode {
            slot: at,
            code: raw.code,
        };
        let bad = |what| DecodeError::BadField { slot: at, what };
        let class = raw.code & 0x07;
        match class {
            CLASS_ALU | CLASS_ALU64 => {
                let wide = class == CLASS_ALU64;
                let dst = reg(raw.dst())?;
                let x = raw.code & SRC_X != 0;
                let src = if x {
                    Src::Reg(reg(raw.src())?)
                } else {
                    Src::Imm(raw.imm)
                };
                let opc = raw.code & 0xf0;
                let op = match (opc, raw.off) {
                    (0x00, 0) => AluOp::Add,
                    (0x10, 0) => AluOp::Sub,
                    (0x20, 0) => AluOp::Mul,
                    (0x30, 0) => AluOp::Div,
                    (0x30, 1) => AluOp::SDiv,
                    (0x40, 0) => AluOp::Or,
                    (0x50, 0) => AluOp::And,
                    (0x60, 0) => AluOp::Lsh,
                    (0x70, 0) => AluOp::Rsh,
                    (0x90, 0) => AluOp::Mod,
                    (0x90, 1) => AluOp::SMod,
                    (0xa0, 0) => AluOp::Xor,
                    (0xb0, 0) => AluOp::Mov,
                    (0xb0, 8 | 16 | 32) if x => {
                        return Ok(Insn::MovSx {
                            wide,
                            dst,
                            src: reg(raw.src())?,
                            bits: raw.off as u8,
                        });
                    }
                    (0xc0, 0) => AluOp::Arsh,
                    (OP_NEG, 0) if !x => return Ok(Insn::Neg { wide, dst }),
                    (OP_END, 0) => {
                        let op = match (wide, x) {
                            (false, false) => Endian::ToLe,
                            (false, true) => Endian::ToBe,
                            (true, false) => Endian::Swap,
                            (true, true) => return Err(unknown),
                        };
                        let bits = match raw.imm {
                            16 | 32 | 64 => raw.imm as u8,
                            _ => return Err(bad("byte swap width must be 16, 32 or 64")),
                        };
                        return Ok(Insn::End { op, dst, bits });
                    }
                    _ => return Err(unknown),
                };
                Ok(Insn::Alu { wide, op, dst, src })
            }
            CLASS_JMP | CLASS_JMP32 => {
                let wide = class == CLASS_JMP;
                let opc = raw.code & 0xf0;
                match opc {
                    OP_JA if raw.code & SRC_X == 0 => {
                        if wide {
                            Ok(Insn::Ja { off: raw.off })
                        } else {
                            Ok(Insn::JaLong { imm: raw.imm })
                        }
                    }
                    OP_CALL if wide && raw.code & SRC_X == 0 => Ok(Insn::Call { helper: raw.imm }),
                    OP_EXIT if wide && raw.code & SRC_X == 0 => Ok(Insn::Exit),
                    _ => {
                        let cond = JmpCond::from_code(opc).ok_or(unknown)?;
                        let dst = reg(raw.dst())?;
                        let src = if raw.code & SRC_X != 0 {
                            Src::Reg(reg(raw.src())?)
                        } else {
                            Src::Imm(raw.imm)
                        };
                        Ok(Insn::Jmp {
                            wide,
                            cond,
                            dst,
                            src,
                            off: raw.off,
                        })
                    }
                }
            }
            CLASS_LDX => {
                let size = Size::from_code(raw.code);
                let signed = match raw.code & 0xe0 {
                    MODE_MEM => false,
                    MODE_MEMSX if size != Size::DW => true,
                    _ => return Err(unknown),
                };
                Ok(Insn::Load {
                    size,
                    signed,
                    dst: reg(raw.dst())?,
                    src: reg(raw.src())?,
                    off: raw.off,
                })
            }
            CLASS_ST if raw.code & 0xe0 == MODE_MEM => Ok(Insn::Store {
                size: Size::from_code(raw.code),
                dst: reg(raw.dst())?,
                off: raw.off,
                src: Src::Imm(raw.imm),
            }),
            CLASS_STX => {
                let size = Size::from_code(raw.code);
                match raw.code & 0xe0 {
                    MODE_MEM => Ok(Insn::Store {
                        size,
                        dst: reg(raw.dst())?,
                        off: raw.off,
                        src: Src::Reg(reg(raw.src())?),
                    }),
                    MODE_ATOMIC if matches!(size, Size::W | Size::DW) => Ok(Insn::Atomic {
                        size,
                        op: AtomicOp::from_imm(raw.imm).ok_or(bad("unknown atomic operation"))?,
                        dst: reg(raw.dst())?,
                        src: reg(raw.src())?,
                        off: raw.off,
                    }),
                    _ => Err(unknown),
                }
            }
            CLASS_LD if raw.code == CLASS_LD | MODE_IMM | Size::DW.code() => {
                let next = *slots
                    .get(at + 1)
                    .ok_or(DecodeError::TruncatedLdImm64 { slot: at })?;
                let dst = reg(raw.dst())?;
                match raw.src() {
                    0 => Ok(Insn::LdImm64 {
                        dst,
                        imm: i64::from(raw.imm as u32) | (i64::from(next.imm) << 32),
                    }),
                    BPF_PSEUDO_MAP_FD => Ok(Insn::LdMapFd { dst, fd: raw.imm }),
                    BPF_PSEUDO_MAP_VALUE => Ok(Insn::LdMapValue {
                        dst,
                        fd: raw.imm,
                        off: next.imm as u32,
                    }),
                    _ => Err(bad("unsupported pseudo source of a 64-bit immediate load")),
                }
            }
            _ => Err(unknown),
        }
    }
}

/// Encodes a sequence of instructions into kernel slots.
pub fn encode(insns: &[Insn]) -> Vec<RawInsn> {
    let mut out = Vec::with_capacity(insns.len() + 4);
    for insn in insns {
        insn.encode(&mut out);
    }
    out
}

/// Decodes a whole slot sequence. Returns each instruction with the index of its first
/// slot.
pub fn decode(slots: &[RawInsn]) -> Result<Vec<(usize, Insn)>, DecodeError> {
    let mut out = Vec::with_capacity(slots.len());
    let mut at = 0;
    while at < slots.len() {
        let insn = Insn::decode_at(slots, at)?;
        out.push((at, insn));
        at += insn.slots();
    }
    Ok(out)
}

/// The slots as the byte image `bpf(BPF_PROG_LOAD)` expects.
pub fn to_bytes(slots: &[RawInsn]) -> Vec<u8> {
    slots.iter().flat_map(|s| s.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(insn: Insn) {
        let mut out = Vec::new();
        insn.encode(&mut out);
        assert_eq!(out.len(), insn.slots());
        let back = Insn::decode_at(&out, 0).expect("decodes");
        assert_eq!(back, insn, "raw {out:?}");
    }

    #[test]
    fn known_encodings() {
        // r0 = 2 ; exit
        let slots = encode(&[
            Insn::Alu {
                wide: true,
                op: AluOp::Mov,
                dst: Reg::R0,
                src: Src::Imm(2),
            },
            Insn::Exit,
        ]);
        assert_eq!(
            to_bytes(&slots),
            [0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]
        );
        // r2 = *(u32 *)(r8 + 12)
        let slots = encode(&[Insn::Load {
            size: Size::W,
            signed: false,
            dst: Reg::R2,
            src: Reg::R8,
            off: 12,
        }]);
        assert_eq!(to_bytes(&slots), [0x61, 0x82, 12, 0, 0, 0, 0, 0]);
        // r1 = map_value(fd 5) + 16
        let slots = encode(&[Insn::LdMapValue {
            dst: Reg::R1,
            fd: 5,
            off: 16,
        }]);
        assert_eq!(
            to_bytes(&slots),
            [0x18, 0x21, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0]
        );
    }

    #[test]
    fn every_form_roundtrips() {
        let regs = [Reg::R0, Reg::R3, Reg::R9, Reg::R10];
        let alu = [
            AluOp::Add,
            AluOp::Sub,
            AluOp::Mul,
            AluOp::Div,
            AluOp::SDiv,
            AluOp::Or,
            AluOp::And,
            AluOp::Lsh,
            AluOp::Rsh,
            AluOp::Mod,
            AluOp::SMod,
            AluOp::Xor,
            AluOp::Mov,
            AluOp::Arsh,
        ];
        for wide in [false, true] {
            for op in alu {
                for src in [Src::Imm(-7), Src::Reg(Reg::R4)] {
                    roundtrip(Insn::Alu {
                        wide,
                        op,
                        dst: Reg::R1,
                        src,
                    });
                }
            }
            roundtrip(Insn::Neg { wide, dst: Reg::R2 });
            for bits in [8, 16, 32] {
                roundtrip(Insn::MovSx {
                    wide,
                    dst: Reg::R1,
                    src: Reg::R2,
                    bits,
                });
            }
        }
        for op in [Endian::ToLe, Endian::ToBe, Endian::Swap] {
            for bits in [16, 32, 64] {
                roundtrip(Insn::End {
                    op,
                    dst: Reg::R5,
                    bits,
                });
            }
        }
        for size in [Size::B, Size::H, Size::W, Size::DW] {
            for &r in &regs {
                roundtrip(Insn::Load {
                    size,
                    signed: false,
                    dst: Reg::R1,
                    src: r,
                    off: -8,
                });
                roundtrip(Insn::Store {
                    size,
                    dst: r,
                    off: 3,
                    src: Src::Imm(-1),
                });
                roundtrip(Insn::Store {
                    size,
                    dst: r,
                    off: 3,
                    src: Src::Reg(Reg::R2),
                });
            }
            if size != Size::DW {
                roundtrip(Insn::Load {
                    size,
                    signed: true,
                    dst: Reg::R1,
                    src: Reg::R2,
                    off: 0,
                });
            }
        }
        for size in [Size::W, Size::DW] {
            for op in [
                AtomicOp::Add,
                AtomicOp::Or,
                AtomicOp::And,
                AtomicOp::Xor,
                AtomicOp::FetchAdd,
                AtomicOp::FetchOr,
                AtomicOp::FetchAnd,
                AtomicOp::FetchXor,
                AtomicOp::Xchg,
                AtomicOp::CmpXchg,
            ] {
                roundtrip(Insn::Atomic {
                    size,
                    op,
                    dst: Reg::R8,
                    src: Reg::R1,
                    off: 16,
                });
            }
        }
        roundtrip(Insn::LdImm64 {
            dst: Reg::R3,
            imm: i64::MIN + 12345,
        });
        roundtrip(Insn::LdImm64 {
            dst: Reg::R3,
            imm: 0xffff_ffff,
        });
        roundtrip(Insn::LdMapFd {
            dst: Reg::R1,
            fd: 9,
        });
        roundtrip(Insn::LdMapValue {
            dst: Reg::R8,
            fd: 9,
            off: 4000,
        });
        roundtrip(Insn::Ja { off: -3 });
        roundtrip(Insn::JaLong { imm: 100_000 });
        for wide in [false, true] {
            for cond in [
                JmpCond::Eq,
                JmpCond::Gt,
                JmpCond::Ge,
                JmpCond::Set,
                JmpCond::Ne,
                JmpCond::SGt,
                JmpCond::SGe,
                JmpCond::Lt,
                JmpCond::Le,
                JmpCond::SLt,
                JmpCond::SLe,
            ] {
                for src in [Src::Imm(i32::MIN), Src::Reg(Reg::R7)] {
                    roundtrip(Insn::Jmp {
                        wide,
                        cond,
                        dst: Reg::R6,
                        src,
                        off: i16::MAX,
                    });
                }
            }
        }
        roundtrip(Insn::Call { helper: 5 });
        roundtrip(Insn::Exit);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            Insn::decode_at(&[RawInsn::new(0xff, 0, 0, 0, 0)], 0),
            Err(DecodeError::UnknownOpcode { code: 0xff, .. })
        ));
        assert!(matches!(
            Insn::decode_at(&[RawInsn::new(0xb7, 11, 0, 0, 0)], 0),
            Err(DecodeError::BadRegister { reg: 11, .. })
        ));
        assert!(matches!(
            decode(&[RawInsn::new(0x18, 1, 0, 0, 0)]),
            Err(DecodeError::TruncatedLdImm64 { slot: 0 })
        ));
        assert!(matches!(
            Insn::decode_at(&[RawInsn::new(0xd4, 1, 0, 0, 24)], 0),
            Err(DecodeError::BadField { .. })
        ));
    }

    #[test]
    fn negate_and_swap_are_involutions() {
        for cond in [
            JmpCond::Eq,
            JmpCond::Gt,
            JmpCond::Ge,
            JmpCond::Ne,
            JmpCond::SGt,
            JmpCond::SGe,
            JmpCond::Lt,
            JmpCond::Le,
            JmpCond::SLt,
            JmpCond::SLe,
        ] {
            assert_eq!(cond.negate().and_then(JmpCond::negate), Some(cond));
            assert_eq!(cond.swap().swap(), cond);
        }
    }
}
