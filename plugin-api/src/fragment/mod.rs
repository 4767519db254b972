//! The fragment format: what a device plugin hands to the host's linker.
//!
//! A [`Fragment`] is data: eBPF instructions with final registers, the [`Relocation`]s
//! that tie them to variables, stack slots and helpers, and the [`VarDecl`]s of those
//! variables. The contract (register roles, stack layout, relocation kinds, binary
//! encoding) is `docs/fragment-abi.md`; this module implements its types, [`encoding`]
//! its byte form.

pub mod encoding;

use crate::ebpf::insn::RawInsn;

/// Version of the fragment format described in `docs/fragment-abi.md`. Independent of
/// the Rust ABI: fragments cross the plugin boundary as bytes.
pub const FRAGMENT_FORMAT_VERSION: u16 = 1;

/// Bytes at the top of the stack frame the prologue reserves (cycle time, context).
pub const PROLOGUE_STACK: i16 = 16;

/// Stack offset (from r10) of the cycle time the prologue stores.
pub const CYCLE_TIME_SLOT: i16 = -8;

/// Stack offset (from r10) of the saved `xdp_md` context pointer.
pub const CTX_SLOT: i16 = -16;

/// Largest stack an eBPF program may use.
pub const MAX_STACK: u32 = 512;

/// Helpers a fragment may call (`enum bpf_func_id`).
pub mod helper {
    /// `u64 bpf_ktime_get_ns(void)`
    pub const KTIME_GET_NS: i32 = 5;
    /// `u32 bpf_get_prandom_u32(void)`
    pub const GET_PRANDOM_U32: i32 = 7;
    /// `u64 bpf_ktime_get_boot_ns(void)`
    pub const KTIME_GET_BOOT_NS: i32 = 125;
    /// Every helper a fragment may call.
    pub const ALLOWED: [i32; 3] = [KTIME_GET_NS, GET_PRANDOM_U32, KTIME_GET_BOOT_NS];
}

/// Byte order of a value in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    /// Least significant byte first (EtherCAT process data, host memory).
    #[default]
    Little,
    /// Most significant byte first (network order).
    Big,
}

/// Type of a variable as the generated code sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarType {
    /// Unsigned 8 bits.
    U8,
    /// Unsigned 16 bits.
    U16,
    /// Unsigned 32 bits.
    U32,
    /// Unsigned 64 bits.
    U64,
    /// Signed 8 bits.
    I8,
    /// Signed 16 bits.
    I16,
    /// Signed 32 bits.
    I32,
    /// Signed 64 bits.
    I64,
    /// A truth value: one bit in the packet, one byte in device memory.
    Bool,
    /// An unsigned bit field of 1..=57 bits in the packet.
    Bits(u8),
}

impl ScalarType {
    /// Width in bits as it lies in the packet.
    pub const fn packet_bits(self) -> u32 {
        match self {
            ScalarType::U8 | ScalarType::I8 => 8,
            ScalarType::U16 | ScalarType::I16 => 16,
            ScalarType::U32 | ScalarType::I32 => 32,
            ScalarType::U64 | ScalarType::I64 => 64,
            ScalarType::Bool => 1,
            ScalarType::Bits(n) => n as u32,
        }
    }

    /// Width in bytes as it lies in device-variable memory (bit fields are not allowed
    /// there; a bool takes one byte).
    pub const fn memory_bytes(self) -> u32 {
        match self {
            ScalarType::Bool | ScalarType::Bits(_) => 1,
            other => other.packet_bits() / 8,
        }
    }

    /// Whether the type is signed.
    pub const fn is_signed(self) -> bool {
        matches!(
            self,
            ScalarType::I8 | ScalarType::I16 | ScalarType::I32 | ScalarType::I64
        )
    }

    /// Whether the type occupies a sub-byte bit field in the packet.
    pub const fn is_bit_field(self) -> bool {
        matches!(self, ScalarType::Bool | ScalarType::Bits(_))
    }
}

/// A variable's type with its byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VarType {
    /// The scalar type.
    pub scalar: ScalarType,
    /// Byte order (meaningful for multi-byte packet fields).
    pub order: ByteOrder,
}

