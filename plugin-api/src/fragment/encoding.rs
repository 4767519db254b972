//! The byte form of a [`Fragment`](super::Fragment) (`docs/fragment-abi.md`, "Format
//! version and encoding"): how fragments cross the plugin boundary.
//!
//! [`Fragment::to_bytes`] writes the format; [`Fragment::from_bytes`] reads it and
//! validates everything (magic, version, lengths, UTF-8, enumeration values, indices in
//! range, relocations on instructions of the right shape), reporting the first problem
//! with its byte position. [`Fragment::check`] runs the same structural checks on a
//! fragment built in memory and returns every problem, which is what the linker uses.
//! Damaged bytes give an error, never a panic.

use super::{
    ByteOrder, FRAGMENT_FORMAT_VERSION, Fragment, RelocKind, Relocation, ScalarType, VarDecl,
    VarKind, VarType,
};
use crate::ebpf::insn::{DecodeError, Insn, RawInsn, Reg, Src};

/// The four bytes every encoded fragment starts with.
pub const MAGIC: [u8; 4] = *b"FCFR";

/// Every format version this crate reads.
pub const SUPPORTED_VERSIONS: &[u16] = &[FRAGMENT_FORMAT_VERSION];

/// Flag bit: the fragment reads the cycle time.
const FLAG_USES_CYCLE_TIME: u16 = 1 << 0;
/// Flag bit: the fragment sets a verdict in r0.
const FLAG_SETS_VERDICT: u16 = 1 << 1;
const KNOWN_FLAGS: u16 = FLAG_USES_CYCLE_TIME | FLAG_SETS_VERDICT;

/// Largest `n` of a `bits(n)` type (docs/fragment-abi.md, "Types").
pub const MAX_BIT_FIELD: u8 = 57;

/// Why bytes are not a valid encoded fragment. Positions are byte offsets into the
/// input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragmentDecodeError {
    /// The input ends inside a field.
    #[error("fragment bytes end at byte {at} inside {what}")]
    Truncated {
        /// Offset where the field starts.
        at: usize,
        /// The field.
        what: &'static str,
    },
    /// The first four bytes are not `FCFR`.
    #[error("not a ferrocat fragment: magic is {found:02x?}, expected \"FCFR\"")]
    BadMagic {
        /// The bytes found.
        found: Vec<u8>,
    },
    /// A format version this host does not know.
    #[error(
        "fragment {} has format version {version}; this host links versions {supported:?}",
        name.as_deref().map_or("(unnamed)".to_string(), |n| format!("{n:?}"))
    )]
    UnsupportedVersion {
        /// The fragment's name, if the bytes after the version could be read as one.
        name: Option<String>,
        /// The version found.
        version: u16,
        /// The versions this host links.
        supported: &'static [u16],
    },
    /// A string is not UTF-8.
    #[error("byte {at}: {what} is not UTF-8")]
    BadUtf8 {
        /// Offset of the string's length prefix.
        at: usize,
        /// Which string.
        what: &'static str,
    },
    /// A field holds a value the format does not allow.
    #[error("byte {at}: {what}")]
    BadValue {
        /// Offset of the field.
        at: usize,
        /// What is wrong.
        what: String,
    },
    /// The fields decode but the fragment is inconsistent.
    #[error("byte {at}: fragment {name:?}: {error}")]
    Invalid {
        /// Offset of the item at fault (the instruction or relocation record).
        at: usize,
        /// The fragment's name.
        name: String,
        /// The problem.
        error: FragmentCheckError,
    },
    /// Bytes follow the last relocation.
    #[error("{extra} unexpected bytes after the fragment at byte {at}")]
    TrailingBytes {
        /// Offset of the first extra byte.
        at: usize,
        /// How many.
        extra: usize,
    },
}

/// A structural problem of a fragment: something no linking could fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragmentCheckError {
    /// The frame size is not a multiple of 8.
    #[error("frame size {0} is not a multiple of 8")]
    FrameSize(u32),
    /// An instruction does not decode.
    #[error("instruction does not decode: {0}")]
    Insn(DecodeError),
    /// A variable declaration is inconsistent.
    #[error("variable {index} ({name:?}): {what}")]
    Var {
        /// Index in the declarations.
        index: usize,
        /// The variable's name.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// A relocation is out of range or on an instruction of the wrong shape.
    #[error("relocation {index} at slot {insn}: {what}")]
    Reloc {
        /// Index in the relocations.
        index: usize,
        /// The slot it names.
        insn: u32,
        /// What is wrong.
        what: String,
    },
}

fn type_code(t: ScalarType) -> (u8, u8) {
    match t {
        ScalarType::U8 => (0, 0),
        ScalarType::U16 => (1, 0),
        ScalarType::U32 => (2, 0),
        ScalarType::U64 => (3, 0),
        ScalarType::I8 => (4, 0),
        ScalarType::I16 => (5, 0),
        ScalarType::I32 => (6, 0),
        ScalarType::I64 => (7, 0),
        ScalarType::Bool => (8, 0),
        ScalarType::Bits(n) => (9, n),
    }
}

