//! Linking one fragment: checks its instructions against the ABI, resolves its
//! variables and relocations, removes the `Optional` regions of unconnected links and
//! re-targets the jumps that cross them.

use super::block::{BlockIndex, type_name};
use super::error::{LinkError, LinkErrorKind};
use super::input::{GroupDevice, TerminalLayout, VariableAddress};
use ferrocat_plugin_api::ebpf::insn::{AluOp, AtomicOp, Insn, RawInsn, Reg, Src};
use ferrocat_plugin_api::fragment::encoding::instruction_starts;
use ferrocat_plugin_api::fragment::{
    CYCLE_TIME_SLOT, Fragment, MAX_STACK, PROLOGUE_STACK, RelocKind, VarKind,
};
use std::collections::BTreeMap;

/// `BPF_FUNC_tail_call` (include/uapi/linux/bpf.h).
const HELPER_TAIL_CALL: i32 = 12;

/// The links of one device of a program.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Links<'a> {
    /// Its connected terminal links.
    pub terminals: &'a BTreeMap<String, TerminalLayout>,
    /// Its device links.
    pub device_links: &'a BTreeMap<String, String>,
}

/// The program a fragment is linked into, as far as resolution needs it.
pub(crate) struct Env<'a> {
    /// The device the fragment belongs to.
    pub device: &'a str,
    /// Its links.
    pub links: Links<'a>,
    /// Every device of the program, by name, with its links.
    pub group: &'a BTreeMap<&'a str, Links<'a>>,
    /// The program's variable block, indexed.
    pub block: &'a BlockIndex<'a>,
    /// Helpers allowed; `None`: any.
    pub allowed_helpers: Option<&'a [i32]>,
    /// Maps the fragment may load by descriptor (standalone programs only).
    pub map_fds: &'a [i32],
    /// Linking a standalone program (one fragment, may set a verdict).
    pub standalone: bool,
    /// Whether r8 points at a variable map.
    pub has_map: bool,
}

/// A fragment ready to be placed in a program.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// Its instructions, relocated and with unconnected regions removed.
    pub insns: Vec<RawInsn>,
    /// For each slot of `insns`, its slot in the fragment as given.
    pub orig: Vec<u32>,
    /// Bytes of packet the fragment needs (fixed fields and resolved terminal
    /// variables, bit fields with their whole load window).
    pub packet_end: u32,
    /// The fragment's frame size.
    pub frame_size: u32,
    /// Whether it reads the cycle time.
    pub uses_cycle_time: bool,
    /// Slots (of `insns`) of jumps to the fragment's end, and whether each is the
    /// `goto` of an early exit (`r0 = verdict; goto end`). Filled for standalone
    /// fragments that set a verdict.
    pub jumps_to_end: Vec<(usize, bool)>,
    /// Whether the last instruction is `r0 = verdict` (an exit at the very end whose
    /// `goto` the builder left out).
    pub trailing_verdict: bool,
}

impl<'a> Links<'a> {
    /// The links of a group's device.
    pub fn of(d: &'a GroupDevice) -> Links<'a> {
        Links {
            terminals: &d.terminals,
            device_links: &d.device_links,
        }
    }
}

impl<'a> Env<'a> {
    /// Follows the device links `path` (`"leader"`, `"leader.leader"`) from this
    /// device: the device reached and its links. `var` names the variable that needs
    /// the path, for the error.
    fn follow(&self, path: &str, var: &str) -> Result<(&'a str, Links<'a>), LinkErrorKind> {
        let (mut device, mut links) = (self.device, self.links);
        let mut walked = 0;
        for step in path.split('.') {
            walked += step.len() + usize::from(walked > 0);
            let link = &path[..walked];
            let Some(other) = links.device_links.get(step) else {
                return Err(LinkErrorKind::DeviceLinkNotConnected {
                    link: link.to_string(),
                    var: var.to_string(),
                });
            };
            let Some((name, l)) = self.group.get_key_value(other.as_str()) else {
                return Err(LinkErrorKind::ForeignDeviceNotInGroup {
                    link: link.to_string(),
                    device: other.clone(),
                });
            };
            (device, links) = (name, *l);
        }
        Ok((device, links))
    }

