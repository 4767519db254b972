//! Kernel tests of linked programs: hand-made fragments linked into sync-group and
//! standalone programs load through the real verifier and compute the asserted results
//! under `BPF_PROG_TEST_RUN`. They need root (CAP_BPF, CAP_NET_ADMIN) and fail without
//! it.

use ferrocat::bpf::map::{Map, MapSpec};
use ferrocat::bpf::prog::{LoadError, LoadOptions, Program, xdp_action};
use ferrocat::link::*;
use ferrocat_plugin_api::ebpf::insn::{AluOp, AtomicOp, Insn, JmpCond, Size, Src};
use ferrocat_plugin_api::fragment::{
    Fragment, RelocKind, ScalarType, VarDecl, VarKind, VarType, helper,
};

mod link_support;
use link_support::{frag, ld, r, st};

fn var(kind: VarKind, name: &str, scalar: ScalarType) -> VarDecl {
    VarDecl {
        kind,
        name: name.into(),
        ty: VarType::le(scalar),
    }
}

fn term(link: &str) -> VarKind {
    VarKind::Terminal {
        link: link.into(),
        optional: false,
    }
}

fn alu(wide: bool, op: AluOp, dst: u8, src: Src) -> Insn {
    Insn::Alu {
        wide,
        op,
        dst: r(dst),
        src,
    }
}

fn imm(v: i32) -> Src {
    Src::Imm(v)
}

fn reg(n: u8) -> Src {
    Src::Reg(r(n))
}

/// The process image of the drive terminal in the test frames.
fn drive() -> TerminalLayout {
    TerminalLayout::new("drive at 1001")
        .with("actual", VariableAddress::bytes(16, 32))
        .with("target_velocity", VariableAddress::bytes(24, 16))
        .with("fault_reset", VariableAddress::bits(26, 0, 1))
        .with("enable", VariableAddress::bits(26, 2, 1))
        .with("mode", VariableAddress::bits(27, 5, 3))
}

/// Copies the encoder from the packet into its device variable and counts cycles.
fn leader() -> Fragment {
    frag(
        "leader",
        vec![
            var(term("drive"), "actual", ScalarType::I32),
            var(VarKind::Device, "encoder", ScalarType::I32),
            var(VarKind::Device, "cycles", ScalarType::U64),
        ],
        &[
            (ld(Size::W, 1, 9, 0), &[RelocKind::TerminalByte(0)]),
            (st(Size::W, 8, 0, 1), &[RelocKind::DeviceVar(1)]),
            (alu(true, AluOp::Mov, 2, imm(1)), &[]),
            (
                Insn::Atomic {
                    size: Size::DW,
                    op: AtomicOp::Add,
                    dst: r(8),
                    src: r(2),
                    off: 0,
                },
                &[RelocKind::DeviceVar(2)],
            ),
        ],
    )
}

/// velocity = leader.encoder * gain; sets `enable`, clears `fault_reset`, records the
/// mode bits, the cycle time and the clock, with a round trip through its stack frame.
fn follower() -> Fragment {
    let f = frag(
        "follower",
        vec![
            var(
                VarKind::Foreign {
                    link: "leader".into(),
                },
                "encoder",
                ScalarType::I32,
            ),
            var(VarKind::Device, "gain", ScalarType::I32),
            var(term("drive"), "target_velocity", ScalarType::I16),
            var(term("drive"), "enable", ScalarType::Bool),
            var(term("drive"), "fault_reset", ScalarType::Bool),
            var(term("drive"), "mode", ScalarType::Bits(3)),
            var(VarKind::Device, "mode_seen", ScalarType::U8),
            var(VarKind::Device, "cycle_time", ScalarType::U64),
            var(VarKind::Device, "now", ScalarType::U64),
        ],
        &[
            (ld(Size::W, 1, 8, 0), &[RelocKind::DeviceVar(0)]),
            (ld(Size::W, 2, 8, 0), &[RelocKind::DeviceVar(1)]),
            (alu(false, AluOp::Mul, 1, reg(2)), &[]),
            (st(Size::H, 9, 0, 1), &[RelocKind::TerminalByte(2)]),
            // enable and fault_reset share byte 26.
            (ld(Size::B, 3, 9, 0), &[RelocKind::TerminalByte(3)]),
            (
                alu(true, AluOp::Or, 3, imm(0)),
                &[RelocKind::TerminalBitMask(3)],
            ),
            (
                alu(true, AluOp::And, 3, imm(0)),
                &[RelocKind::TerminalBitClear(4)],
            ),
            (st(Size::B, 9, 0, 3), &[RelocKind::TerminalByte(3)]),
            // mode: 3 bits at bit 5 of byte 27, a 2-byte window.
            (ld(Size::H, 4, 9, 0), &[RelocKind::TerminalByte(5)]),
            (
                alu(true, AluOp::Rsh, 4, imm(0)),
                &[RelocKind::TerminalBitShift(5)],
            ),
            (alu(true, AluOp::And, 4, imm(7)), &[]),
            (st(Size::DW, 10, -16, 4), &[RelocKind::Stack]),
            (ld(Size::DW, 5, 10, -16), &[RelocKind::Stack]),
            (st(Size::B, 8, 0, 5), &[RelocKind::DeviceVar(6)]),
            (ld(Size::DW, 6, 10, -8), &[]),
            (st(Size::DW, 8, 0, 6), &[RelocKind::DeviceVar(7)]),
            (
                Insn::Call { helper: 0 },
                &[RelocKind::Helper(helper::KTIME_GET_NS)],
            ),
            (st(Size::DW, 8, 0, 0), &[RelocKind::DeviceVar(8)]),
        ],
    );
    Fragment {
        frame_size: 16,
        uses_cycle_time: true,
        ..f
    }
}

