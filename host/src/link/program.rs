//! Whole programs: the prologue, the linked fragments and the epilogue of a sync
//! group's program or of a standalone (generic XDP) program.

use super::block::{BlockIndex, VariableBlock};
use super::error::{LinkError, LinkErrorKind, LinkErrors};
use super::input::{GroupDevice, GroupLink, StandaloneLink, XDP_PASS};
use super::resolve::{Env, Links, Resolved, jump_offset, resolve, set_jump_offset};
use ferrocat_plugin_api::ebpf::disasm;
use ferrocat_plugin_api::ebpf::insn::{AluOp, Insn, JmpCond, RawInsn, Reg, Size, Src, encode};
use ferrocat_plugin_api::fragment::{CTX_SLOT, CYCLE_TIME_SLOT, Fragment, PROLOGUE_STACK, helper};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Name of the source-map region of the linker's prologue.
pub const PROLOGUE_NAME: &str = "<prologue>";
/// Name of the source-map region of the linker's epilogue.
pub const EPILOGUE_NAME: &str = "<epilogue>";

/// `offsetof(struct xdp_md, data)` (include/uapi/linux/bpf.h).
const XDP_MD_DATA: i16 = 0;
/// `offsetof(struct xdp_md, data_end)`.
const XDP_MD_DATA_END: i16 = 4;

/// Slots of a program that came from one fragment (or from the prologue/epilogue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRegion {
    /// The program's slots.
    pub slots: Range<usize>,
    /// The fragment's name, or [`PROLOGUE_NAME`] / [`EPILOGUE_NAME`].
    pub name: String,
    /// For each slot of the region, its slot in the fragment as given (optional regions
    /// removed make them differ); empty for the prologue and epilogue.
    pub fragment_slots: Vec<u32>,
}

/// A linked program and what the host needs to run it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedProgram {
    /// The instructions, ready for `BPF_PROG_LOAD`.
    pub insns: Vec<RawInsn>,
    /// Where each device variable lives in the variable map's value.
    pub variables: VariableBlock,
    /// Bytes of packet the prologue requires before any fragment runs.
    pub min_len: u32,
    /// Stack bytes the program uses: the prologue's slots plus the largest frame.
    pub stack_size: u32,
    /// Which slots came from which fragment.
    pub source_map: Vec<SourceRegion>,
    /// Slot of the prologue's `r8 = map_value(...)` load, if the program has one.
    pub map_load_slot: Option<usize>,
}

impl LinkedProgram {
    /// The fragment (or prologue/epilogue) holding program slot `slot`, and the slot in
    /// that fragment as given (`None` for the prologue and epilogue).
    pub fn source_of(&self, slot: usize) -> Option<(&str, Option<usize>)> {
        self.source_map
            .iter()
            .find(|r| r.slots.contains(&slot))
            .map(|r| {
                let within = r
                    .fragment_slots
                    .get(slot - r.slots.start)
                    .map(|&s| s as usize);
                (r.name.as_str(), within)
            })
    }

    /// The source map in the form program loading uses to annotate verifier errors.
    pub fn bpf_source_map(&self) -> crate::bpf::prog::SourceMap {
        let mut map = crate::bpf::prog::SourceMap::new();
        for r in &self.source_map {
            map.push(r.slots.clone(), r.name.clone());
        }
        map
    }

    /// Points the prologue's variable-block load at map `fd` (for a program linked
    /// before its map existed).
    pub fn set_variable_map_fd(&mut self, fd: i32) {
        if let Some(slot) = self.map_load_slot {
            self.insns[slot].imm = fd;
        }
    }

    /// The disassembly, each fragment introduced by a `; name` line.
    pub fn listing(&self) -> String {
        let mut out = String::new();
        let lines = disasm::disassemble(&self.insns);
        for region in &self.source_map {
            out.push_str(&format!("; {}\n", region.name));
            for (slot, text) in lines.iter().filter(|(s, _)| region.slots.contains(s)) {
                out.push_str(&format!("{slot}: {text}\n"));
            }
        }
        out
    }
}