    /// The terminal connected to terminal link `link` — this device's, or, for a path
    /// `"leader.stepper"`, the terminal link `stepper` of the device that device link
    /// `leader` names. `Ok(None)`: the link is not connected.
    fn terminal(&self, link: &str, var: &str) -> Result<Option<&'a TerminalLayout>, LinkErrorKind> {
        let (links, last) = match link.rsplit_once('.') {
            Some((path, last)) => (self.follow(path, var)?.1, last),
            None => (self.links, link),
        };
        Ok(links.terminals.get(last))
    }
}

/// How a declared variable resolved.
#[derive(Clone, Copy, Debug)]
enum VarRes {
    Terminal {
        addr: VariableAddress,
        /// Bytes accessible from its first byte (the load window of a bit field).
        window: u32,
    },
    Device {
        offset: u32,
        bytes: u32,
    },
    /// Its optional link is unconnected: usable only inside removed regions.
    Unavailable,
    /// Resolution failed (already reported).
    Failed,
}

/// The smallest load window of 1, 2, 4 or 8 bytes holding `n + 7` bits
/// (docs/fragment-abi.md, "Types").
pub(crate) fn bit_field_window(n: u32) -> u32 {
    [1, 2, 4, 8]
        .into_iter()
        .find(|w| w * 8 >= n + 7)
        .unwrap_or(8)
}

/// The register an instruction writes, other than through a call.
fn written_reg(insn: &Insn) -> Option<Reg> {
    match *insn {
        Insn::Alu { dst, .. }
        | Insn::Neg { dst, .. }
        | Insn::MovSx { dst, .. }
        | Insn::End { dst, .. }
        | Insn::Load { dst, .. }
        | Insn::LdImm64 { dst, .. }
        | Insn::LdMapFd { dst, .. }
        | Insn::LdMapValue { dst, .. } => Some(dst),
        Insn::Atomic { op, src, .. } => match op {
            AtomicOp::Add | AtomicOp::Or | AtomicOp::And | AtomicOp::Xor => None,
            AtomicOp::CmpXchg => Some(Reg::R0),
            _ => Some(src),
        },
        _ => None,
    }
}

/// (base register, offset, access bytes) of a memory access.
fn mem_access(insn: &Insn) -> Option<(Reg, i16, u32)> {
    match *insn {
        Insn::Load { src, off, size, .. } => Some((src, off, size.bytes())),
        Insn::Store { dst, off, size, .. } => Some((dst, off, size.bytes())),
        Insn::Atomic { dst, off, size, .. } => Some((dst, off, size.bytes())),
        _ => None,
    }
}

/// Target slot of a jump at `slot`, relative to the fragment.
fn jump_target(insn: &Insn, slot: usize) -> Option<i64> {
    let next = slot as i64 + 1;
    match *insn {
        Insn::Ja { off } | Insn::Jmp { off, .. } => Some(next + i64::from(off)),
        Insn::JaLong { imm } => Some(next + i64::from(imm)),
        _ => None,
    }
}

/// Sets the jump at `raw` (a `Ja`, `Jmp` or `JaLong`) to offset `off`; false if it does
/// not fit.
pub(crate) fn set_jump_offset(raw: &mut RawInsn, off: i64) -> bool {
    // BPF_JMP32 | BPF_JA (gotol) keeps its offset in imm.
    if raw.code == 0x06 {
        match i32::try_from(off) {
            Ok(v) => raw.imm = v,
            Err(_) => return false,
        }
    } else {
        match i16::try_from(off) {
            Ok(v) => raw.off = v,
            Err(_) => return false,
        }
    }
    true
}

/// The offset of the jump at `raw`.
pub(crate) fn jump_offset(raw: &RawInsn) -> i64 {
    if raw.code == 0x06 {
        i64::from(raw.imm)
    } else {
        i64::from(raw.off)
    }
}

/// Adds `value` to the `off` field, refusing a result that does not fit.
fn patch_off(raw: &mut RawInsn, value: i64, what: String) -> Result<(), LinkErrorKind> {
    let sum = i64::from(raw.off) + value;
    raw.off = i16::try_from(sum).map_err(|_| LinkErrorKind::FieldOverflow {
        what,
        value: sum,
        field: "off",
    })?;
    Ok(())
}

/// Whether an ALU/JMP instruction operates on 64 bits (its `imm` is sign-extended).
fn is_wide(raw: &RawInsn) -> bool {
    matches!(raw.code & 0x07, 0x05 | 0x07)
}

fn is_verdict_move(insn: Option<Insn>) -> bool {
    matches!(
        insn,
        Some(Insn::Alu {
            op: AluOp::Mov,
            dst: Reg::R0,
            src: Src::Imm(_),
            ..
        })
    )
}