fn frame() -> Vec<u8> {
    let mut p = vec![0u8; 64];
    p[16..20].copy_from_slice(&(-1234i32).to_le_bytes());
    p[26] = 0b0000_0001; // fault_reset set, enable clear
    p[27] = 0b1010_0000; // mode bits 5..7 = 0b101
    p[28] = 0xff; // the rest of the mode window, which must stay unused
    p
}

fn load(p: &LinkedProgram, name: &str) -> Program {
    let map = p.bpf_source_map();
    Program::load(&p.insns, &LoadOptions::xdp(name).with_source_map(&map))
        .unwrap_or_else(|e| panic!("load failed: {e}\n{}", p.listing()))
}

#[test]
fn linked_group_runs_and_computes() {
    let devices = vec![
        GroupDevice::new("leader", leader()).terminal("drive", drive()),
        GroupDevice::new("follower", follower())
            .terminal("drive", drive())
            .device_link("leader", "leader"),
    ];
    let block = variable_block(&devices).unwrap_or_else(|e| panic!("{e}"));
    let map = Map::create(&MapSpec::mmapable_array("ferrocat_vars", block.size, 1))
        .expect("variable map");
    let p = link_group(&GroupLink::new(devices, map.raw_fd())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.variables, block);
    assert_eq!(p.min_len, 29);
    let prog = load(&p, "link_group");
    let mem = map.mmap().expect("mmap");
    let off = |d: &str, v: &str| block.offset(d, v).expect("placed") as usize;
    mem.write::<i32>(off("follower", "gain"), 3).expect("gain");

    let run = prog.test_run(&frame()).expect("test run");
    assert_eq!(run.retval, xdp_action::TX);
    let mut want = frame();
    want[24..26].copy_from_slice(&(-1234i16 * 3).to_le_bytes());
    want[26] = 0b0000_0100;
    assert_eq!(run.data, want);
    assert_eq!(
        mem.read::<i32>(off("leader", "encoder")).expect("encoder"),
        -1234
    );
    assert_eq!(mem.read::<u64>(off("leader", "cycles")).expect("cycles"), 1);
    assert_eq!(
        mem.read::<u8>(off("follower", "mode_seen")).expect("mode"),
        0b101
    );
    let cycle_time = mem
        .read::<u64>(off("follower", "cycle_time"))
        .expect("time");
    let now = mem.read::<u64>(off("follower", "now")).expect("now");
    assert!(cycle_time > 0 && now >= cycle_time, "{cycle_time} {now}");

    // A frame shorter than the process image passes untouched and runs no fragment.
    let short = frame()[..28].to_vec();
    let run = prog.test_run(&short).expect("test run");
    assert_eq!(run.retval, xdp_action::PASS);
    assert_eq!(run.data, short);
    assert_eq!(mem.read::<u64>(off("leader", "cycles")).expect("cycles"), 1);

    let run = prog.test_run(&frame()).expect("test run");
    assert_eq!(run.retval, xdp_action::TX);
    assert_eq!(mem.read::<u64>(off("leader", "cycles")).expect("cycles"), 2);
}