fn type_from_code(code: u8, bits: u8) -> Result<ScalarType, String> {
    let t = match code {
        0 => ScalarType::U8,
        1 => ScalarType::U16,
        2 => ScalarType::U32,
        3 => ScalarType::U64,
        4 => ScalarType::I8,
        5 => ScalarType::I16,
        6 => ScalarType::I32,
        7 => ScalarType::I64,
        8 => ScalarType::Bool,
        9 => {
            return if (1..=MAX_BIT_FIELD).contains(&bits) {
                Ok(ScalarType::Bits(bits))
            } else {
                Err(format!(
                    "bit field width {bits} outside 1..={MAX_BIT_FIELD}"
                ))
            };
        }
        _ => return Err(format!("unknown type code {code}")),
    };
    if bits != 0 {
        return Err(format!(
            "bit count {bits} given for a type that is not bits(n)"
        ));
    }
    Ok(t)
}

/// Wire code of a relocation kind and its argument.
fn reloc_code(kind: &RelocKind) -> (u8, u32, &str) {
    match kind {
        RelocKind::TerminalByte(v) => (0, *v, ""),
        RelocKind::TerminalBitShift(v) => (1, *v, ""),
        RelocKind::TerminalBitMask(v) => (2, *v, ""),
        RelocKind::TerminalBitClear(v) => (3, *v, ""),
        RelocKind::DeviceVar(v) => (4, *v, ""),
        RelocKind::Stack => (5, 0, ""),
        RelocKind::Helper(id) => (6, *id as u32, ""),
        RelocKind::Optional { link, len } => (7, *len, link.as_str()),
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        // Lengths beyond u32 cannot occur for fragments that fit a program; saturate so
        // the decoder reports truncation rather than wrapping silently.
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FragmentDecodeError> {
        let at = self.pos;
        let end = at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(FragmentDecodeError::Truncated { at, what })?;
        self.pos = end;
        Ok(&self.bytes[at..end])
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, FragmentDecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, FragmentDecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, FragmentDecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn str(&mut self, what: &'static str) -> Result<String, FragmentDecodeError> {
        let at = self.pos;
        let n = self.u32(what)? as usize;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| FragmentDecodeError::BadUtf8 { at, what })
    }
    /// A count of records of `min_size` bytes each, refused if the rest of the input
    /// cannot hold them (so damaged counts never cause huge allocations).
    fn count(&mut self, min_size: usize, what: &'static str) -> Result<usize, FragmentDecodeError> {
        let at = self.pos;
        let n = self.u32(what)? as usize;
        let rest = self.bytes.len() - self.pos;
        if n.saturating_mul(min_size) > rest {
            return Err(FragmentDecodeError::Truncated { at, what });
        }
        Ok(n)
    }
}

fn bad(at: usize, what: impl Into<String>) -> FragmentDecodeError {
    FragmentDecodeError::BadValue {
        at,
        what: what.into(),
    }
}

impl Fragment {
    /// The fragment in the binary format of `docs/fragment-abi.md`, version
    /// [`FRAGMENT_FORMAT_VERSION`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64 + self.insns.len() * 8));
        w.0.extend_from_slice(&MAGIC);
        w.u16(FRAGMENT_FORMAT_VERSION);
        let mut flags = 0;
        if self.uses_cycle_time {
            flags |= FLAG_USES_CYCLE_TIME;
        }
        if self.sets_verdict {
            flags |= FLAG_SETS_VERDICT;
        }
        w.u16(flags);
        w.str(&self.name);
        w.u32(self.frame_size);
        w.u32(self.fixed_packet_len);
        w.len(self.vars.len());
        for v in &self.vars {
            let (kind, optional, link) = match &v.kind {
                VarKind::Terminal { link, optional } => (0, u8::from(*optional), link.as_str()),
                VarKind::Device => (1, 0, ""),
                VarKind::Foreign { link } => (2, 0, link.as_str()),
            };
            w.u8(kind);
            w.u8(optional);
            w.str(link);
            w.str(&v.name);
            let (code, bits) = type_code(v.ty.scalar);
            w.u8(code);
            w.u8(bits);
            w.u8(match v.ty.order {
                ByteOrder::Little => 0,
                ByteOrder::Big => 1,
            });
        }
        w.len(self.insns.len());
        for i in &self.insns {
            w.0.extend_from_slice(&i.to_bytes());
        }
        w.len(self.relocs.len());
        for r in &self.relocs {
            w.u32(r.insn);
            let (kind, arg, link) = reloc_code(&r.kind);
            w.u8(kind);
            w.u32(arg);
            w.str(link);
        }
        w.0
    }

    /// Reads a fragment from its binary form, validating everything; the first problem
    /// is reported with its byte position.
    pub fn from_bytes(bytes: &[u8]) -> Result<Fragment, FragmentDecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.take(4, "magic")?;
        if magic != MAGIC {
            return Err(FragmentDecodeError::BadMagic {
                found: magic.to_vec(),
            });
        }
        let version = r.u16("format version")?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            // Best effort: name the fragment if the version-1 header shape still holds.
            let name = r
                .u16("flags")
                .ok()
                .and_then(|_| r.str("fragment name").ok());
            return Err(FragmentDecodeError::UnsupportedVersion {
                name,
                version,
                supported: SUPPORTED_VERSIONS,
            });
        }
        let at = r.pos;
        let flags = r.u16("flags")?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(bad(
                at,
                format!("unknown flag bits {:#06x}", flags & !KNOWN_FLAGS),
            ));
        }
        let name = r.str("fragment name")?;
        let invalid = |at, error| FragmentDecodeError::Invalid {
            at,
            name: name.clone(),
            error,
        };
        let at = r.pos;
        let frame_size = r.u32("frame size")?;
        if frame_size % 8 != 0 {
            return Err(invalid(at, FragmentCheckError::FrameSize(frame_size)));
        }
        let fixed_packet_len = r.u32("fixed packet length")?;
        // kind, optional, two string lengths, type code, bits, order.
        let n_vars = r.count(2 + 4 + 4 + 3, "variable count")?;
        let mut vars = Vec::with_capacity(n_vars);
        for index in 0..n_vars {
            let at = r.pos;
            let kind = r.u8("variable kind")?;
            let optional = r.u8("variable optional flag")?;
            let link = r.str("variable link")?;
            let vname = r.str("variable name")?;
            let tat = r.pos;
            let code = r.u8("variable type")?;
            let bits = r.u8("variable bit count")?;
            let order = r.u8("variable byte order")?;
            let scalar = type_from_code(code, bits)
                .map_err(|e| bad(tat, format!("variable {index} ({vname:?}): {e}")))?;
            let order = match order {
                0 => ByteOrder::Little,
                1 => ByteOrder::Big,
                o => {
                    return Err(bad(
                        tat + 2,
                        format!("variable {index} ({vname:?}): unknown byte order {o}"),
                    ));
                }
            };
            if optional > 1 {
                return Err(bad(
                    at + 1,
                    format!("variable {index} ({vname:?}): optional flag {optional} is not 0 or 1"),
                ));
            }
            let kind = match kind {
                0 => VarKind::Terminal {
                    link,
                    optional: optional == 1,
                },
                1 => VarKind::Device,
                2 => VarKind::Foreign { link },
                k => {
                    return Err(bad(
                        at,
                        format!("variable {index} ({vname:?}): unknown variable kind {k}"),
                    ));
                }
            };
            if optional == 1 && !matches!(kind, VarKind::Terminal { .. }) {
                return Err(bad(
                    at + 1,
                    format!(
                        "variable {index} ({vname:?}): only terminal variables can be optional"
                    ),
                ));
            }
            let decl = VarDecl {
                kind,
                name: vname,
                ty: VarType { scalar, order },
            };
            if let Some(error) = var_problem(index, &decl) {
                return Err(invalid(at, error));
            }
            vars.push(decl);
        }
        let n_insns = r.count(8, "instruction count")?;
        let insns_at = r.pos;
        let mut insns = Vec::with_capacity(n_insns);
        for _ in 0..n_insns {
            let b = r.take(8, "instruction")?;
            let mut s = [0u8; 8];
            s.copy_from_slice(b);
            insns.push(RawInsn::from_bytes(s));
        }
        let starts = match instruction_starts(&insns) {
            Ok(s) => s,
            Err(e) => {
                let slot = decode_error_slot(&e);
                return Err(invalid(insns_at + slot * 8, FragmentCheckError::Insn(e)));
            }
        };
        // insn, kind, arg, link length.
        let n_relocs = r.count(4 + 1 + 4 + 4, "relocation count")?;
        let mut relocs = Vec::with_capacity(n_relocs);
        for index in 0..n_relocs {
            let at = r.pos;
            let insn = r.u32("relocation instruction")?;
            let kind = r.u8("relocation kind")?;
            let arg = r.u32("relocation argument")?;
            let link = r.str("relocation link")?;
            if kind != 7 && !link.is_empty() {
                return Err(bad(
                    at + 9,
                    format!("relocation {index}: a link name is only allowed on Optional"),
                ));
            }
            let kind = match kind {
                0 => RelocKind::TerminalByte(arg),
                1 => RelocKind::TerminalBitShift(arg),
                2 => RelocKind::TerminalBitMask(arg),
                3 => RelocKind::TerminalBitClear(arg),
                4 => RelocKind::DeviceVar(arg),
                5 if arg == 0 => RelocKind::Stack,
                5 => {
                    return Err(bad(
                        at + 5,
                        format!("relocation {index}: Stack takes no argument, got {arg}"),
                    ));
                }
                6 => RelocKind::Helper(arg as i32),
                7 => RelocKind::Optional { link, len: arg },
                k => {
                    return Err(bad(
                        at + 4,
                        format!("relocation {index}: unknown relocation kind {k}"),
                    ));
                }
            };
            let reloc = Relocation { insn, kind };
            if let Some(error) = reloc_problem(index, &reloc, &vars, &insns, &starts) {
                return Err(invalid(at, error));
            }
            relocs.push(reloc);
        }
        if r.pos != bytes.len() {
            return Err(FragmentDecodeError::TrailingBytes {
                at: r.pos,
                extra: bytes.len() - r.pos,
            });
        }
        Ok(Fragment {
            name,
            uses_cycle_time: flags & FLAG_USES_CYCLE_TIME != 0,
            sets_verdict: flags & FLAG_SETS_VERDICT != 0,
            frame_size,
            fixed_packet_len,
            vars,
            insns,
            relocs,
        })
    }

    /// Every structural problem of the fragment: the checks [`Fragment::from_bytes`]
    /// makes, for a fragment built in memory. Empty if the fragment is well formed.
    pub fn check(&self) -> Vec<FragmentCheckError> {
        let mut out = Vec::new();
        if self.frame_size % 8 != 0 {
            out.push(FragmentCheckError::FrameSize(self.frame_size));
        }
        for (index, v) in self.vars.iter().enumerate() {
            out.extend(var_problem(index, v));
        }
        match instruction_starts(&self.insns) {
            Ok(starts) => {
                for (index, r) in self.relocs.iter().enumerate() {
                    out.extend(reloc_problem(index, r, &self.vars, &self.insns, &starts));
                }
            }
            Err(e) => out.push(FragmentCheckError::Insn(e)),
        }
        out
    }
}