impl VarType {
    /// A little-endian variable of `scalar` type.
    pub const fn le(scalar: ScalarType) -> VarType {
        VarType {
            scalar,
            order: ByteOrder::Little,
        }
    }

    /// A big-endian variable of `scalar` type.
    pub const fn be(scalar: ScalarType) -> VarType {
        VarType {
            scalar,
            order: ByteOrder::Big,
        }
    }
}

/// Where a declared variable lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VarKind {
    /// A field of the process image in the cyclic frame, reached through a terminal link.
    Terminal {
        /// The device's name for the terminal link (e.g. `"stepper"`).
        link: String,
        /// Whether the configuration may leave the link unconnected.
        optional: bool,
    },
    /// A variable of this device in the group's variable block.
    Device,
    /// A variable of another device of the same sync group, reached through a device link.
    Foreign {
        /// The device's name for the device link (e.g. `"leader"`).
        link: String,
    },
}

/// One variable a fragment touches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VarDecl {
    /// Where it lives.
    pub kind: VarKind,
    /// Its name (the terminal driver's, this device's, or the other device's).
    pub name: String,
    /// Its type as the fragment's code assumes it.
    pub ty: VarType,
}

/// Which field of an instruction a relocation patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The signed 16-bit `off` field.
    Off,
    /// The signed 32-bit `imm` field.
    Imm,
}

/// What a relocation resolves to (see the table in `docs/fragment-abi.md`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RelocKind {
    /// `off += byte offset of terminal variable `var` from the packet base (r9)`.
    TerminalByte(u32),
    /// `imm += bit position (0..7) of terminal variable `var` in its first byte`.
    TerminalBitShift(u32),
    /// `imm += ((1 << n) - 1) << bit` for bit-field terminal variable `var`.
    TerminalBitMask(u32),
    /// `imm += !(((1 << n) - 1) << bit)` (as 32 bits) for bit-field terminal variable `var`.
    TerminalBitClear(u32),
    /// `off += offset of (foreign) device variable `var` from the variable base (r8)`.
    DeviceVar(u32),
    /// `off += -PROLOGUE_STACK`: a slot of the fragment's own stack frame.
    Stack,
    /// `imm += helper id`, after the linker checked it is allowed.
    Helper(i32),
    /// The `len` slots starting at the relocation's instruction exist only if terminal
    /// link `link` is connected; otherwise the linker deletes them.
    Optional {
        /// The terminal link the region depends on.
        link: String,
        /// Length of the region in slots.
        len: u32,
    },
}

impl RelocKind {
    /// The field this kind patches, or `None` for [`RelocKind::Optional`].
    pub const fn field(&self) -> Option<Field> {
        match self {
            RelocKind::TerminalByte(_) | RelocKind::DeviceVar(_) | RelocKind::Stack => {
                Some(Field::Off)
            }
            RelocKind::TerminalBitShift(_)
            | RelocKind::TerminalBitMask(_)
            | RelocKind::TerminalBitClear(_)
            | RelocKind::Helper(_) => Some(Field::Imm),
            RelocKind::Optional { .. } => None,
        }
    }
}

/// One relocation: instruction `insn` (a slot index) is patched as `kind` says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Relocation {
    /// Slot index of the patched instruction within the fragment.
    pub insn: u32,
    /// What it resolves to.
    pub kind: RelocKind,
}

/// A device's contribution to a sync group's program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Name used in every error about this fragment (normally the device's name).
    pub name: String,
    /// Whether the fragment reads the cycle time at `r10 - 8` (the prologue then
    /// reads the clock).
    pub uses_cycle_time: bool,
    /// Whether the fragment sets r0 to a verdict before leaving (an early `exit` in a
    /// standalone program); a sync group refuses such fragments.
    pub sets_verdict: bool,
    /// Bytes of stack the fragment uses below its frame base (a multiple of 8).
    pub frame_size: u32,
    /// End (exclusive) of the furthest fixed-offset packet access, `r9`-relative, made
    /// without a relocation (generic XDP programs).
    pub fixed_packet_len: u32,
    /// Every variable the fragment touches; relocations index this list.
    pub vars: Vec<VarDecl>,
    /// The instructions, with final registers, as kernel slots.
    pub insns: Vec<RawInsn>,
    /// The relocations, in any order.
    pub relocs: Vec<Relocation>,
}