/// Writes 0x55 into `limits.low`'s byte if the optional link is connected, and always
/// counts in `runs`.
fn optional_fragment() -> Fragment {
    frag(
        "opt",
        vec![
            VarDecl {
                kind: VarKind::Terminal {
                    link: "limits".into(),
                    optional: true,
                },
                name: "low".into(),
                ty: VarType::le(ScalarType::U8),
            },
            var(VarKind::Device, "runs", ScalarType::U32),
        ],
        &[
            (alu(true, AluOp::Mov, 1, imm(1)), &[]),
            (
                Insn::Jmp {
                    wide: true,
                    cond: JmpCond::Eq,
                    dst: r(1),
                    src: imm(0),
                    off: 2,
                },
                &[],
            ),
            (
                alu(true, AluOp::Mov, 2, imm(0x55)),
                &[RelocKind::Optional {
                    link: "limits".into(),
                    len: 2,
                }],
            ),
            (st(Size::B, 9, 0, 2), &[RelocKind::TerminalByte(0)]),
            (ld(Size::W, 3, 8, 0), &[RelocKind::DeviceVar(1)]),
            (alu(true, AluOp::Add, 3, imm(1)), &[]),
            (st(Size::W, 8, 0, 3), &[RelocKind::DeviceVar(1)]),
        ],
    )
}

#[test]
fn optional_link_absent_or_present_both_load_and_run() {
    let limits = TerminalLayout::new("EL1002").with("low", VariableAddress::bytes(40, 8));
    for connected in [false, true] {
        let mut dev = GroupDevice::new("opt", optional_fragment());
        if connected {
            dev = dev.terminal("limits", limits.clone());
        }
        let block = variable_block(std::slice::from_ref(&dev)).expect("block");
        let map =
            Map::create(&MapSpec::mmapable_array("ferrocat_opt", block.size, 1)).expect("map");
        let p =
            link_group(&GroupLink::new(vec![dev], map.raw_fd())).unwrap_or_else(|e| panic!("{e}"));
        let prog = load(&p, "link_optional");
        let input = vec![0u8; 48];
        let run = prog.test_run(&input).expect("run");
        assert_eq!(run.retval, xdp_action::TX);
        assert_eq!(run.data[40], if connected { 0x55 } else { 0 });
        let mem = map.mmap().expect("mmap");
        assert_eq!(mem.read::<u32>(0).expect("runs"), 1);
    }
}

#[test]
fn sixty_four_fragments_fit_the_stack_load_and_run() {
    // Motor i: velocity_i (packet, i16 at 14 + 2i) = (position_i (device) - 100 * i)
    // through a 256-byte frame; all 64 frames overlay.
    let motor = |i: usize| Fragment {
        frame_size: 256,
        ..frag(
            &format!("motor{i}"),
            vec![
                var(VarKind::Device, "position", ScalarType::I32),
                var(term("stepper"), "velocity", ScalarType::I16),
            ],
            &[
                (ld(Size::W, 1, 8, 0), &[RelocKind::DeviceVar(0)]),
                (alu(true, AluOp::Sub, 1, imm(100 * i as i32)), &[]),
                (st(Size::DW, 10, -256, 1), &[RelocKind::Stack]),
                (alu(true, AluOp::Mov, 1, imm(0)), &[]),
                (ld(Size::DW, 2, 10, -256), &[RelocKind::Stack]),
                (st(Size::H, 9, 0, 2), &[RelocKind::TerminalByte(1)]),
            ],
        )
    };
    let devices: Vec<GroupDevice> = (0..64)
        .map(|i| {
            GroupDevice::new(format!("motor{i}"), motor(i)).terminal(
                "stepper",
                TerminalLayout::new(format!("stepper {i}"))
                    .with("velocity", VariableAddress::bytes(14 + 2 * i as u32, 16)),
            )
        })
        .collect();
    let block = variable_block(&devices).expect("block");
    let map = Map::create(&MapSpec::mmapable_array("ferrocat_m64", block.size, 1)).expect("map");
    let p = link_group(&GroupLink::new(devices, map.raw_fd())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.stack_size, 272);
    assert_eq!(p.min_len, 14 + 128);
    let prog = load(&p, "link_motors64");
    let mem = map.mmap().expect("mmap");
    for i in 0..64 {
        let at = block
            .offset(&format!("motor{i}"), "position")
            .expect("placed") as usize;
        mem.write::<i32>(at, 1000 + i).expect("position");
    }
    let run = prog.test_run(&[0u8; 160]).expect("run");
    assert_eq!(run.retval, xdp_action::TX);
    for i in 0..64 {
        let at = 14 + 2 * i;
        let v = i16::from_le_bytes([run.data[at], run.data[at + 1]]);
        assert_eq!(v, (1000 + i as i32 - 100 * i as i32) as i16, "motor {i}");
    }
}