fn decode_error_slot(e: &DecodeError) -> usize {
    match *e {
        DecodeError::UnknownOpcode { slot, .. }
        | DecodeError::BadRegister { slot, .. }
        | DecodeError::BadField { slot, .. }
        | DecodeError::TruncatedLdImm64 { slot } => slot,
    }
}

/// For each slot, the decoded instruction starting there (`None` for the second slot of
/// a 64-bit immediate load); the first undecodable slot is an error.
pub fn instruction_starts(insns: &[RawInsn]) -> Result<Vec<Option<Insn>>, DecodeError> {
    let mut out = vec![None; insns.len()];
    let mut at = 0;
    while at < insns.len() {
        let insn = Insn::decode_at(insns, at)?;
        out[at] = Some(insn);
        at += insn.slots();
    }
    Ok(out)
}

fn var_problem(index: usize, v: &VarDecl) -> Option<FragmentCheckError> {
    let what = match &v.kind {
        _ if v.name.is_empty() => "empty variable name",
        VarKind::Terminal { link, .. } | VarKind::Foreign { link } if link.is_empty() => {
            "empty link name"
        }
        VarKind::Device | VarKind::Foreign { .. } if matches!(v.ty.scalar, ScalarType::Bits(_)) => {
            "a device variable cannot be a bit field"
        }
        _ => return None,
    };
    Some(FragmentCheckError::Var {
        index,
        name: v.name.clone(),
        what: what.to_string(),
    })
}

