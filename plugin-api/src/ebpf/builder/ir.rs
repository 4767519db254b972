//! The builder's arena: expression and condition nodes, places (what a variable is and
//! where it lives), and the constant folding that follows eBPF's arithmetic.

use crate::fragment::{ByteOrder, ScalarType, VarType};

/// A binary arithmetic or bitwise operation of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Shl,
    Shr,
    And,
    Or,
    Xor,
}

impl BinOp {
    /// Whether `a op b == b op a`.
    pub(crate) fn commutative(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Mul | BinOp::And | BinOp::Or | BinOp::Xor
        )
    }
}

/// A comparison of two expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Rel {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Rel {
    /// Whether `a rel b` holds for the 64-bit values `a`, `b` (signed or unsigned).
    pub(crate) fn holds(self, signed: bool, a: i64, b: i64) -> bool {
        let ord = if signed {
            a.cmp(&b)
        } else {
            (a as u64).cmp(&(b as u64))
        };
        match self {
            Rel::Eq => ord.is_eq(),
            Rel::Ne => ord.is_ne(),
            Rel::Gt => ord.is_gt(),
            Rel::Ge => ord.is_ge(),
            Rel::Lt => ord.is_lt(),
            Rel::Le => ord.is_le(),
        }
    }
}

/// What an expression node computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum NodeKind {
    Const(i64),
    /// The current value of a place.
    Read(u32),
    Bin(BinOp, u32, u32),
    Neg(u32),
    /// Bitwise not.
    Not(u32),
    Abs(u32),
    MinMax {
        max: bool,
        a: u32,
        b: u32,
    },
    /// The same value with another signedness.
    Same(u32),
    /// 1 if the condition holds, else 0.
    CondValue(u32),
    /// The result of a helper call (no arguments).
    Call(i32),
    /// The prologue's clock read at `r10 - 8`.
    CycleTime,
}

/// One expression node with the facts code generation needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) signed: bool,
    /// Registers needed to evaluate it (Sethi–Ullman estimate).
    pub(crate) need: u8,
    /// Whether evaluating it calls a helper.
    pub(crate) call: bool,
    /// Whether its value is always 0 or 1.
    pub(crate) bool01: bool,
}

/// What a condition node tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CondKind {
    Const(bool),
    Cmp(Rel, u32, u32),
    And(u32, u32),
    Or(u32, u32),
    Not(u32),
    /// The expression is not zero.
    Truthy(u32),
    /// A one-bit packet field is set (tested with `jset` on its load window).
    BitSet(u32),
}

/// One condition node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CondNode {
    pub(crate) kind: CondKind,
    pub(crate) need: u8,
    pub(crate) call: bool,
}

/// Bit position of a bit field inside its load window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BitPos {
    /// Known when building (fixed packet fields): position of the field's least
    /// significant bit in the window value (after byte-order conversion).
    Known(u32),
    /// Known at link time: `TerminalBitShift`/`Mask`/`Clear` of this declaration.
    Reloc(u32),
}

/// Where a place lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PlaceKind {
    /// A terminal variable (declaration index); `optional` is the link if it may be
    /// absent.
    Terminal { decl: u32, optional: Option<String> },
    /// A device or foreign device variable (declaration index).
    Device { decl: u32 },
    /// A whole-byte packet field at a fixed offset from r9.
    Packet { offset: u32 },
    /// A bit field of the packet at a fixed position: `window` bytes loaded at
    /// `offset`, field at bit `pos` of the window value (after byte-order conversion).
    PacketBits { offset: u32, window: u32, pos: u32 },
    /// A local (index into the builder's locals).
    Local(u32),
}

/// A variable: its type and where it lives.
#[derive(Clone, Debug)]
pub(crate) struct Place {
    pub(crate) ty: VarType,
    pub(crate) kind: PlaceKind,
    /// Human-readable name for errors.
    pub(crate) name: String,
}

impl Place {
    /// Whether the place is packet memory (terminal variable or fixed packet field).
    pub(crate) fn is_packet(&self) -> bool {
        matches!(
            self.kind,
            PlaceKind::Terminal { .. } | PlaceKind::Packet { .. } | PlaceKind::PacketBits { .. }
        )
    }
}

/// Smallest load window (bytes) holding `n + 7` bits: a terminal bit field may start at
/// any bit of its first byte (docs/fragment-abi.md, *Types*).
pub(crate) fn terminal_window(n: u32) -> u32 {
    match n + 7 {
        0..=8 => 1,
        9..=16 => 2,
        17..=32 => 4,
        _ => 8,
    }
}

/// Width in bits of a scalar value as a register holds it after normalisation.
pub(crate) fn value_bits(ty: ScalarType) -> u32 {
    match ty {
        ScalarType::Bool => 1,
        ScalarType::Bits(n) => u32::from(n),
        other => other.packet_bits(),
    }
}

/// `v` truncated to `ty` and extended back to 64 bits, as storing and reloading a
/// variable of that type does.
pub(crate) fn normalise(ty: ScalarType, v: i64) -> i64 {
    match ty {
        ScalarType::U8 => v & 0xff,
        ScalarType::U16 => v & 0xffff,
        ScalarType::U32 => v & 0xffff_ffff,
        ScalarType::I8 => i64::from(v as i8),
        ScalarType::I16 => i64::from(v as i16),
        ScalarType::I32 => i64::from(v as i32),
        ScalarType::U64 | ScalarType::I64 => v,
        ScalarType::Bool => i64::from(v != 0),
        ScalarType::Bits(n) => {
            if n >= 64 {
                v
            } else {
                v & ((1i64 << n) - 1)
            }
        }
    }
}

/// `op` on 64-bit values with eBPF's semantics: wrapping, `x / 0 == 0`, `x % 0 == x`,
/// `MIN / -1 == MIN`, `MIN % -1 == 0`, shift amounts masked to 6 bits; signed division,
/// remainder and right shift if `signed`.
pub(crate) fn eval_bin(op: BinOp, signed: bool, a: i64, b: i64) -> i64 {
    match op {
        BinOp::Add => a.wrapping_add(b),
        BinOp::Sub => a.wrapping_sub(b),
        BinOp::Mul => a.wrapping_mul(b),
        BinOp::Div => {
            if b == 0 {
                0
            } else if signed {
                a.wrapping_div(b)
            } else {
                ((a as u64) / (b as u64)) as i64
            }
        }
        BinOp::Rem => {
            if b == 0 {
                a
            } else if signed {
                a.wrapping_rem(b)
            } else {
                ((a as u64) % (b as u64)) as i64
            }
        }
        BinOp::Shl => a.wrapping_shl((b & 63) as u32),
        BinOp::Shr => {
            if signed {
                a >> (b & 63)
            } else {
                ((a as u64) >> (b & 63)) as i64
            }
        }
        BinOp::And => a & b,
        BinOp::Or => a | b,
        BinOp::Xor => a ^ b,
    }
}

/// Whether a value fits the sign-extended 32-bit immediate of an instruction.
pub(crate) fn fits_imm(v: i64) -> bool {
    i32::try_from(v).is_ok()
}

/// Whether the byte order of `ty` is big endian and it spans more than one byte.
pub(crate) fn swapped(ty: VarType, bytes: u32) -> bool {
    ty.order == ByteOrder::Big && bytes > 1
}