/// Counts EtherCAT frames (EtherType 0x88a4) in a global and drops them; passes others.
fn filter() -> Fragment {
    Fragment {
        fixed_packet_len: 14,
        sets_verdict: true,
        ..frag(
            "ethercat_filter",
            vec![var(VarKind::Device, "seen", ScalarType::U64)],
            &[
                (ld(Size::H, 1, 9, 12), &[]),
                (
                    Insn::End {
                        op: ferrocat_plugin_api::ebpf::insn::Endian::ToBe,
                        dst: r(1),
                        bits: 16,
                    },
                    &[],
                ),
                (
                    Insn::Jmp {
                        wide: true,
                        cond: JmpCond::Ne,
                        dst: r(1),
                        src: imm(0x88a4),
                        off: 4,
                    },
                    &[],
                ),
                (alu(true, AluOp::Mov, 2, imm(1)), &[]),
                (
                    Insn::Atomic {
                        size: Size::DW,
                        op: AtomicOp::Add,
                        dst: r(8),
                        src: r(2),
                        off: 0,
                    },
                    &[RelocKind::DeviceVar(0)],
                ),
                (alu(true, AluOp::Mov, 0, imm(XDP_DROP)), &[]),
                (Insn::Ja { off: 0 }, &[]),
            ],
        )
    }
}

#[test]
fn standalone_program_returns_the_fragments_verdict() {
    let block = standalone_variable_block(&filter()).expect("block");
    let map = Map::create(&MapSpec::mmapable_array("ferrocat_glob", block.size, 1)).expect("map");
    let p = link_standalone(&StandaloneLink::new(filter()).with_variable_map(map.raw_fd()))
        .unwrap_or_else(|e| panic!("{e}"));
    let prog = load(&p, "link_filter");
    let mem = map.mmap().expect("mmap");
    let mut ecat = vec![0u8; 60];
    ecat[12..14].copy_from_slice(&[0x88, 0xa4]);
    let mut ip = vec![0u8; 60];
    ip[12..14].copy_from_slice(&[0x08, 0x00]);
    assert_eq!(prog.test_run(&ecat).expect("run").retval, xdp_action::DROP);
    assert_eq!(prog.test_run(&ip).expect("run").retval, xdp_action::PASS);
    assert_eq!(prog.test_run(&ecat).expect("run").retval, xdp_action::DROP);
    assert_eq!(mem.read::<u64>(0).expect("seen"), 2);
}

#[test]
fn verifier_rejection_names_the_fragment() {
    // Reads r6 before writing it: the verifier refuses (R6 !read_ok).
    let good = frag("good", vec![], &[(alu(true, AluOp::Mov, 1, imm(0)), &[])]);
    let bad = frag(
        "uninit",
        vec![var(VarKind::Device, "out", ScalarType::U64)],
        &[
            (alu(true, AluOp::Mov, 1, imm(0)), &[]),
            (st(Size::DW, 8, 0, 6), &[RelocKind::DeviceVar(0)]),
        ],
    );
    let devices = vec![
        GroupDevice::new("good", good),
        GroupDevice::new("uninit", bad),
    ];
    let block = variable_block(&devices).expect("block");
    let map = Map::create(&MapSpec::mmapable_array("ferrocat_bad", block.size, 1)).expect("map");
    let p = link_group(&GroupLink::new(devices, map.raw_fd())).unwrap_or_else(|e| panic!("{e}"));
    let sm = p.bpf_source_map();
    let err = Program::load(&p.insns, &LoadOptions::xdp("link_bad").with_source_map(&sm))
        .expect_err("the verifier must refuse");
    let LoadError::Rejected(v) = &err else {
        panic!("expected a verifier rejection, got {err}");
    };
    let slot = v.failing_insn.expect("failing slot");
    assert_eq!(p.source_of(slot), Some(("uninit", Some(1))), "{err}");
    assert_eq!(v.fragment.as_ref().map(|f| f.0.as_str()), Some("uninit"));
    assert!(v.message.contains("R6 !read_ok"), "{err}");
}