/// The memory access at an instruction: (base register, is atomic).
fn mem_base(insn: &Insn) -> Option<(Reg, bool)> {
    match *insn {
        Insn::Load { src, .. } => Some((src, false)),
        Insn::Store { dst, .. } => Some((dst, false)),
        Insn::Atomic { dst, .. } => Some((dst, true)),
        _ => None,
    }
}

/// Whether the instruction's `imm` is an operand a bit-field relocation may patch.
fn has_imm_operand(insn: &Insn) -> bool {
    matches!(
        insn,
        Insn::Alu {
            src: Src::Imm(_),
            ..
        } | Insn::Jmp {
            src: Src::Imm(_),
            ..
        }
    )
}

fn reloc_problem(
    index: usize,
    r: &Relocation,
    vars: &[VarDecl],
    insns: &[RawInsn],
    starts: &[Option<Insn>],
) -> Option<FragmentCheckError> {
    let err = |what: String| {
        Some(FragmentCheckError::Reloc {
            index,
            insn: r.insn,
            what,
        })
    };
    let slot = r.insn as usize;
    if slot >= insns.len() {
        return err(format!(
            "instruction index beyond the fragment's {} slots",
            insns.len()
        ));
    }
    let Some(insn) = starts[slot] else {
        return err("names the second slot of a 64-bit immediate load".to_string());
    };
    let var = |v: u32| vars.get(v as usize);
    let terminal_var = |v: u32| match var(v) {
        None => Err(format!(
            "variable index {v} beyond the {} declared",
            vars.len()
        )),
        Some(d) if matches!(d.kind, VarKind::Terminal { .. }) => Ok(d),
        Some(d) => Err(format!(
            "variable {v} ({:?}) is not a terminal variable",
            d.name
        )),
    };
    match &r.kind {
        RelocKind::TerminalByte(v) => {
            if let Err(e) = terminal_var(*v) {
                return err(e);
            }
            match mem_base(&insn) {
                Some((base, false)) if base == Reg::R9 => None,
                Some((_, true)) => err("an atomic access cannot address the packet".to_string()),
                _ => err(format!(
                    "TerminalByte needs a load or store based on r9, found `{}`",
                    crate::ebpf::disasm::format_insn(&insn)
                )),
            }
        }
        RelocKind::TerminalBitShift(v)
        | RelocKind::TerminalBitMask(v)
        | RelocKind::TerminalBitClear(v) => {
            match terminal_var(*v) {
                Err(e) => return err(e),
                Ok(d) if !d.ty.scalar.is_bit_field() => {
                    return err(format!(
                        "bit relocation on variable {v} ({:?}) which is not a bit field",
                        d.name
                    ));
                }
                Ok(_) => {}
            }
            if has_imm_operand(&insn) {
                None
            } else {
                err(format!(
                    "a bit relocation needs an instruction with an immediate operand, found `{}`",
                    crate::ebpf::disasm::format_insn(&insn)
                ))
            }
        }
        RelocKind::DeviceVar(v) => {
            match var(*v) {
                None => {
                    return err(format!(
                        "variable index {v} beyond the {} declared",
                        vars.len()
                    ));
                }
                Some(d) if matches!(d.kind, VarKind::Terminal { .. }) => {
                    return err(format!(
                        "variable {v} ({:?}) is a terminal variable, not a device variable",
                        d.name
                    ));
                }
                Some(_) => {}
            }
            match mem_base(&insn) {
                Some((base, _)) if base == Reg::R8 => None,
                _ => err(format!(
                    "DeviceVar needs a memory access based on r8, found `{}`",
                    crate::ebpf::disasm::format_insn(&insn)
                )),
            }
        }
        RelocKind::Stack => match mem_base(&insn) {
            Some((base, _)) if base == Reg::R10 => None,
            _ => err(format!(
                "Stack needs a memory access based on r10, found `{}`",
                crate::ebpf::disasm::format_insn(&insn)
            )),
        },
        RelocKind::Helper(_) => match insn {
            Insn::Call { .. } => None,
            _ => err(format!(
                "Helper needs a call, found `{}`",
                crate::ebpf::disasm::format_insn(&insn)
            )),
        },
        RelocKind::Optional { link, len } => {
            if link.is_empty() {
                return err("Optional region without a link name".to_string());
            }
            let end = slot as u64 + u64::from(*len);
            if end > insns.len() as u64 {
                return err(format!(
                    "Optional region of {len} slots runs past the fragment's {} slots",
                    insns.len()
                ));
            }
            if (end as usize) < insns.len() && starts[end as usize].is_none() {
                return err("Optional region ends inside a 64-bit immediate load".to_string());
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::insn::{AluOp, JmpCond, Size, encode};
    use crate::fragment::helper;
    use proptest::prelude::*;

    fn r(n: u8) -> Reg {
        Reg::new(n).expect("register")
    }

    fn terminal(link: &str, name: &str, scalar: ScalarType, optional: bool) -> VarDecl {
        VarDecl {
            kind: VarKind::Terminal {
                link: link.into(),
                optional,
            },
            name: name.into(),
            ty: VarType::le(scalar),
        }
    }

    fn device(name: &str, scalar: ScalarType) -> VarDecl {
        VarDecl {
            kind: VarKind::Device,
            name: name.into(),
            ty: VarType::le(scalar),
        }
    }

    /// A small fragment using every relocation kind.
    fn sample() -> Fragment {
        let insns = encode(&[
            // 0: r1 = *(u16 *)(r9 + 0)          TerminalByte(0)
            Insn::Load {
                size: Size::H,
                signed: false,
                dst: r(1),
                src: r(9),
                off: 0,
            },
            // 1: r2 = *(u8 *)(r9 + 0)           TerminalByte(1)
            Insn::Load {
                size: Size::B,
                signed: false,
                dst: r(2),
                src: r(9),
                off: 0,
            },
            // 2: r2 >>= 0                        TerminalBitShift(1)
            Insn::Alu {
                wide: true,
                op: AluOp::Rsh,
                dst: r(2),
                src: Src::Imm(0),
            },
            // 3: r2 &= 0                         TerminalBitMask(1)
            Insn::Alu {
                wide: true,
                op: AluOp::And,
                dst: r(2),
                src: Src::Imm(0),
            },
            // 4: *(u16 *)(r8 + 0) = r1           DeviceVar(2)
            Insn::Store {
                size: Size::H,
                dst: r(8),
                off: 0,
                src: Src::Reg(r(1)),
            },
            // 5: *(u64 *)(r10 - 8) = r2          Stack
            Insn::Store {
                size: Size::DW,
                dst: r(10),
                off: -8,
                src: Src::Reg(r(2)),
            },
            // 6: call 0                          Helper(7)
            Insn::Call { helper: 0 },
            // 7: if r0 == 0 goto +1
            Insn::Jmp {
                wide: true,
                cond: JmpCond::Eq,
                dst: r(0),
                src: Src::Imm(0),
                off: 1,
            },
            // 8: r3 = 5                           Optional("opt", 1)
            Insn::Alu {
                wide: true,
                op: AluOp::Mov,
                dst: r(3),
                src: Src::Imm(5),
            },
        ]);
        Fragment {
            name: "motor0".into(),
            uses_cycle_time: true,
            sets_verdict: false,
            frame_size: 8,
            fixed_packet_len: 0,
            vars: vec![
                terminal("stepper", "velocity", ScalarType::U16, false),
                terminal("limits", "low", ScalarType::Bool, true),
                device("speed", ScalarType::U16),
                VarDecl {
                    kind: VarKind::Foreign {
                        link: "leader".into(),
                    },
                    name: "encoder".into(),
                    ty: VarType::be(ScalarType::I32),
                },
            ],
            insns,
            relocs: vec![
                Relocation {
                    insn: 0,
                    kind: RelocKind::TerminalByte(0),
                },
                Relocation {
                    insn: 1,
                    kind: RelocKind::TerminalByte(1),
                },
                Relocation {
                    insn: 2,
                    kind: RelocKind::TerminalBitShift(1),
                },
                Relocation {
                    insn: 3,
                    kind: RelocKind::TerminalBitMask(1),
                },
                Relocation {
                    insn: 4,
                    kind: RelocKind::DeviceVar(2),
                },
                Relocation {
                    insn: 5,
                    kind: RelocKind::Stack,
                },
                Relocation {
                    insn: 6,
                    kind: RelocKind::Helper(helper::GET_PRANDOM_U32),
                },
                Relocation {
                    insn: 8,
                    kind: RelocKind::Optional {
                        link: "limits".into(),
                        len: 1,
                    },
                },
            ],
        }
    }

    #[test]
    fn sample_roundtrips_and_is_well_formed() {
        let f = sample();
        assert_eq!(f.check(), vec![]);
        let bytes = f.to_bytes();
        assert_eq!(&bytes[0..4], b"FCFR");
        assert_eq!(&bytes[4..6], &[1, 0]);
        assert_eq!(&bytes[6..8], &[1, 0], "uses_cycle_time flag");
        assert_eq!(&bytes[8..12], &[6, 0, 0, 0], "name length");
        assert_eq!(&bytes[12..18], b"motor0");
        assert_eq!(Fragment::from_bytes(&bytes), Ok(f));
    }

    #[test]
    fn header_errors() {
        let bytes = sample().to_bytes();
        assert!(matches!(
            Fragment::from_bytes(b"ELF\x7f"),
            Err(FragmentDecodeError::BadMagic { .. })
        ));
        assert_eq!(
            Fragment::from_bytes(&bytes[..5]),
            Err(FragmentDecodeError::Truncated {
                at: 4,
                what: "format version"
            })
        );
        let mut v2 = bytes.clone();
        v2[4] = 2;
        let e = Fragment::from_bytes(&v2).expect_err("version 2");
        assert_eq!(
            e,
            FragmentDecodeError::UnsupportedVersion {
                name: Some("motor0".into()),
                version: 2,
                supported: &[1],
            }
        );
        let text = e.to_string();
        assert!(text.contains("\"motor0\"") && text.contains("version 2") && text.contains("[1]"));
        let mut flags = bytes.clone();
        flags[7] = 0x80;
        assert!(matches!(
            Fragment::from_bytes(&flags),
            Err(FragmentDecodeError::BadValue { at: 6, .. })
        ));
        let mut utf = bytes.clone();
        utf[12] = 0xff;
        assert_eq!(
            Fragment::from_bytes(&utf),
            Err(FragmentDecodeError::BadUtf8 {
                at: 8,
                what: "fragment name"
            })
        );
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            Fragment::from_bytes(&extra),
            Err(FragmentDecodeError::TrailingBytes {
                at: bytes.len(),
                extra: 1
            })
        );
    }

    #[test]
    fn count_larger_than_the_input_is_truncation_not_allocation() {
        let mut f = sample();
        f.vars.clear();
        f.relocs.clear();
        let mut bytes = f.to_bytes();
        // n_insns sits after magic, version, flags, name, frame, fixed len, n_vars.
        let at = 4 + 2 + 2 + 4 + 6 + 4 + 4 + 4;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Fragment::from_bytes(&bytes),
            Err(FragmentDecodeError::Truncated {
                at,
                what: "instruction count"
            })
        );
    }

    fn reloc_error(f: &Fragment) -> String {
        match Fragment::from_bytes(&f.to_bytes()) {
            Err(FragmentDecodeError::Invalid { error, name, .. }) => {
                assert_eq!(name, f.name);
                assert_eq!(f.check(), vec![error.clone()]);
                error.to_string()
            }
            other => panic!("expected an invalid relocation, got {other:?}"),
        }
    }

    #[test]
    fn relocation_errors() {
        let mut f = sample();
        f.relocs[0].insn = 99;
        assert!(reloc_error(&f).contains("beyond the fragment's 9 slots"));

        let mut f = sample();
        f.relocs[0].kind = RelocKind::TerminalByte(7);
        assert!(reloc_error(&f).contains("variable index 7 beyond the 4 declared"));

        let mut f = sample();
        f.relocs[0].kind = RelocKind::TerminalByte(2);
        assert!(reloc_error(&f).contains("is not a terminal variable"));

        let mut f = sample();
        f.relocs[4].kind = RelocKind::DeviceVar(0);
        assert!(reloc_error(&f).contains("is a terminal variable"));

        let mut f = sample();
        f.relocs[0].insn = 2; // an ALU instruction
        assert!(reloc_error(&f).contains("needs a load or store based on r9"));

        let mut f = sample();
        f.relocs[4].insn = 5; // r10-based store
        assert!(reloc_error(&f).contains("based on r8"));

        let mut f = sample();
        f.relocs[5].insn = 4; // r8-based store
        assert!(reloc_error(&f).contains("based on r10"));

        let mut f = sample();
        f.relocs[6].insn = 7;
        assert!(reloc_error(&f).contains("Helper needs a call"));

        let mut f = sample();
        f.relocs[2].insn = 0; // a load has no immediate operand
        assert!(reloc_error(&f).contains("immediate operand"));

        let mut f = sample();
        f.relocs[2].kind = RelocKind::TerminalBitShift(0); // u16, not a bit field
        assert!(reloc_error(&f).contains("not a bit field"));

        let mut f = sample();
        f.relocs[7].kind = RelocKind::Optional {
            link: "limits".into(),
            len: 2,
        };
        assert!(reloc_error(&f).contains("runs past"));

        let mut f = sample();
        f.insns = encode(&[Insn::LdImm64 { dst: r(1), imm: 7 }]);
        f.relocs = vec![Relocation {
            insn: 1,
            kind: RelocKind::Stack,
        }];
        assert!(reloc_error(&f).contains("second slot"));
    }

    #[test]
    fn variable_and_instruction_errors() {
        let mut f = sample();
        f.vars[2].ty = VarType::le(ScalarType::Bits(3));
        assert!(reloc_error(&f).contains("cannot be a bit field"));

        let mut f = sample();
        f.insns[7] = RawInsn::new(0xff, 0, 0, 0, 0);
        assert!(reloc_error(&f).contains("unknown opcode 0xff"));

        let mut f = sample();
        f.frame_size = 12;
        assert!(reloc_error(&f).contains("multiple of 8"));

        // bits(58) cannot be encoded validly.
        let mut f = sample();
        f.vars[1].ty = VarType::le(ScalarType::Bits(58));
        assert!(matches!(
            Fragment::from_bytes(&f.to_bytes()),
            Err(FragmentDecodeError::BadValue { .. })
        ));
    }

    fn scalar() -> impl Strategy<Value = ScalarType> {
        prop_oneof![
            Just(ScalarType::U8),
            Just(ScalarType::U16),
            Just(ScalarType::U32),
            Just(ScalarType::U64),
            Just(ScalarType::I8),
            Just(ScalarType::I16),
            Just(ScalarType::I32),
            Just(ScalarType::I64),
            Just(ScalarType::Bool),
            (1u8..=MAX_BIT_FIELD).prop_map(ScalarType::Bits),
        ]
    }

    fn var() -> impl Strategy<Value = VarDecl> {
        (
            0u8..3,
            any::<bool>(),
            "[a-zé]{1,8}",
            "[a-z_0-9]{1,12}",
            scalar(),
            any::<bool>(),
        )
            .prop_map(|(kind, optional, link, name, mut scalar, big)| {
                let kind = match kind {
                    0 => VarKind::Terminal { link, optional },
                    1 => VarKind::Device,
                    _ => VarKind::Foreign { link },
                };
                if !matches!(kind, VarKind::Terminal { .. })
                    && matches!(scalar, ScalarType::Bits(_))
                {
                    scalar = ScalarType::U32;
                }
                VarDecl {
                    kind,
                    name,
                    ty: VarType {
                        scalar,
                        order: if big {
                            ByteOrder::Big
                        } else {
                            ByteOrder::Little
                        },
                    },
                }
            })
    }

    /// A well-formed fragment: instructions chosen by `ops`, each with the relocation
    /// its shape allows, picking variables of the right kind.
    fn fragment() -> impl Strategy<Value = Fragment> {
        (
            "[ -~]{0,16}",
            any::<(bool, bool)>(),
            0u32..64,
            any::<u32>(),
            proptest::collection::vec(var(), 0..6),
            proptest::collection::vec((0u8..8, any::<u32>(), any::<i16>()), 0..40),
        )
            .prop_map(|(name, (cyc, verdict), frame, fixed, vars, ops)| {
                let mut insns = Vec::new();
                let mut relocs = Vec::new();
                let pick = |want: &dyn Fn(&VarDecl) -> bool, seed: u32| {
                    let idx: Vec<u32> = (0..vars.len() as u32)
                        .filter(|&i| want(&vars[i as usize]))
                        .collect();
                    (!idx.is_empty()).then(|| idx[seed as usize % idx.len()])
                };
                for (op, seed, off) in ops {
                    let at = insns.len() as u32;
                    let mut reloc = |kind| relocs.push(Relocation { insn: at, kind });
                    match op {
                        0 => {
                            if let Some(v) =
                                pick(&|d| matches!(d.kind, VarKind::Terminal { .. }), seed)
                            {
                                reloc(RelocKind::TerminalByte(v));
                            }
                            Insn::Load {
                                size: Size::B,
                                signed: false,
                                dst: r(1),
                                src: r(9),
                                off,
                            }
                            .encode(&mut insns);
                        }
                        1 => {
                            if let Some(v) = pick(
                                &|d| {
                                    matches!(d.kind, VarKind::Terminal { .. })
                                        && d.ty.scalar.is_bit_field()
                                },
                                seed,
                            ) {
                                reloc(
                                    [
                                        RelocKind::TerminalBitShift(v),
                                        RelocKind::TerminalBitMask(v),
                                        RelocKind::TerminalBitClear(v),
                                    ][seed as usize % 3]
                                        .clone(),
                                );
                            }
                            Insn::Alu {
                                wide: seed % 2 == 0,
                                op: AluOp::And,
                                dst: r(1),
                                src: Src::Imm(i32::from(off)),
                            }
                            .encode(&mut insns);
                        }
                        2 => {
                            if let Some(v) =
                                pick(&|d| !matches!(d.kind, VarKind::Terminal { .. }), seed)
                            {
                                reloc(RelocKind::DeviceVar(v));
                            }
                            Insn::Store {
                                size: Size::W,
                                dst: r(8),
                                off,
                                src: Src::Imm(seed as i32),
                            }
                            .encode(&mut insns);
                        }
                        3 => {
                            reloc(RelocKind::Stack);
                            Insn::Load {
                                size: Size::DW,
                                signed: false,
                                dst: r(2),
                                src: r(10),
                                off,
                            }
                            .encode(&mut insns);
                        }
                        4 => {
                            reloc(RelocKind::Helper(seed as i32));
                            Insn::Call { helper: 0 }.encode(&mut insns);
                        }
                        5 => Insn::LdImm64 {
                            dst: r(3),
                            imm: (i64::from(seed) << 20) | i64::from(off),
                        }
                        .encode(&mut insns),
                        6 => {
                            let len = seed % (at + 1);
                            relocs.push(Relocation {
                                insn: at - len,
                                kind: RelocKind::Optional {
                                    link: format!("l{seed}"),
                                    len,
                                },
                            });
                        }
                        _ => Insn::Jmp {
                            wide: false,
                            cond: JmpCond::SLt,
                            dst: r(4),
                            src: Src::Reg(r(5)),
                            off,
                        }
                        .encode(&mut insns),
                    }
                }
                // Optional regions must not start or end inside a wide load.
                let starts = instruction_starts(&insns).expect("generated code decodes");
                relocs.retain(|rel| match &rel.kind {
                    RelocKind::Optional { len, .. } => {
                        let (s, e) = (rel.insn as usize, (rel.insn + len) as usize);
                        s < insns.len()
                            && starts[s].is_some()
                            && (e == insns.len() || starts[e].is_some())
                    }
                    _ => true,
                });
                Fragment {
                    name,
                    uses_cycle_time: cyc,
                    sets_verdict: verdict,
                    frame_size: frame * 8,
                    fixed_packet_len: fixed,
                    vars,
                    insns,
                    relocs,
                }
            })
    }

    proptest! {
        #[test]
        fn roundtrip(f in fragment()) {
            prop_assert_eq!(f.check(), vec![]);
            let bytes = f.to_bytes();
            prop_assert_eq!(Fragment::from_bytes(&bytes), Ok(f));
        }

        #[test]
        fn damaged_bytes_never_panic(
            f in fragment(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let mut bytes = f.to_bytes();
            for (at, x) in flips {
                let n = bytes.len();
                bytes[at % n] ^= x;
            }
            // Whatever decodes is well formed and re-encodes to the same bytes.
            if let Ok(g) = Fragment::from_bytes(&bytes) {
                prop_assert_eq!(g.check(), vec![]);
                prop_assert_eq!(g.to_bytes(), bytes.clone());
            }
            let cut = cut % (bytes.len() + 1);
            let _ = Fragment::from_bytes(&bytes[..cut]);
        }

        #[test]
        fn random_bytes_after_a_valid_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = b"FCFR\x01\x00\x00\x00".to_vec();
            bytes.extend(tail);
            let _ = Fragment::from_bytes(&bytes);
        }
    }
}
