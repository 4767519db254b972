//! Tests of the linker's rules with hand-made fragments: every relocation kind, every
//! error (each naming its fragment), Optional-region removal with crossing jumps, the
//! stack overlay of 64 fragments and the standalone epilogue.

use ferrocat::link::*;
use ferrocat_plugin_api::ebpf::insn::{AluOp, Insn, JmpCond, RawInsn, Reg, Size, Src, decode};
use ferrocat_plugin_api::fragment::{
    Fragment, RelocKind, Relocation, ScalarType, VarDecl, VarKind, VarType, helper,
};

/// A fragment from instructions, each with the relocations of its first slot.
mod link_support;
use link_support::{frag, ld, r, st};

fn terminal(link: &str, name: &str, scalar: ScalarType) -> VarDecl {
    VarDecl {
        kind: VarKind::Terminal {
            link: link.into(),
            optional: false,
        },
        name: name.into(),
        ty: VarType::le(scalar),
    }
}

fn optional(link: &str, name: &str, scalar: ScalarType) -> VarDecl {
    VarDecl {
        kind: VarKind::Terminal {
            link: link.into(),
            optional: true,
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

fn foreign(link: &str, name: &str, scalar: ScalarType) -> VarDecl {
    VarDecl {
        kind: VarKind::Foreign { link: link.into() },
        name: name.into(),
        ty: VarType::le(scalar),
    }
}

fn mov(dst: u8, imm: i32) -> Insn {
    Insn::Alu {
        wide: true,
        op: AluOp::Mov,
        dst: r(dst),
        src: Src::Imm(imm),
    }
}

fn alu(op: AluOp, dst: u8, imm: i32) -> Insn {
    Insn::Alu {
        wide: true,
        op,
        dst: r(dst),
        src: Src::Imm(imm),
    }
}

fn jmp(cond: JmpCond, dst: u8, imm: i32, off: i16) -> Insn {
    Insn::Jmp {
        wide: true,
        cond,
        dst: r(dst),
        src: Src::Imm(imm),
        off,
    }
}

fn stepper() -> TerminalLayout {
    TerminalLayout::new("EL7031 at 1001")
        .with("velocity", VariableAddress::bytes(20, 16))
        .with("status", VariableAddress::bytes(22, 16))
        .with("ready", VariableAddress::bits(30, 3, 1))
        .with("mode", VariableAddress::bits(31, 6, 4))
}

/// The fragment region of program `p` named `name`, decoded.
fn region(p: &LinkedProgram, name: &str) -> Vec<Insn> {
    let reg = p
        .source_map
        .iter()
        .find(|r| r.name == name)
        .expect("region present");
    decode(&p.insns[reg.slots.clone()])
        .expect("decodes")
        .into_iter()
        .map(|(_, i)| i)
        .collect()
}

fn errors_of(result: Result<LinkedProgram, LinkErrors>) -> Vec<LinkError> {
    match result {
        Ok(p) => panic!("link succeeded:\n{}", p.listing()),
        Err(LinkErrors(e)) => e,
    }
}

#[test]
fn every_relocation_kind_is_resolved() {
    let mut leader = frag(
        "leader",
        vec![device("encoder", ScalarType::I32)],
        &[(st(Size::W, 8, 0, 1), &[RelocKind::DeviceVar(0)])],
    );
    // `st` of r1 needs r1 written: not the linker's business, but keep it realistic.
    leader.insns.insert(0, RawInsn::new(0xb7, 1, 0, 0, 0));
    leader.relocs[0].insn = 1;
    let follower = Fragment {
        frame_size: 16,
        uses_cycle_time: true,
        ..frag(
            "follower",
            vec![
                terminal("stepper", "velocity", ScalarType::I16),
                terminal("stepper", "ready", ScalarType::Bool),
                device("speed", ScalarType::U8),
                foreign("leader", "encoder", ScalarType::I32),
                terminal("stepper", "mode", ScalarType::Bits(4)),
            ],
            &[
                (ld(Size::H, 1, 9, 0), &[RelocKind::TerminalByte(0)]),
                (ld(Size::B, 2, 9, 0), &[RelocKind::TerminalByte(1)]),
                (alu(AluOp::Rsh, 2, 0), &[RelocKind::TerminalBitShift(1)]),
                (alu(AluOp::And, 2, 0), &[RelocKind::TerminalBitMask(1)]),
                (alu(AluOp::And, 2, 0), &[RelocKind::TerminalBitClear(1)]),
                (st(Size::B, 8, 0, 2), &[RelocKind::DeviceVar(2)]),
                (ld(Size::W, 3, 8, 0), &[RelocKind::DeviceVar(3)]),
                (st(Size::DW, 10, -16, 3), &[RelocKind::Stack]),
                (st(Size::W, 10, -4, 3), &[RelocKind::Stack]),
                (ld(Size::DW, 4, 10, -8), &[]), // the cycle time
                (
                    Insn::Call { helper: 0 },
                    &[RelocKind::Helper(helper::KTIME_GET_NS)],
                ),
                (ld(Size::H, 5, 9, 0), &[RelocKind::TerminalByte(4)]),
                (alu(AluOp::Rsh, 5, 0), &[RelocKind::TerminalBitShift(4)]),
            ],
        )
    };
    let group = GroupLink::new(
        vec![
            GroupDevice::new("leader", leader),
            GroupDevice::new("follower", follower)
                .terminal("stepper", stepper())
                .device_link("leader", "leader"),
        ],
        42,
    );
    let p = link_group(&group).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.variables.offset("leader", "encoder"), Some(0));
    assert_eq!(p.variables.offset("follower", "speed"), Some(4));
    assert_eq!(p.variables.size, 8);
    // velocity 20..22, ready bit window 30..31, mode (4 bits) window 31..33.
    assert_eq!(p.min_len, 33);
    assert_eq!(p.stack_size, 32);
    let f = region(&p, "follower");
    assert_eq!(f[0], ld(Size::H, 1, 9, 20));
    assert_eq!(f[1], ld(Size::B, 2, 9, 30));
    assert_eq!(f[2], alu(AluOp::Rsh, 2, 3));
    assert_eq!(f[3], alu(AluOp::And, 2, 0b1000));
    assert_eq!(f[4], alu(AluOp::And, 2, !0b1000));
    assert_eq!(f[5], st(Size::B, 8, 4, 2));
    assert_eq!(f[6], ld(Size::W, 3, 8, 0));
    assert_eq!(f[7], st(Size::DW, 10, -32, 3));
    assert_eq!(f[8], st(Size::W, 10, -20, 3));
    assert_eq!(f[9], ld(Size::DW, 4, 10, -8));
    assert_eq!(f[10], Insn::Call { helper: 5 });
    assert_eq!(f[11], ld(Size::H, 5, 9, 31));
    assert_eq!(f[12], alu(AluOp::Rsh, 5, 6));
    let l = region(&p, "leader");
    assert_eq!(l[1], st(Size::W, 8, 0, 1));
    // The source map names fragments and their own slots.
    let start = p.source_map[2].slots.start;
    assert_eq!(p.source_of(start + 3), Some(("follower", Some(3))));
    assert_eq!(p.source_of(0), Some((PROLOGUE_NAME, None)));
}

/// Terminal links and foreign variables reached through device-link paths: a follower
/// reads its leader's stepper (`leader.stepper`) and a variable of its leader's leader
/// (`leader.leader`); an optional region on the leader's unconnected link is removed.
#[test]
fn links_through_device_links_resolve_in_the_other_device() {
    let root = frag("root", vec![device("x", ScalarType::I64)], &[]);
    let leader = frag("leader", vec![device("encoder", ScalarType::I32)], &[]);
    let follower = frag(
        "follower",
        vec![
            terminal("leader.stepper", "velocity", ScalarType::I16),
            foreign("leader.leader", "x", ScalarType::I64),
            terminal("stepper", "velocity", ScalarType::I16),
            optional("leader.switches", "low", ScalarType::Bool),
        ],
        &[
            (ld(Size::H, 1, 9, 0), &[RelocKind::TerminalByte(0)]),
            (ld(Size::DW, 2, 8, 0), &[RelocKind::DeviceVar(1)]),
            (
                ld(Size::B, 4, 9, 0),
                &[
                    RelocKind::TerminalByte(3),
                    RelocKind::Optional {
                        link: "leader.switches".into(),
                        len: 1,
                    },
                ],
            ),
            (ld(Size::H, 3, 9, 0), &[RelocKind::TerminalByte(2)]),
        ],
    );
    let other_stepper =
        TerminalLayout::new("EL7031 at 1002").with("velocity", VariableAddress::bytes(40, 16));
    let group = GroupLink::new(
        vec![
            GroupDevice::new("root", root),
            GroupDevice::new("leader", leader)
                .terminal("stepper", other_stepper)
                .device_link("leader", "root"),
            GroupDevice::new("follower", follower)
                .terminal("stepper", stepper())
                .device_link("leader", "leader"),
        ],
        3,
    );
    let p = link_group(&group).unwrap_or_else(|e| panic!("{e}"));
    let f = region(&p, "follower");
    assert_eq!(
        f,
        [
            ld(Size::H, 1, 9, 40),
            ld(Size::DW, 2, 8, 0),
            ld(Size::H, 3, 9, 20)
        ]
    );
    assert_eq!(p.min_len, 42);

    // The same follower, its leader's leader not linked, and a path through a link it
    // does not have: each error names the link as far as it was followed.
    let mut group = group;
    group.devices[1].device_links.clear();
    group.devices[2]
        .device_links
        .insert("elsewhere".into(), "other-group-device".into());
    group.devices[2].fragment.vars[2] = terminal("nolink.stepper", "velocity", ScalarType::I16);
    group.devices[2]
        .fragment
        .vars
        .push(terminal("elsewhere.stepper", "velocity", ScalarType::I16));
    let errs: Vec<LinkErrorKind> = errors_of(link_group(&group))
        .into_iter()
        .map(|e| e.kind)
        .collect();
    use LinkErrorKind as K;
    assert_eq!(
        errs,
        [
            K::DeviceLinkNotConnected {
                link: "leader.leader".into(),
                var: "x".into()
            },
            K::DeviceLinkNotConnected {
                link: "nolink".into(),
                var: "velocity".into()
            },
            K::ForeignDeviceNotInGroup {
                link: "elsewhere".into(),
                device: "other-group-device".into()
            },
        ]
    );

    // A configuration may not name a link with a dot: it would shadow a path.
    group.devices[2] = group.devices[2]
        .clone()
        .terminal("leader.stepper", stepper());
    let errs = errors_of(link_group(&group));
    assert_eq!(errs[0].kind, K::DottedLinkName("leader.stepper".into()));
    assert_eq!(errs[0].fragment, "follower");
}

#[test]
fn prologue_and_epilogue_are_as_the_abi_shows() {
    let f = Fragment {
        uses_cycle_time: true,
        ..frag(
            "m",
            vec![terminal("stepper", "velocity", ScalarType::U16)],
            &[(ld(Size::H, 1, 9, 0), &[RelocKind::TerminalByte(0)])],
        )
    };
    let mut p = link_group(&GroupLink::new(
        vec![GroupDevice::new("m", f).terminal("stepper", stepper())],
        7,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let want = "\
; <prologue>
0: (7b) *(u64 *)(r10 -16) = r1
1: (61) r9 = *(u32 *)(r1 +0)
2: (61) r2 = *(u32 *)(r1 +4)
3: (bf) r3 = r9
4: (07) r3 += 22
5: (2d) if r3 > r2 goto pc+7
6: (18) r8 = map[fd:7][0]+0
8: (85) call bpf_ktime_get_ns#5
9: (7b) *(u64 *)(r10 -8) = r0
; m
10: (69) r1 = *(u16 *)(r9 +20)
; <epilogue>
11: (b7) r0 = 3
12: (95) exit
13: (b7) r0 = 2
14: (95) exit
";
    assert_eq!(p.listing(), want);
    p.set_variable_map_fd(9);
    assert!(p.listing().contains("r8 = map[fd:9][0]+0"));
}

#[test]
fn variable_block_is_naturally_aligned() {
    let f = frag(
        "d",
        vec![
            device("a", ScalarType::U8),
            device("b", ScalarType::U32),
            device("c", ScalarType::Bool),
            device("d", ScalarType::I16),
            device("e", ScalarType::U64),
            device("a", ScalarType::U8), // declared twice, placed once
        ],
        &[],
    );
    let block = variable_block(&[GroupDevice::new("dev", f)]).expect("places");
    let offs: Vec<(&str, u32)> = block
        .vars
        .iter()
        .map(|v| (v.name.as_str(), v.offset))
        .collect();
    assert_eq!(offs, [("a", 0), ("b", 4), ("c", 8), ("d", 10), ("e", 16)]);
    assert_eq!(block.size, 24);
}

/// Links one device with `f` (connected to the stepper, linked to "leader") next to a
/// leader device, and returns the errors, all of which must name `f`.
fn errors_for(f: Fragment) -> Vec<LinkErrorKind> {
    let name = f.name.clone();
    let leader = frag("leader", vec![device("encoder", ScalarType::I32)], &[]);
    let errs = errors_of(link_group(&GroupLink::new(
        vec![
            GroupDevice::new("leader", leader),
            GroupDevice::new("dev", f)
                .terminal("stepper", stepper())
                .device_link("leader", "leader")
                .device_link("elsewhere", "other-group-device"),
        ],
        3,
    )));
    for e in &errs {
        assert_eq!(e.fragment, name, "{e}");
        assert!(e.to_string().starts_with(&format!("fragment {name:?}")));
    }
    errs.into_iter().map(|e| e.kind).collect()
}

#[test]
fn every_error_names_its_fragment() {
    use LinkErrorKind as K;
    let one =
        |items: &[(Insn, &[RelocKind])], vars: Vec<VarDecl>| errors_for(frag("bad", vars, items));

    assert_eq!(one(&[(Insn::Exit, &[])], vec![]), [K::Exit]);
    assert_eq!(
        one(
            &[(Insn::Call { helper: 12 }, &[RelocKind::Helper(12)])],
            vec![]
        ),
        [K::TailCall]
    );
    assert_eq!(
        one(
            &[(Insn::Call { helper: 0 }, &[RelocKind::Helper(1)])],
            vec![]
        ),
        [K::HelperNotAllowed {
            id: 1,
            allowed: helper::ALLOWED.to_vec()
        }]
    );
    assert_eq!(
        one(&[(Insn::Call { helper: 5 }, &[])], vec![]),
        [K::CallWithoutRelocation(5)]
    );
    let mut pseudo = frag(
        "bad",
        vec![],
        &[(Insn::Call { helper: 0 }, &[RelocKind::Helper(5)])],
    );
    pseudo.insns[0] = RawInsn::new(0x85, 0, 1, 0, 0);
    assert_eq!(errors_for(pseudo), [K::PseudoCall(1)]);
    assert_eq!(
        one(&[(Insn::LdMapFd { dst: r(1), fd: 3 }, &[])], vec![]),
        [K::MapLoad]
    );
    assert_eq!(
        one(&[(mov(9, 0), &[])], vec![]),
        [K::WritesReservedRegister(9)]
    );
    assert_eq!(
        one(&[(ld(Size::DW, 8, 10, -8), &[])], vec![]),
        [K::WritesReservedRegister(8), K::UnrelocatedStack(-8)]
    );
    assert_eq!(
        one(&[(Insn::Ja { off: 2 }, &[])], vec![]),
        [K::JumpOutside { target: 3, len: 1 }]
    );
    assert_eq!(
        one(&[(jmp(JmpCond::Eq, 1, 0, -2), &[])], vec![]),
        [K::JumpOutside { target: -1, len: 1 }]
    );
    assert_eq!(
        one(
            &[
                (Insn::Ja { off: 1 }, &[]),
                (Insn::LdImm64 { dst: r(1), imm: 1 }, &[])
            ],
            vec![]
        ),
        [K::JumpIntoWideLoad(2)]
    );
    assert_eq!(
        one(&[(st(Size::DW, 10, -16, 1), &[])], vec![]),
        [K::UnrelocatedStack(-16)]
    );
    assert_eq!(
        one(&[(st(Size::DW, 10, -8, 1), &[RelocKind::Stack])], vec![]),
        [K::StackOutsideFrame {
            off: -8,
            size: 8,
            frame: 0
        }]
    );
    assert_eq!(
        one(&[(ld(Size::B, 1, 8, 0), &[])], vec![]),
        [K::UnrelocatedDeviceAccess(0)]
    );
    assert_eq!(
        one(&[(ld(Size::H, 1, 9, 13), &[])], vec![]),
        [K::FixedPacketBeyondLen {
            start: 13,
            end: 15,
            fixed: 0
        }]
    );
    assert_eq!(
        one(
            &[(ld(Size::H, 1, 9, 0), &[RelocKind::TerminalByte(0)])],
            vec![terminal("absent", "velocity", ScalarType::U16)]
        ),
        [K::TerminalLinkNotConnected {
            link: "absent".into(),
            var: "velocity".into()
        }]
    );
    assert_eq!(
        one(
            &[(ld(Size::H, 1, 9, 0), &[RelocKind::TerminalByte(0)])],
            vec![optional("absent", "velocity", ScalarType::U16)]
        ),
        [K::OptionalUseOutsideRegion {
            link: "absent".into(),
            var: "velocity".into()
        }]
    );
    assert_eq!(
        one(&[], vec![terminal("stepper", "torque", ScalarType::U16)]),
        [K::UnknownTerminalVariable {
            link: "stepper".into(),
            terminal: "EL7031 at 1001".into(),
            var: "torque".into()
        }]
    );
    assert_eq!(
        one(&[], vec![terminal("stepper", "velocity", ScalarType::U32)]),
        [K::TerminalTypeMismatch {
            var: "velocity".into(),
            terminal: "EL7031 at 1001".into(),
            declared: "u32".into(),
            bit_len: 16,
            bit_offset: 0
        }]
    );
    // A whole-byte type on a field that is not byte aligned.
    assert!(matches!(
        one(&[], vec![terminal("stepper", "mode", ScalarType::Bits(3))])[..],
        [K::TerminalTypeMismatch { bit_len: 4, .. }]
    ));
    assert_eq!(
        one(&[], vec![foreign("nolink", "encoder", ScalarType::I32)]),
        [K::DeviceLinkNotConnected {
            link: "nolink".into(),
            var: "encoder".into()
        }]
    );
    assert_eq!(
        one(&[], vec![foreign("elsewhere", "encoder", ScalarType::I32)]),
        [K::ForeignDeviceNotInGroup {
            link: "elsewhere".into(),
            device: "other-group-device".into()
        }]
    );
    assert_eq!(
        one(&[], vec![foreign("leader", "position", ScalarType::I32)]),
        [K::UnknownForeignVariable {
            link: "leader".into(),
            device: "leader".into(),
            var: "position".into()
        }]
    );
    assert_eq!(
        one(&[], vec![foreign("leader", "encoder", ScalarType::U16)]),
        [K::DeviceVarTypeMismatch {
            device: "leader".into(),
            var: "encoder".into(),
            actual: "i32".into(),
            declared: "u16".into()
        }]
    );
    assert_eq!(
        one(
            &[(ld(Size::W, 1, 8, 0), &[RelocKind::DeviceVar(0)])],
            vec![device("small", ScalarType::U16)]
        ),
        [K::AccessOutsideVariable {
            var: "small".into(),
            addend: 0,
            size: 4,
            var_bytes: 2
        }]
    );
    assert_eq!(
        one(
            &[(ld(Size::B, 1, 9, 2), &[RelocKind::TerminalByte(0)])],
            vec![terminal("stepper", "velocity", ScalarType::U16)]
        ),
        [K::AccessOutsideVariable {
            var: "velocity".into(),
            addend: 2,
            size: 1,
            var_bytes: 2
        }]
    );
    // A malformed fragment (TerminalByte against a device variable).
    assert!(matches!(
        one(
            &[(ld(Size::B, 1, 9, 0), &[RelocKind::TerminalByte(0)])],
            vec![device("x", ScalarType::U8)]
        )[..],
        [K::Malformed(_)]
    ));
    let mut verdict = frag("bad", vec![], &[(mov(0, 1), &[])]);
    verdict.sets_verdict = true;
    assert_eq!(errors_for(verdict), [K::SetsVerdictInGroup]);
    let mut big = frag("bad", vec![], &[]);
    big.frame_size = 504;
    assert_eq!(
        errors_for(big),
        [K::FrameTooLarge {
            frame: 504,
            prologue: 16,
            max: 512
        }]
    );
}

#[test]
fn overflowing_relocations_are_errors() {
    use LinkErrorKind as K;
    let far = TerminalLayout::new("far")
        .with("v", VariableAddress::bytes(40_000, 8))
        .with("wide", VariableAddress::bits(0, 7, 30));
    let f = frag(
        "over",
        vec![
            terminal("t", "v", ScalarType::U8),
            terminal("t", "wide", ScalarType::Bits(30)),
        ],
        &[
            (ld(Size::B, 1, 9, 0), &[RelocKind::TerminalByte(0)]),
            (alu(AluOp::And, 1, 0), &[RelocKind::TerminalBitMask(1)]),
        ],
    );
    let errs = errors_of(link_group(&GroupLink::new(
        vec![GroupDevice::new("over", f).terminal("t", far)],
        3,
    )));
    let kinds: Vec<_> = errs
        .iter()
        .map(|e| (&e.fragment[..], e.slot, &e.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                "over",
                Some(0),
                &K::FieldOverflow {
                    what: "variable \"v\"".into(),
                    value: 40_000,
                    field: "off"
                }
            ),
            (
                "over",
                Some(1),
                &K::FieldOverflow {
                    what: "bit mask of variable \"wide\"".into(),
                    value: ((1i64 << 30) - 1) << 7,
                    field: "imm"
                }
            ),
        ]
    );
}

#[test]
fn all_errors_of_all_fragments_are_reported() {
    let a = frag("a", vec![], &[(Insn::Exit, &[]), (mov(10, 0), &[])]);
    let b = frag("b", vec![], &[(Insn::Ja { off: 5 }, &[])]);
    let c = frag("c", vec![], &[(mov(1, 0), &[])]);
    let errs = errors_of(link_group(&GroupLink::new(
        vec![
            GroupDevice::new("a", a),
            GroupDevice::new("b", b),
            GroupDevice::new("c", c),
        ],
        3,
    )));
    let who: Vec<(&str, Option<usize>)> =
        errs.iter().map(|e| (e.fragment.as_str(), e.slot)).collect();
    assert_eq!(who, [("a", Some(0)), ("a", Some(1)), ("b", Some(0))]);
    let text = LinkErrors(errs).to_string();
    assert!(text.contains("3 error(s)"), "{text}");
    assert!(
        text.contains("fragment \"b\", slot 0: jumps to slot 6"),
        "{text}"
    );
}

/// A fragment with an Optional region of link "limits" (slots 3..6) and jumps crossing
/// it forwards and backwards, one landing on its start and one on the fragment's end.
fn optional_fragment() -> Fragment {
    frag(
        "opt",
        vec![optional("limits", "low", ScalarType::Bool)],
        &[
            (mov(1, 1), &[]),                 // 0
            (jmp(JmpCond::Eq, 1, 0, 4), &[]), // 1 -> 6
            (jmp(JmpCond::Eq, 1, 1, 0), &[]), // 2 -> 3 (region start)
            (
                ld(Size::B, 2, 9, 0), // 3 region
                &[
                    RelocKind::TerminalByte(0),
                    RelocKind::Optional {
                        link: "limits".into(),
                        len: 3,
                    },
                ],
            ),
            (alu(AluOp::Rsh, 2, 0), &[RelocKind::TerminalBitShift(0)]), // 4
            (jmp(JmpCond::Eq, 2, 0, 0), &[]),                           // 5 -> 6 (region end)
            (mov(3, 2), &[]),                                           // 6
            (jmp(JmpCond::Gt, 3, 5, -7), &[]),                          // 7 -> 1
            (jmp(JmpCond::Lt, 3, 9, 0), &[]),                           // 8 -> 9 (end)
        ],
    )
}

#[test]
fn optional_region_is_removed_and_crossing_jumps_shortened() {
    let p = link_group(&GroupLink::new(
        vec![GroupDevice::new("opt", optional_fragment())],
        3,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        region(&p, "opt"),
        [
            mov(1, 1),
            jmp(JmpCond::Eq, 1, 0, 1),
            jmp(JmpCond::Eq, 1, 1, 0),
            mov(3, 2),
            jmp(JmpCond::Gt, 3, 5, -4),
            jmp(JmpCond::Lt, 3, 9, 0),
        ]
    );
    let reg = p
        .source_map
        .iter()
        .find(|r| r.name == "opt")
        .expect("region");
    assert_eq!(reg.fragment_slots, [0, 1, 2, 6, 7, 8]);
    assert_eq!(p.min_len, 0, "the removed variable needs no packet bytes");

    // Connected: the region stays, relocated.
    let limits = TerminalLayout::new("EL1002").with("low", VariableAddress::bits(40, 5, 1));
    let p = link_group(&GroupLink::new(
        vec![GroupDevice::new("opt", optional_fragment()).terminal("limits", limits)],
        3,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let code = region(&p, "opt");
    assert_eq!(code.len(), 9);
    assert_eq!(code[1], jmp(JmpCond::Eq, 1, 0, 4));
    assert_eq!(code[3], ld(Size::B, 2, 9, 40));
    assert_eq!(code[4], alu(AluOp::Rsh, 2, 5));
    assert_eq!(p.min_len, 41);
}

#[test]
fn optional_regions_must_be_single_entry_single_exit() {
    use LinkErrorKind as K;
    let region = |start: u32, len: u32| Relocation {
        insn: start,
        kind: RelocKind::Optional {
            link: "limits".into(),
            len,
        },
    };
    // Slot 1 jumps into the middle of region 2..5.
    let mut f = frag(
        "bad",
        vec![],
        &[
            (mov(1, 0), &[]),
            (jmp(JmpCond::Eq, 1, 0, 1), &[]),
            (mov(2, 0), &[]),
            (mov(2, 1), &[]),
            (jmp(JmpCond::Eq, 1, 0, 1), &[]), // 4 -> 6: leaves the region past its end
            (mov(3, 0), &[]),
        ],
    );
    f.relocs.push(region(2, 3));
    assert_eq!(
        errors_for(f.clone()),
        [
            K::JumpIntoOptional {
                target: 3,
                start: 2,
                end: 5,
                link: "limits".into()
            },
            K::JumpOutOfOptional {
                target: 6,
                start: 2,
                end: 5,
                link: "limits".into()
            },
        ]
    );
    f.insns[1].off = 0;
    f.insns[4].off = 0;
    f.relocs.push(region(4, 2));
    assert_eq!(
        errors_for(f),
        [K::OptionalOverlap {
            a_start: 2,
            a_end: 5,
            b_start: 4,
            b_end: 6
        }]
    );
}

#[test]
fn sixty_four_frames_overlay_in_one_stack() {
    let motor = |i: usize| Fragment {
        frame_size: 256,
        ..frag(
            &format!("motor{i}"),
            vec![device("velocity", ScalarType::I32)],
            &[
                (mov(1, i as i32), &[]),
                (st(Size::DW, 10, -256, 1), &[RelocKind::Stack]),
                (st(Size::DW, 10, -8, 1), &[RelocKind::Stack]),
                (ld(Size::DW, 2, 10, -256), &[RelocKind::Stack]),
                (st(Size::W, 8, 0, 2), &[RelocKind::DeviceVar(0)]),
            ],
        )
    };
    let devices: Vec<GroupDevice> = (0..64)
        .map(|i| GroupDevice::new(format!("motor{i}"), motor(i)))
        .collect();
    let p = link_group(&GroupLink::new(devices, 3)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.stack_size, 16 + 256);
    assert_eq!(p.variables.size, 64 * 4);
    for i in 0..64 {
        let code = region(&p, &format!("motor{i}"));
        assert_eq!(code[1], st(Size::DW, 10, -272, 1));
        assert_eq!(code[2], st(Size::DW, 10, -24, 1));
        assert_eq!(code[3], ld(Size::DW, 2, 10, -272));
        assert_eq!(code[4], st(Size::W, 8, i as i16 * 4, 2));
    }
}

#[test]
fn standalone_exits_return_their_verdict() {
    // if r1 == 0 { exit(XDP_DROP) } ; r2 = 1 ; (falls off: XDP_PASS)
    let mut f = Fragment {
        fixed_packet_len: 14,
        ..frag(
            "filter",
            vec![device("seen", ScalarType::U64)],
            &[
                (ld(Size::H, 1, 9, 12), &[]),                        // 0
                (jmp(JmpCond::Ne, 1, 0x88a4, 2), &[]),               // 1 -> 4
                (mov(0, XDP_DROP), &[]),                             // 2
                (Insn::Ja { off: 3 }, &[]),                          // 3 -> 7 (end): exit
                (mov(2, 1), &[]),                                    // 4
                (st(Size::DW, 8, 0, 2), &[RelocKind::DeviceVar(0)]), // 5
                (jmp(JmpCond::Eq, 2, 0, 0), &[]),                    // 6 -> 7 (end): plain
            ],
        )
    };
    f.sets_verdict = true;
    let p = link_standalone(&StandaloneLink::new(f.clone()).with_variable_map(5))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.min_len, 14);
    let text = p.listing();
    let want_tail = "\
; filter
8: (69) r1 = *(u16 *)(r9 +12)
9: (55) if r1 != 0x88a4 goto pc+2
10: (b7) r0 = 1
11: (05) goto pc+4
12: (b7) r2 = 1
13: (7b) *(u64 *)(r8 +0) = r2
14: (15) if r2 == 0x0 goto pc+0
; <epilogue>
15: (b7) r0 = 2
16: (95) exit
";
    assert!(text.ends_with(want_tail), "{text}");
    assert!(text.contains("5: (2d) if r3 > r2 goto pc+9\n"), "{text}");

    // Without a variable map the device variable is an error.
    let errs = errors_of(link_standalone(&StandaloneLink::new(f.clone())));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].kind, LinkErrorKind::NoVariableMap);

    // An exit as the last statement, without its goto.
    let g = Fragment {
        sets_verdict: true,
        ..frag(
            "last",
            vec![],
            &[
                (mov(1, 0), &[]),
                (jmp(JmpCond::Eq, 1, 0, 2), &[]), // -> 4 (end): plain
                (mov(1, 2), &[]),
                (mov(0, XDP_TX), &[]),
            ],
        )
    };
    let p = link_standalone(&StandaloneLink::new(g)).unwrap_or_else(|e| panic!("{e}"));
    let text = p.listing();
    assert!(
        text.ends_with(
            "; last\n6: (b7) r1 = 0\n7: (15) if r1 == 0x0 goto pc+3\n8: (b7) r1 = 2\n9: (b7) r0 = 3\n; <epilogue>\n10: (05) goto pc+1\n11: (b7) r0 = 2\n12: (95) exit\n"
        ),
        "{text}"
    );
}

#[test]
fn far_length_check_uses_a_long_jump() {
    // 40 000 slots: the prologue's jump to `pass` no longer fits 16 bits.
    let items: Vec<(Insn, &[RelocKind])> = std::iter::once((mov(1, 0), &[][..]))
        .chain(std::iter::repeat_n(
            (alu(AluOp::Add, 1, 1), &[][..]),
            39_999,
        ))
        .collect();
    let f = frag("long", vec![], &items);
    let p = link_group(&GroupLink::new(vec![GroupDevice::new("long", f)], 3))
        .unwrap_or_else(|e| panic!("{e}"));
    let head = disasm_lines(&p, 0..9);
    assert_eq!(head[5], "5: (bd) if r3 <= r2 goto pc+1");
    let pass = p.insns.len() - 2;
    // gotol at slot 6 lands on `r0 = XDP_PASS`.
    assert_eq!(head[6], format!("6: (06) gotol pc+{}", pass - 7));
    let tail = disasm_lines(&p, pass..pass + 2);
    assert_eq!(
        tail,
        [
            format!("{pass}: (b7) r0 = 2"),
            format!("{}: (95) exit", pass + 1)
        ]
    );
}

fn disasm_lines(p: &LinkedProgram, range: std::ops::Range<usize>) -> Vec<String> {
    ferrocat_plugin_api::ebpf::disasm::disassemble(&p.insns)
        .into_iter()
        .filter(|(s, _)| range.contains(s))
        .map(|(s, t)| format!("{s}: {t}"))
        .collect()
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    fn any_reloc() -> impl Strategy<Value = RelocKind> {
        prop_oneof![
            (0u32..4).prop_map(RelocKind::TerminalByte),
            (0u32..4).prop_map(RelocKind::TerminalBitShift),
            (0u32..4).prop_map(RelocKind::TerminalBitMask),
            (0u32..4).prop_map(RelocKind::TerminalBitClear),
            (0u32..4).prop_map(RelocKind::DeviceVar),
            Just(RelocKind::Stack),
            prop_oneof![Just(5), Just(7), Just(12), any::<i32>()].prop_map(RelocKind::Helper),
            (0u32..6).prop_map(|len| RelocKind::Optional {
                link: "limits".into(),
                len
            }),
        ]
    }

    /// Slots drawn from the instruction forms fragments use, with registers, offsets
    /// and immediates chosen so that jumps, stack, packet and r8 accesses hit every rule.
    fn any_slot() -> impl Strategy<Value = RawInsn> {
        let code = prop_oneof![
            Just(0x07u8),
            Just(0xb7),
            Just(0xbf),
            Just(0x57),
            Just(0x47),
            Just(0x77),
            Just(0x61),
            Just(0x69),
            Just(0x71),
            Just(0x79),
            Just(0x63),
            Just(0x6b),
            Just(0x73),
            Just(0x7b),
            Just(0x7a),
            Just(0xdb),
            Just(0x05),
            Just(0x06),
            Just(0x15),
            Just(0x2d),
            Just(0x16),
            Just(0x85),
            Just(0x95),
            Just(0x18),
            Just(0x00),
            any::<u8>(),
        ];
        (
            code,
            0u8..11,
            prop_oneof![0u8..11, Just(1u8)],
            -12i16..12,
            -40i32..40,
        )
            .prop_map(|(code, dst, src, off, imm)| RawInsn::new(code, dst, src, off, imm))
    }

    fn any_fragment() -> impl Strategy<Value = Fragment> {
        (
            proptest::collection::vec(any_slot(), 0..24),
            proptest::collection::vec((0u32..26, any_reloc()), 0..8),
            0u32..3,
            any::<(bool, bool)>(),
            0u32..32,
        )
            .prop_map(|(insns, relocs, frame, (cycle, verdict), fixed)| Fragment {
                name: "fuzz".into(),
                uses_cycle_time: cycle,
                sets_verdict: verdict,
                frame_size: frame * 8,
                fixed_packet_len: fixed,
                vars: vec![
                    terminal("stepper", "velocity", ScalarType::U16),
                    optional("limits", "low", ScalarType::Bool),
                    device("speed", ScalarType::U32),
                    foreign("leader", "encoder", ScalarType::I32),
                ],
                insns,
                relocs: relocs
                    .into_iter()
                    .map(|(insn, kind)| Relocation { insn, kind })
                    .collect(),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whatever the fragment, linking returns a program or errors naming it; a
        /// program decodes and every jump stays inside it.
        #[test]
        fn linking_never_panics(f in any_fragment(), standalone in any::<bool>()) {
            let leader = frag("leader", vec![device("encoder", ScalarType::I32)], &[]);
            let result = if standalone {
                link_standalone(&StandaloneLink::new(f).with_variable_map(3))
            } else {
                link_group(&GroupLink::new(
                    vec![
                        GroupDevice::new("leader", leader),
                        GroupDevice::new("fuzz", f)
                            .terminal("stepper", stepper())
                            .device_link("leader", "leader"),
                    ],
                    3,
                ))
            };
            match result {
                Err(LinkErrors(errs)) => {
                    prop_assert!(!errs.is_empty());
                    for e in errs {
                        prop_assert_eq!(e.fragment.as_str(), "fuzz");
                    }
                }
                Ok(p) => {
                    let insns = decode(&p.insns).expect("a linked program decodes");
                    for (slot, insn) in insns {
                        let target = match insn {
                            Insn::Ja { off } | Insn::Jmp { off, .. } => Some(slot as i64 + 1 + i64::from(off)),
                            Insn::JaLong { imm } => Some(slot as i64 + 1 + i64::from(imm)),
                            Insn::Exit => None,
                            _ => None,
                        };
                        if let Some(t) = target {
                            prop_assert!(t >= 0 && (t as usize) < p.insns.len(), "slot {} -> {}", slot, t);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn standalone_programs_load_only_the_maps_they_were_given() {
    let load = |fd: i32| {
        frag(
            "lookup",
            vec![],
            &[(Insn::LdMapFd { dst: Reg::R1, fd }, &[])],
        )
    };
    let mut given = StandaloneLink::new(load(7));
    given.map_fds = vec![7, 9];
    let linked = link_standalone(&given).expect("a listed map links");
    let listed: Vec<Insn> = decode(&linked.insns)
        .expect("decodes")
        .into_iter()
        .map(|(_, i)| i)
        .collect();
    assert!(listed.contains(&Insn::LdMapFd {
        dst: Reg::R1,
        fd: 7
    }));

    let mut other = StandaloneLink::new(load(8));
    other.map_fds = vec![7, 9];
    let errors = errors_of(link_standalone(&other));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].fragment, "lookup");
    assert_eq!(errors[0].kind, LinkErrorKind::MapLoad);
    // Sync groups never accept map loads.
    let group = GroupLink::new(vec![GroupDevice::new("lookup", load(7))], 3);
    assert!(
        errors_of(link_group(&group))
            .iter()
            .any(|e| e.kind == LinkErrorKind::MapLoad)
    );
}