/// Random fragments of verifier-safe pieces (ALU, forward jumps, stack, packet and
/// variable accesses, helper calls, Optional regions over whole pieces, early exits):
/// whenever the linker accepts one, with the optional link connected or not, in a group
/// or standalone, the kernel's verifier accepts the program and it runs.
mod random_fragments {
    use super::*;
    use ferrocat_plugin_api::fragment::encoding::instruction_starts;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Piece {
        Add(u8, i32),
        Mov(u8, i32),
        /// Forward jump; the target is chosen among the following piece boundaries.
        Jump(u8, i32, usize),
        StackStore(u8, u8),
        StackLoad(u8, u8),
        DeviceStore(u8),
        PacketLoad(u8),
        PacketStore(u8),
        OptionalLoad(u8),
        Call,
        Exit(i32),
        /// An Optional region over the next `n` pieces.
        Optional(usize),
    }

    fn piece() -> impl Strategy<Value = Piece> {
        let r = 0u8..8;
        prop_oneof![
            (r.clone(), -9i32..9).prop_map(|(a, b)| Piece::Add(a, b)),
            (r.clone(), -9i32..9).prop_map(|(a, b)| Piece::Mov(a, b)),
            (r.clone(), -3i32..3, 0usize..8).prop_map(|(a, b, t)| Piece::Jump(a, b, t)),
            (r.clone(), 0u8..4).prop_map(|(a, s)| Piece::StackStore(a, s)),
            (r.clone(), 0u8..4).prop_map(|(a, s)| Piece::StackLoad(a, s)),
            r.clone().prop_map(Piece::DeviceStore),
            r.clone().prop_map(Piece::PacketLoad),
            r.clone().prop_map(Piece::PacketStore),
            r.clone().prop_map(Piece::OptionalLoad),
            Just(Piece::Call),
            prop_oneof![Just(1), Just(2), Just(3)].prop_map(Piece::Exit),
            (1usize..4).prop_map(Piece::Optional),
        ]
    }