fn mov64(dst: Reg, imm: i32) -> Insn {
    Insn::Alu {
        wide: true,
        op: AluOp::Mov,
        dst,
        src: Src::Imm(imm),
    }
}

/// The prologue up to and including the length check, whose jump offset is patched by
/// the caller: `(insns, slot of the length check)`.
fn prologue_head(min_len: i32) -> (Vec<Insn>, usize) {
    let head = vec![
        // *(u64 *)(r10 - 16) = r1: save the context.
        Insn::Store {
            size: Size::DW,
            dst: Reg::R10,
            off: CTX_SLOT,
            src: Src::Reg(Reg::R1),
        },
        // r9 = ctx->data
        Insn::Load {
            size: Size::W,
            signed: false,
            dst: Reg::R9,
            src: Reg::R1,
            off: XDP_MD_DATA,
        },
        // r2 = ctx->data_end
        Insn::Load {
            size: Size::W,
            signed: false,
            dst: Reg::R2,
            src: Reg::R1,
            off: XDP_MD_DATA_END,
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
            src: Src::Imm(min_len),
        },
        // if r3 > r2 goto pass (offset patched later)
        Insn::Jmp {
            wide: true,
            cond: JmpCond::Gt,
            dst: Reg::R3,
            src: Src::Reg(Reg::R2),
            off: 0,
        },
    ];
    let check = head.len() - 1;
    (head, check)
}

/// The prologue after the length check.
fn prologue_tail(map_fd: Option<i32>, cycle_time: bool) -> Vec<Insn> {
    let mut tail = Vec::new();
    if let Some(fd) = map_fd {
        tail.push(Insn::LdMapValue {
            dst: Reg::R8,
            fd,
            off: 0,
        });
    }
    if cycle_time {
        tail.push(Insn::Call {
            helper: helper::KTIME_GET_NS,
        });
        tail.push(Insn::Store {
            size: Size::DW,
            dst: Reg::R10,
            off: CYCLE_TIME_SLOT,
            src: Src::Reg(Reg::R0),
        });
    }
    tail
}

/// A program assembled from prologue, fragments and epilogue.
struct Assembly {
    insns: Vec<RawInsn>,
    source_map: Vec<SourceRegion>,
    map_load_slot: Option<usize>,
    /// Start slot of each fragment.
    starts: Vec<usize>,
}

/// Assembles prologue + fragments + `epilogue`, the prologue's length check jumping to
/// slot `fail_in_epilogue` of the epilogue.
fn assemble(
    min_len: u32,
    map_fd: Option<i32>,
    cycle_time: bool,
    fragments: &[(&str, &Resolved)],
    epilogue: &[Insn],
    fail_in_epilogue: usize,
    group_name: &str,
) -> Result<Assembly, LinkErrors> {
    let too_long = |n| {
        LinkErrors(vec![LinkError {
            fragment: group_name.to_string(),
            slot: None,
            kind: LinkErrorKind::ProgramTooLong(n),
        }])
    };
    let min_len = i32::try_from(min_len).map_err(|_| {
        LinkErrors(vec![LinkError {
            fragment: group_name.to_string(),
            slot: None,
            kind: LinkErrorKind::FieldOverflow {
                what: "minimum packet length".into(),
                value: i64::from(min_len),
                field: "imm",
            },
        }])
    })?;
    let (head, check) = prologue_head(min_len);
    let tail = encode(&prologue_tail(map_fd, cycle_time));
    let frag_total: usize = fragments.iter().map(|(_, r)| r.insns.len()).sum();
    let mut insns = encode(&head);
    // Offset of the failure target from the slot after the check (the same for the
    // short form and for the `gotol` of the long form).
    let skip = tail.len() + frag_total + fail_in_epilogue;
    match i16::try_from(skip) {
        Ok(off) => insns[check].off = off,
        Err(_) => {
            // Too far for a 16-bit offset: `if r3 <= r2 goto +1; gotol fail`.
            insns[check] = RawInsn::new(0x05 | 0x08 | 0xb0, 3, 2, 1, 0);
            let long = i32::try_from(skip).map_err(|_| too_long(skip))?;
            insns.push(RawInsn::new(0x06, 0, 0, 0, long));
        }
    }
    let map_load_slot = map_fd.map(|_| insns.len());
    insns.extend(tail);
    let mut source_map = vec![SourceRegion {
        slots: 0..insns.len(),
        name: PROLOGUE_NAME.to_string(),
        fragment_slots: Vec::new(),
    }];
    let mut starts = Vec::new();
    for (name, r) in fragments {
        let start = insns.len();
        starts.push(start);
        insns.extend_from_slice(&r.insns);
        source_map.push(SourceRegion {
            slots: start..insns.len(),
            name: name.to_string(),
            fragment_slots: r.orig.clone(),
        });
    }
    let start = insns.len();
    insns.extend(encode(epilogue));
    source_map.push(SourceRegion {
        slots: start..insns.len(),
        name: EPILOGUE_NAME.to_string(),
        fragment_slots: Vec::new(),
    });
    Ok(Assembly {
        insns,
        source_map,
        map_load_slot,
        starts,
    })
}