/// Links fragment `f` in `env`; problems go to `errors`. `None` if there were any.
pub(crate) fn resolve(
    f: &Fragment,
    env: &Env<'_>,
    errors: &mut Vec<LinkError>,
) -> Option<Resolved> {
    let before = errors.len();
    let mut err = |slot: Option<usize>, kind: LinkErrorKind| {
        errors.push(LinkError {
            fragment: f.name.clone(),
            slot,
            kind,
        })
    };
    let structural = f.check();
    if !structural.is_empty() {
        for e in structural {
            err(None, LinkErrorKind::Malformed(e));
        }
        return None;
    }
    let Ok(starts) = instruction_starts(&f.insns) else {
        return None; // unreachable: check() decoded them
    };
    let len = f.insns.len();

    if !env.standalone && f.sets_verdict {
        err(None, LinkErrorKind::SetsVerdictInGroup);
    }
    let prologue = PROLOGUE_STACK.unsigned_abs() as u32;
    if u64::from(f.frame_size) + u64::from(prologue) > u64::from(MAX_STACK) {
        err(
            None,
            LinkErrorKind::FrameTooLarge {
                frame: f.frame_size,
                prologue,
                max: MAX_STACK,
            },
        );
    }

    // Relocations by slot, and the Optional regions.
    let mut relocs_at: Vec<Vec<&RelocKind>> = vec![Vec::new(); len];
    let mut regions: Vec<(usize, usize, &str)> = Vec::new();
    for r in &f.relocs {
        match &r.kind {
            RelocKind::Optional { link, len: n } => {
                regions.push((r.insn as usize, r.insn as usize + *n as usize, link))
            }
            kind => relocs_at[r.insn as usize].push(kind),
        }
    }
    let has = |slot: usize, pred: fn(&RelocKind) -> bool| relocs_at[slot].iter().any(|k| pred(k));

    // Instruction checks and jumps.
    let mut jumps: Vec<(usize, usize)> = Vec::new();
    for (slot, insn) in starts.iter().enumerate() {
        let Some(insn) = insn else { continue };
        let raw = f.insns[slot];
        match *insn {
            Insn::Exit => err(Some(slot), LinkErrorKind::Exit),
            Insn::Call { helper } => {
                if raw.src() != 0 {
                    err(Some(slot), LinkErrorKind::PseudoCall(raw.src()));
                } else if !has(slot, |k| matches!(k, RelocKind::Helper(_))) {
                    err(Some(slot), LinkErrorKind::CallWithoutRelocation(helper));
                }
            }
            Insn::LdMapFd { fd, .. } if env.map_fds.contains(&fd) => {}
            Insn::LdMapFd { .. } | Insn::LdMapValue { .. } => {
                err(Some(slot), LinkErrorKind::MapLoad)
            }
            _ => {}
        }
        if let Some(r) = written_reg(insn)
            && r.index() >= 8
        {
            err(Some(slot), LinkErrorKind::WritesReservedRegister(r.index()));
        }
        if let Some((base, off, size)) = mem_access(insn) {
            if base == Reg::R10 && !has(slot, |k| matches!(k, RelocKind::Stack)) {
                let cycle_read = f.uses_cycle_time
                    && off == CYCLE_TIME_SLOT
                    && matches!(insn, Insn::Load { size: s, signed: false, .. } if s.bytes() == 8);
                if !cycle_read {
                    err(Some(slot), LinkErrorKind::UnrelocatedStack(off));
                }
            }
            if base == Reg::R8 && !has(slot, |k| matches!(k, RelocKind::DeviceVar(_))) {
                err(Some(slot), LinkErrorKind::UnrelocatedDeviceAccess(off));
            }
            if base == Reg::R9 && !has(slot, |k| matches!(k, RelocKind::TerminalByte(_))) {
                let start = i64::from(off);
                let end = start + i64::from(size);
                if start < 0 || end > i64::from(f.fixed_packet_len) {
                    err(
                        Some(slot),
                        LinkErrorKind::FixedPacketBeyondLen {
                            start,
                            end,
                            fixed: f.fixed_packet_len,
                        },
                    );
                }
            }
        }
        if let Some(target) = jump_target(insn, slot) {
            if target < 0 || target > len as i64 {
                err(Some(slot), LinkErrorKind::JumpOutside { target, len });
            } else if (target as usize) < len && starts[target as usize].is_none() {
                err(Some(slot), LinkErrorKind::JumpIntoWideLoad(target as usize));
            } else {
                jumps.push((slot, target as usize));
            }
        }
    }

    // Optional regions: nested or disjoint, single entry, single exit.
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            let disjoint = a.1 <= b.0 || b.1 <= a.0;
            let nested = (a.0 <= b.0 && b.1 <= a.1) || (b.0 <= a.0 && a.1 <= b.1);
            if !disjoint && !nested {
                err(
                    Some(b.0),
                    LinkErrorKind::OptionalOverlap {
                        a_start: a.0,
                        a_end: a.1,
                        b_start: b.0,
                        b_end: b.1,
                    },
                );
            }
        }
    }
    for &(p, t) in &jumps {
        for &(s, e, link) in &regions {
            let inside = s <= p && p < e;
            if !inside && s < t && t < e {
                err(
                    Some(p),
                    LinkErrorKind::JumpIntoOptional {
                        target: t,
                        start: s,
                        end: e,
                        link: link.to_string(),
                    },
                );
            } else if inside && (t < s || t > e) {
                err(
                    Some(p),
                    LinkErrorKind::JumpOutOfOptional {
                        target: t,
                        start: s,
                        end: e,
                        link: link.to_string(),
                    },
                );
            }
        }
    }
    let mut removed = vec![false; len];
    for &(s, e, link) in &regions {
        if !matches!(env.terminal(link, ""), Ok(Some(_))) {
            removed[s..e].iter_mut().for_each(|r| *r = true);
        }
    }

    // Variables: every declaration is resolved (and its errors reported) even if unused.
    let mut map_missing_reported = false;
    let res: Vec<VarRes> = f
        .vars
        .iter()
        .map(|decl| match &decl.kind {
            VarKind::Terminal { link, optional } => {
                let terminal = match env.terminal(link, &decl.name) {
                    Ok(t) => t,
                    Err(e) => {
                        err(None, e);
                        return VarRes::Failed;
                    }
                };
                let Some(terminal) = terminal else {
                    if *optional {
                        return VarRes::Unavailable;
                    }
                    err(
                        None,
                        LinkErrorKind::TerminalLinkNotConnected {
                            link: link.clone(),
                            var: decl.name.clone(),
                        },
                    );
                    return VarRes::Failed;
                };
                let Some(&addr) = terminal.vars.get(&decl.name) else {
                    err(
                        None,
                        LinkErrorKind::UnknownTerminalVariable {
                            link: link.clone(),
                            terminal: terminal.name.clone(),
                            var: decl.name.clone(),
                        },
                    );
                    return VarRes::Failed;
                };
                let scalar = decl.ty.scalar;
                let ok = addr.bit_len == scalar.packet_bits()
                    && addr.bit_offset < 8
                    && (scalar.is_bit_field() || addr.bit_offset == 0);
                if !ok {
                    err(
                        None,
                        LinkErrorKind::TerminalTypeMismatch {
                            var: decl.name.clone(),
                            terminal: terminal.name.clone(),
                            declared: type_name(decl.ty),
                            bit_len: addr.bit_len,
                            bit_offset: addr.bit_offset,
                        },
                    );
                    return VarRes::Failed;
                }
                let window = if scalar.is_bit_field() {
                    bit_field_window(addr.bit_len)
                } else {
                    addr.bit_len / 8
                };
                VarRes::Terminal { addr, window }
            }
            VarKind::Device => {
                if !env.has_map {
                    if !map_missing_reported {
                        map_missing_reported = true;
                        err(None, LinkErrorKind::NoVariableMap);
                    }
                    return VarRes::Failed;
                }
                match env.block.get(env.device, &decl.name) {
                    Some(p) => VarRes::Device {
                        offset: p.offset,
                        bytes: p.ty.scalar.memory_bytes(),
                    },
                    None => VarRes::Failed, // a type conflict, reported when placing
                }
            }
            VarKind::Foreign { link } => {
                if env.standalone {
                    err(None, LinkErrorKind::ForeignInStandalone(decl.name.clone()));
                    return VarRes::Failed;
                }
                let other = match env.follow(link, &decl.name) {
                    Ok((other, _)) => other,
                    Err(e) => {
                        err(None, e);
                        return VarRes::Failed;
                    }
                };
                let Some(p) = env.block.get(other, &decl.name) else {
                    err(
                        None,
                        LinkErrorKind::UnknownForeignVariable {
                            link: link.clone(),
                            device: other.to_string(),
                            var: decl.name.clone(),
                        },
                    );
                    return VarRes::Failed;
                };
                if p.ty.scalar != decl.ty.scalar {
                    err(
                        None,
                        LinkErrorKind::DeviceVarTypeMismatch {
                            device: other.to_string(),
                            var: decl.name.clone(),
                            actual: type_name(p.ty),
                            declared: type_name(decl.ty),
                        },
                    );
                    return VarRes::Failed;
                }
                VarRes::Device {
                    offset: p.offset,
                    bytes: p.ty.scalar.memory_bytes(),
                }
            }
        })
        .collect();

    // Relocations.
    let mut insns = f.insns.clone();
    let mut packet_end = f.fixed_packet_len;
    for (slot, kinds) in relocs_at.iter().enumerate() {
        if removed[slot] {
            continue;
        }
        let Some(insn) = starts[slot] else { continue };
        let raw = &mut insns[slot];
        for kind in kinds {
            let var_index = match kind {
                RelocKind::TerminalByte(v)
                | RelocKind::TerminalBitShift(v)
                | RelocKind::TerminalBitMask(v)
                | RelocKind::TerminalBitClear(v)
                | RelocKind::DeviceVar(v) => Some(*v as usize),
                _ => None,
            };
            let var_name = var_index.map(|v| f.vars[v].name.as_str()).unwrap_or("");
            let what = || format!("variable {var_name:?}");
            let var = var_index.map(|v| res[v]);
            if let Some(VarRes::Unavailable) = var {
                if let VarKind::Terminal { link, .. } = &f.vars[var_index.unwrap_or(0)].kind {
                    err(
                        Some(slot),
                        LinkErrorKind::OptionalUseOutsideRegion {
                            link: link.clone(),
                            var: var_name.to_string(),
                        },
                    );
                }
                continue;
            }
            match (kind, var) {
                (RelocKind::TerminalByte(_), Some(VarRes::Terminal { addr, window })) => {
                    let (_, _, size) = mem_access(&insn).unwrap_or((Reg::R9, 0, 0));
                    let addend = i64::from(raw.off);
                    if addend < 0 || addend + i64::from(size) > i64::from(window) {
                        err(
                            Some(slot),
                            LinkErrorKind::AccessOutsideVariable {
                                var: var_name.to_string(),
                                addend,
                                size,
                                var_bytes: window,
                            },
                        );
                        continue;
                    }
                    packet_end = packet_end.max(addr.byte_offset.saturating_add(window));
                    if let Err(e) = patch_off(raw, i64::from(addr.byte_offset), what()) {
                        err(Some(slot), e);
                    }
                }
                (RelocKind::DeviceVar(_), Some(VarRes::Device { offset, bytes })) => {
                    let (_, _, size) = mem_access(&insn).unwrap_or((Reg::R8, 0, 0));
                    let addend = i64::from(raw.off);
                    if addend < 0 || addend + i64::from(size) > i64::from(bytes) {
                        err(
                            Some(slot),
                            LinkErrorKind::AccessOutsideVariable {
                                var: var_name.to_string(),
                                addend,
                                size,
                                var_bytes: bytes,
                            },
                        );
                        continue;
                    }
                    if let Err(e) = patch_off(raw, i64::from(offset), what()) {
                        err(Some(slot), e);
                    }
                }
                (
                    RelocKind::TerminalBitShift(_)
                    | RelocKind::TerminalBitMask(_)
                    | RelocKind::TerminalBitClear(_),
                    Some(VarRes::Terminal { addr, .. }),
                ) => {
                    let mask: u64 = ((1u64 << addr.bit_len) - 1) << addr.bit_offset;
                    let wide = is_wide(raw);
                    // A 64-bit operation sign-extends imm, so its mask must stay below
                    // bit 31; a 32-bit one may use all 32 bits.
                    let limit = if wide {
                        i32::MAX as u64
                    } else {
                        u32::MAX as u64
                    };
                    let value = match kind {
                        RelocKind::TerminalBitShift(_) => Some(i64::from(addr.bit_offset)),
                        _ if mask > limit => None,
                        RelocKind::TerminalBitMask(_) => Some(i64::from(mask as u32 as i32)),
                        _ => Some(i64::from(!(mask as u32) as i32)),
                    };
                    let sum = value.and_then(|v| i32::try_from(i64::from(raw.imm) + v).ok());
                    match sum {
                        Some(v) => raw.imm = v,
                        None => err(
                            Some(slot),
                            LinkErrorKind::FieldOverflow {
                                what: format!("bit mask of {}", what()),
                                value: mask as i64,
                                field: "imm",
                            },
                        ),
                    }
                }
                (RelocKind::Stack, _) => {
                    let (_, _, size) = mem_access(&insn).unwrap_or((Reg::R10, 0, 0));
                    let addend = i64::from(raw.off);
                    if addend < -i64::from(f.frame_size) || addend + i64::from(size) > 0 {
                        err(
                            Some(slot),
                            LinkErrorKind::StackOutsideFrame {
                                off: raw.off,
                                size,
                                frame: f.frame_size,
                            },
                        );
                        continue;
                    }
                    if let Err(e) = patch_off(raw, -i64::from(prologue), "stack slot".to_string()) {
                        err(Some(slot), e);
                    }
                }
                (RelocKind::Helper(id), _) => {
                    let id = *id;
                    if id == HELPER_TAIL_CALL {
                        err(Some(slot), LinkErrorKind::TailCall);
                        continue;
                    }
                    let allowed = match env.allowed_helpers {
                        Some(list) => list.contains(&id),
                        None => id >= 0,
                    };
                    if !allowed {
                        err(
                            Some(slot),
                            LinkErrorKind::HelperNotAllowed {
                                id,
                                allowed: env.allowed_helpers.unwrap_or(&[]).to_vec(),
                            },
                        );
                        continue;
                    }
                    match i32::try_from(i64::from(raw.imm) + i64::from(id)) {
                        Ok(v) => raw.imm = v,
                        Err(_) => err(
                            Some(slot),
                            LinkErrorKind::FieldOverflow {
                                what: format!("helper {id}"),
                                value: i64::from(raw.imm) + i64::from(id),
                                field: "imm",
                            },
                        ),
                    }
                }
                // The variable failed to resolve (already reported).
                _ => {}
            }
        }
    }

    // Early exits of standalone fragments (`r0 = verdict; goto end`).
    let mut exit_gotos = vec![false; len];
    let mut trailing_verdict = false;
    if env.standalone && f.sets_verdict {
        for &(p, t) in &jumps {
            let is_goto = matches!(starts[p], Some(Insn::Ja { .. } | Insn::JaLong { .. }));
            if t == len && is_goto && p > 0 && is_verdict_move(starts[p - 1]) {
                exit_gotos[p] = true;
            }
        }
        for &(p, t) in &jumps {
            if t < len && exit_gotos[t] && p + 1 != t {
                err(Some(p), LinkErrorKind::JumpIntoExitSequence);
            }
        }
        trailing_verdict = len > 0 && !removed[len - 1] && is_verdict_move(starts[len - 1]);
    }

    if errors.len() > before {
        return None;
    }

    // Remove unconnected regions and re-target the jumps that cross them.
    let mut new_index = Vec::with_capacity(len + 1);
    let mut kept = 0usize;
    for &r in &removed {
        new_index.push(kept);
        if !r {
            kept += 1;
        }
    }
    new_index.push(kept);
    let mut out = Vec::with_capacity(kept);
    let mut orig = Vec::with_capacity(kept);
    for (slot, raw) in insns.iter().enumerate() {
        if !removed[slot] {
            out.push(*raw);
            orig.push(slot as u32);
        }
    }
    let mut jumps_to_end = Vec::new();
    for &(p, t) in &jumps {
        if removed[p] {
            continue;
        }
        let np = new_index[p];
        let off = new_index[t] as i64 - np as i64 - 1;
        if !set_jump_offset(&mut out[np], off) {
            // Unreachable: removing slots only shortens jumps.
            errors.push(LinkError {
                fragment: f.name.clone(),
                slot: Some(p),
                kind: LinkErrorKind::FieldOverflow {
                    what: "jump".to_string(),
                    value: off,
                    field: "off",
                },
            });
            return None;
        }
        if t == len && env.standalone && f.sets_verdict {
            jumps_to_end.push((np, exit_gotos[p]));
        }
    }

    Some(Resolved {
        insns: out,
        orig,
        packet_end,
        frame_size: f.frame_size,
        uses_cycle_time: f.uses_cycle_time,
        jumps_to_end,
        trailing_verdict,
    })
}