    /// Builds the fragment: a prefix initialising r0–r7, then the pieces.
    /// (`Exit` is conditional so that no piece is dead code.)
    fn build(pieces: &[Piece], verdict: bool) -> Fragment {
        let sizes: Vec<usize> = pieces
            .iter()
            .map(|p| match p {
                Piece::Call => 6,
                Piece::Exit(_) => 3,
                Piece::Optional(_) => 0,
                _ => 1,
            })
            .collect();
        let prefix = 8;
        let mut starts = vec![prefix];
        for s in &sizes {
            starts.push(starts.last().copied().unwrap_or(prefix) + s);
        }
        let len = *starts.last().unwrap_or(&prefix);
        let mut items: Vec<(Insn, Vec<RelocKind>)> = (0..8)
            .map(|n| (alu(true, AluOp::Mov, n, imm(0)), vec![]))
            .collect();
        let mut pending_optional: Vec<(usize, RelocKind)> = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let at = starts[i];
            let here: Vec<RelocKind> = pending_optional
                .iter()
                .filter(|(s, _)| *s == at)
                .map(|(_, k)| k.clone())
                .collect();
            pending_optional.retain(|(s, _)| *s != at);
            let mut push = |insn: Insn, mut kinds: Vec<RelocKind>, first: bool| {
                if first {
                    kinds.extend(here.iter().cloned());
                }
                items.push((insn, kinds));
            };
            match *p {
                Piece::Add(a, b) => push(alu(true, AluOp::Add, a, imm(b)), vec![], true),
                Piece::Mov(a, b) => push(alu(true, AluOp::Mov, a, imm(b)), vec![], true),
                Piece::Jump(a, b, t) => {
                    let targets: Vec<usize> = starts[i + 1..].to_vec();
                    let target = targets[t % targets.len()];
                    let off = (target - at - 1) as i16;
                    push(
                        Insn::Jmp {
                            wide: true,
                            cond: JmpCond::SGt,
                            dst: r(a),
                            src: imm(b),
                            off,
                        },
                        vec![],
                        true,
                    );
                }
                Piece::StackStore(a, s) => push(
                    st(Size::DW, 10, -8 * (i16::from(s) + 1), a),
                    vec![RelocKind::Stack],
                    true,
                ),
                Piece::StackLoad(a, s) => push(
                    ld(Size::DW, a, 10, -8 * (i16::from(s) + 1)),
                    vec![RelocKind::Stack],
                    true,
                ),
                Piece::DeviceStore(a) => {
                    push(st(Size::W, 8, 0, a), vec![RelocKind::DeviceVar(2)], true)
                }
                Piece::PacketLoad(a) => {
                    push(ld(Size::H, a, 9, 0), vec![RelocKind::TerminalByte(0)], true)
                }
                Piece::PacketStore(a) => {
                    push(st(Size::H, 9, 0, a), vec![RelocKind::TerminalByte(0)], true)
                }
                Piece::OptionalLoad(a) => {
                    push(ld(Size::B, a, 9, 0), vec![RelocKind::TerminalByte(1)], true)
                }
                Piece::Call => {
                    push(
                        Insn::Call { helper: 0 },
                        vec![RelocKind::Helper(helper::KTIME_GET_NS)],
                        true,
                    );
                    for n in 1..=5 {
                        push(alu(true, AluOp::Mov, n, imm(0)), vec![], false);
                    }
                }
                Piece::Exit(v) => {
                    // `if r1 s> v goto +2; r0 = v; goto end`: conditional, so the code
                    // after it stays reachable (the verifier refuses dead code).
                    push(
                        Insn::Jmp {
                            wide: true,
                            cond: JmpCond::SGt,
                            dst: r(1),
                            src: imm(v),
                            off: 2,
                        },
                        vec![],
                        true,
                    );
                    push(alu(true, AluOp::Mov, 0, imm(v)), vec![], false);
                    let off = (len - (at + 2) - 1) as i16;
                    push(Insn::Ja { off }, vec![], false);
                }
                Piece::Optional(n) => {
                    let end = starts[(i + 1 + n).min(pieces.len())];
                    if end > at {
                        pending_optional.push((
                            at,
                            RelocKind::Optional {
                                link: "limits".into(),
                                len: (end - at) as u32,
                            },
                        ));
                    }
                }
            }
        }
        let refs: Vec<(Insn, &[RelocKind])> =
            items.iter().map(|(i, k)| (*i, k.as_slice())).collect();
        let mut f = frag(
            "random",
            vec![
                var(term("drive"), "target_velocity", ScalarType::U16),
                VarDecl {
                    kind: VarKind::Terminal {
                        link: "limits".into(),
                        optional: true,
                    },
                    name: "low".into(),
                    ty: VarType::le(ScalarType::U8),
                },
                var(VarKind::Device, "out", ScalarType::U32),
            ],
            &refs,
        );
        f.frame_size = 32;
        f.sets_verdict = verdict && pieces.iter().any(|p| matches!(p, Piece::Exit(_)));
        debug_assert!(instruction_starts(&f.insns).is_ok());
        f
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn accepted_programs_load_and_run(
            pieces in proptest::collection::vec(piece(), 0..20),
            connected in any::<bool>(),
            standalone in any::<bool>(),
        ) {
            let f = build(&pieces, standalone);
            let limits = TerminalLayout::new("EL1002").with("low", VariableAddress::bytes(40, 8));
            let block = VariableBlock::place([("random", &f)]).expect("block");
            let map = Map::create(&MapSpec::mmapable_array("ferrocat_rnd", block.size, 1))
                .expect("map");
            let linked = if standalone {
                let mut s = StandaloneLink::new(f.clone()).with_variable_map(map.raw_fd());
                s.terminals.insert("drive".into(), drive());
                if connected {
                    s.terminals.insert("limits".into(), limits);
                }
                link_standalone(&s)
            } else {
                let mut d = GroupDevice::new("random", f.clone()).terminal("drive", drive());
                if connected {
                    d = d.terminal("limits", limits);
                }
                link_group(&GroupLink::new(vec![d], map.raw_fd()))
            };
            let Ok(p) = linked else {
                // Refused fragments are covered by link_rules; exits in a group, regions
                // entered by jumps and optional loads outside regions are expected here.
                return Ok(());
            };
            let prog = load(&p, "link_random");
            let run = prog.test_run(&[0u8; 64]).expect("test run");
            if standalone {
                prop_assert!([1, 2, 3].contains(&run.retval), "verdict {}", run.retval);
            } else {
                prop_assert_eq!(run.retval, xdp_action::TX);
            }
        }
    }
}