fn duplicate_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<LinkError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for n in names {
        if !seen.insert(n) {
            out.push(LinkError {
                fragment: n.to_string(),
                slot: None,
                kind: LinkErrorKind::DuplicateDevice(n.to_string()),
            });
        }
    }
    out
}

/// Places the device variables of a group, as [`link_group`] will: call it first to
/// size the variable map, then link with the map's descriptor.
pub fn variable_block(devices: &[GroupDevice]) -> Result<VariableBlock, LinkErrors> {
    VariableBlock::place(devices.iter().map(|d| (d.name.as_str(), &d.fragment))).map_err(LinkErrors)
}

/// Places the globals (device variables) of a standalone program, as
/// [`link_standalone`] will; they are listed under the device name `""` (look them up
/// with `block.offset("", name)`). Call it first to size the globals map.
pub fn standalone_variable_block(fragment: &Fragment) -> Result<VariableBlock, LinkErrors> {
    VariableBlock::place([("", fragment)]).map_err(LinkErrors)
}

/// Links a sync group's program: prologue, every device's fragment in order, epilogue
/// `r0 = verdict; exit`, and `r0 = XDP_PASS; exit` for frames shorter than the
/// program needs. Every problem of every fragment is reported.
pub fn link_group(group: &GroupLink) -> Result<LinkedProgram, LinkErrors> {
    let mut errors = duplicate_names(group.devices.iter().map(|d| d.name.as_str()));
    for d in &group.devices {
        let links = d.terminals.keys().chain(d.device_links.keys());
        for link in links.filter(|l| l.contains('.')) {
            errors.push(LinkError {
                fragment: d.fragment.name.clone(),
                slot: None,
                kind: LinkErrorKind::DottedLinkName(link.clone()),
            });
        }
    }
    let block = match variable_block(&group.devices) {
        Ok(b) => b,
        Err(LinkErrors(e)) => {
            errors.extend(e);
            VariableBlock::default()
        }
    };
    let members: BTreeMap<&str, Links<'_>> = group
        .devices
        .iter()
        .map(|d| (d.name.as_str(), Links::of(d)))
        .collect();
    let index = BlockIndex::new(&block);
    let mut resolved = Vec::new();
    for d in &group.devices {
        let env = Env {
            device: &d.name,
            links: Links::of(d),
            group: &members,
            block: &index,
            allowed_helpers: Some(&helper::ALLOWED),
            map_fds: &[],
            standalone: false,
            has_map: true,
        };
        if let Some(r) = resolve(&d.fragment, &env, &mut errors) {
            resolved.push((d.fragment.name.as_str(), r));
        }
    }
    if !errors.is_empty() {
        return Err(LinkErrors(errors));
    }
    let min_len = resolved
        .iter()
        .map(|(_, r)| r.packet_end)
        .max()
        .unwrap_or(0);
    let cycle_time = resolved.iter().any(|(_, r)| r.uses_cycle_time);
    let max_frame = resolved
        .iter()
        .map(|(_, r)| r.frame_size)
        .max()
        .unwrap_or(0);
    let epilogue = [
        mov64(Reg::R0, group.verdict),
        Insn::Exit,
        mov64(Reg::R0, XDP_PASS),
        Insn::Exit,
    ];
    let refs: Vec<(&str, &Resolved)> = resolved.iter().map(|(n, r)| (*n, r)).collect();
    let a = assemble(
        min_len,
        Some(group.variable_map_fd),
        cycle_time,
        &refs,
        &epilogue,
        2,
        "<group>",
    )?;
    Ok(LinkedProgram {
        insns: a.insns,
        variables: block,
        min_len,
        stack_size: PROLOGUE_STACK.unsigned_abs() as u32 + max_frame,
        source_map: a.source_map,
        map_load_slot: a.map_load_slot,
    })
}

/// Links a standalone (generic XDP) program of one fragment. Its device variables are
/// the program's globals, in the value of `variable_map_fd`. The epilogue returns the
/// fragment's verdict:
///
/// ```text
///   fragment            early exits `r0 = v; goto end` jump to `exit` below
///   [goto +1]           only if the fragment ends in `r0 = v` (its last statement is an exit)
///   r0 = XDP_PASS       falling off the end (or jumping to it) without a verdict
///   exit
/// ```
///
/// So a fragment that falls off its end without an exit returns `XDP_PASS`, as does a
/// frame shorter than the fragment's fixed packet fields.
pub fn link_standalone(program: &StandaloneLink) -> Result<LinkedProgram, LinkErrors> {
    let f = &program.fragment;
    let mut errors = Vec::new();
    let block = match standalone_variable_block(f) {
        Ok(b) => b,
        Err(LinkErrors(e)) => {
            errors.extend(e);
            VariableBlock::default()
        }
    };
    let no_links = Default::default();
    let index = BlockIndex::new(&block);
    let links = Links {
        terminals: &program.terminals,
        device_links: &no_links,
    };
    let env = Env {
        device: "",
        links,
        group: &BTreeMap::from([("", links)]),
        block: &index,
        allowed_helpers: program.allowed_helpers.as_deref(),
        map_fds: &program.map_fds,
        standalone: true,
        has_map: program.variable_map_fd.is_some(),
    };
    let resolved = resolve(f, &env, &mut errors);
    let Some(r) = resolved.filter(|_| errors.is_empty()) else {
        return Err(LinkErrors(errors));
    };
    let map_fd = if block.vars.is_empty() {
        None
    } else {
        program.variable_map_fd
    };
    let frag_len = r.insns.len();
    let mut epilogue = Vec::new();
    if r.trailing_verdict {
        epilogue.push(Insn::Ja { off: 1 });
    }
    let default_at = epilogue.len();
    epilogue.push(mov64(Reg::R0, XDP_PASS));
    epilogue.push(Insn::Exit);
    let exit_at = default_at + 1;
    let a = assemble(
        r.packet_end,
        map_fd,
        r.uses_cycle_time,
        &[(f.name.as_str(), &r)],
        &epilogue,
        default_at,
        &f.name,
    )?;
    let mut insns = a.insns;
    let start = a.starts[0];
    // Re-target the fragment's jumps to its end: early exits to `exit`, others to the
    // default verdict.
    for &(slot, is_exit) in &r.jumps_to_end {
        let at = start + slot;
        let extra = if is_exit { exit_at } else { default_at };
        let off = jump_offset(&insns[at]) + extra as i64;
        if !set_jump_offset(&mut insns[at], off) {
            let orig = r.orig.get(slot).map(|&s| s as usize);
            return Err(LinkErrors(vec![LinkError {
                fragment: f.name.clone(),
                slot: orig,
                kind: LinkErrorKind::FieldOverflow {
                    what: "jump to the epilogue".into(),
                    value: off,
                    field: "off",
                },
            }]));
        }
    }
    debug_assert_eq!(a.starts[0] + frag_len, a.source_map[1].slots.end);
    Ok(LinkedProgram {
        insns,
        variables: block,
        min_len: r.packet_end,
        stack_size: PROLOGUE_STACK.unsigned_abs() as u32 + r.frame_size,
        source_map: a.source_map,
        map_load_slot: a.map_load_slot,
    })
}
