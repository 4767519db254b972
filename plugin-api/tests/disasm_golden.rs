//! Golden tests of the disassembler: every instruction form against the text the kernel
//! verifier prints for it (kernel/bpf/disasm.c), from raw bytes where the encoding
//! matters.

use ferrocat_plugin_api::ebpf::disasm::{disassemble, format_insn, listing, listing_range};
use ferrocat_plugin_api::ebpf::insn::{
    AluOp, AtomicOp, Endian, Insn, JmpCond, RawInsn, Reg, Size, Src, encode,
};

fn r(n: u8) -> Reg {
    Reg::new(n).expect("register")
}

/// Encodes `insn` and returns the single listing line (`(code) text`).
fn line(insn: Insn) -> String {
    let slots = encode(&[insn]);
    let lines = disassemble(&slots);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, 0);
    lines[0].1.clone()
}

fn alu(wide: bool, op: AluOp, dst: u8, src: Src) -> Insn {
    Insn::Alu {
        wide,
        op,
        dst: r(dst),
        src,
    }
}

#[test]
fn alu_forms() {
    use AluOp::*;
    let cases: &[(Insn, &str)] = &[
        (alu(true, Mov, 0, Src::Imm(2)), "(b7) r0 = 2"),
        (alu(false, Mov, 0, Src::Imm(-1)), "(b4) w0 = -1"),
        (alu(true, Mov, 1, Src::Reg(r(6))), "(bf) r1 = r6"),
        (alu(false, Add, 1, Src::Reg(r(2))), "(0c) w1 += w2"),
        (alu(true, Add, 1, Src::Imm(5)), "(07) r1 += 5"),
        (alu(true, Sub, 3, Src::Reg(r(4))), "(1f) r3 -= r4"),
        (alu(true, Mul, 3, Src::Imm(-3)), "(27) r3 *= -3"),
        (alu(true, Div, 3, Src::Reg(r(4))), "(3f) r3 /= r4"),
        (alu(true, SDiv, 1, Src::Reg(r(2))), "(3f) r1 s/= r2"),
        (alu(false, SDiv, 1, Src::Imm(7)), "(34) w1 s/= 7"),
        (alu(true, Or, 1, Src::Imm(0x10)), "(47) r1 |= 16"),
        (alu(true, And, 1, Src::Reg(r(2))), "(5f) r1 &= r2"),
        (alu(true, Lsh, 1, Src::Imm(63)), "(67) r1 <<= 63"),
        (alu(false, Rsh, 1, Src::Imm(3)), "(74) w1 >>= 3"),
        (alu(true, Mod, 1, Src::Reg(r(2))), "(9f) r1 %= r2"),
        (alu(true, SMod, 1, Src::Reg(r(2))), "(9f) r1 s%= r2"),
        (alu(false, SMod, 1, Src::Imm(-2)), "(94) w1 s%= -2"),
        (alu(true, Xor, 1, Src::Imm(1)), "(a7) r1 ^= 1"),
        (alu(true, Arsh, 7, Src::Imm(4)), "(c7) r7 s>>= 4"),
        (alu(false, Arsh, 7, Src::Reg(r(1))), "(cc) w7 s>>= w1"),
        (
            Insn::Neg {
                wide: true,
                dst: r(2),
            },
            "(87) r2 = -r2",
        ),
        (
            Insn::Neg {
                wide: false,
                dst: r(2),
            },
            "(84) w2 = -w2",
        ),
    ];
    for (insn, want) in cases {
        assert_eq!(line(*insn), *want, "{insn:?}");
    }
}

#[test]
fn sign_extending_moves_and_byte_swaps() {
    let movsx = |wide, bits| Insn::MovSx {
        wide,
        dst: r(1),
        src: r(2),
        bits,
    };
    assert_eq!(line(movsx(true, 16)), "(bf) r1 = (s16)r2");
    assert_eq!(line(movsx(true, 8)), "(bf) r1 = (s8)r2");
    assert_eq!(line(movsx(true, 32)), "(bf) r1 = (s32)r2");
    assert_eq!(line(movsx(false, 8)), "(bc) w1 = (s8)w2");
    let end = |op, bits| Insn::End {
        op,
        dst: r(1),
        bits,
    };
    assert_eq!(line(end(Endian::ToBe, 16)), "(dc) r1 = be16 r1");
    assert_eq!(line(end(Endian::ToBe, 64)), "(dc) r1 = be64 r1");
    assert_eq!(line(end(Endian::ToLe, 32)), "(d4) r1 = le32 r1");
    assert_eq!(line(end(Endian::Swap, 64)), "(d7) r1 = bswap64 r1");
    assert_eq!(line(end(Endian::Swap, 16)), "(d7) r1 = bswap16 r1");
}

#[test]
fn loads_and_stores() {
    let load = |size, signed, dst, src, off| Insn::Load {
        size,
        signed,
        dst: r(dst),
        src: r(src),
        off,
    };
    assert_eq!(
        line(load(Size::W, false, 2, 8, 12)),
        "(61) r2 = *(u32 *)(r8 +12)"
    );
    assert_eq!(
        line(load(Size::H, false, 2, 9, 0)),
        "(69) r2 = *(u16 *)(r9 +0)"
    );
    assert_eq!(
        line(load(Size::B, false, 2, 9, 1)),
        "(71) r2 = *(u8 *)(r9 +1)"
    );
    assert_eq!(
        line(load(Size::DW, false, 0, 10, -8)),
        "(79) r0 = *(u64 *)(r10 -8)"
    );
    assert_eq!(
        line(load(Size::B, true, 1, 2, 0)),
        "(91) r1 = *(s8 *)(r2 +0)"
    );
    assert_eq!(
        line(load(Size::H, true, 1, 2, -2)),
        "(89) r1 = *(s16 *)(r2 -2)"
    );
    assert_eq!(
        line(load(Size::W, true, 1, 2, 4)),
        "(81) r1 = *(s32 *)(r2 +4)"
    );
    let store = |size, dst, off, src| Insn::Store {
        size,
        dst: r(dst),
        off,
        src,
    };
    assert_eq!(
        line(store(Size::DW, 10, -8, Src::Reg(r(1)))),
        "(7b) *(u64 *)(r10 -8) = r1"
    );
    assert_eq!(
        line(store(Size::W, 9, 4, Src::Reg(r(3)))),
        "(63) *(u32 *)(r9 +4) = r3"
    );
    assert_eq!(
        line(store(Size::H, 9, 4, Src::Reg(r(3)))),
        "(6b) *(u16 *)(r9 +4) = r3"
    );
    assert_eq!(
        line(store(Size::B, 9, 4, Src::Reg(r(3)))),
        "(73) *(u8 *)(r9 +4) = r3"
    );
    assert_eq!(
        line(store(Size::W, 10, -4, Src::Imm(-7))),
        "(62) *(u32 *)(r10 -4) = -7"
    );
    assert_eq!(
        line(store(Size::DW, 8, 0, Src::Imm(0))),
        "(7a) *(u64 *)(r8 +0) = 0"
    );
    assert_eq!(
        line(store(Size::B, 8, 3, Src::Imm(255))),
        "(72) *(u8 *)(r8 +3) = 255"
    );
}

#[test]
fn atomics() {
    let at = |size, op| Insn::Atomic {
        size,
        op,
        dst: r(8),
        src: r(1),
        off: 0,
    };
    use AtomicOp::*;
    assert_eq!(line(at(Size::DW, Add)), "(db) lock *(u64 *)(r8 +0) += r1");
    assert_eq!(line(at(Size::W, Add)), "(c3) lock *(u32 *)(r8 +0) += r1");
    assert_eq!(line(at(Size::DW, Or)), "(db) lock *(u64 *)(r8 +0) |= r1");
    assert_eq!(line(at(Size::DW, And)), "(db) lock *(u64 *)(r8 +0) &= r1");
    assert_eq!(line(at(Size::W, Xor)), "(c3) lock *(u32 *)(r8 +0) ^= r1");
    assert_eq!(
        line(at(Size::DW, FetchAdd)),
        "(db) r1 = atomic64_fetch_add((u64 *)(r8 +0), r1)"
    );
    assert_eq!(
        line(at(Size::W, FetchAdd)),
        "(c3) r1 = atomic_fetch_add((u32 *)(r8 +0), r1)"
    );
    assert_eq!(
        line(at(Size::DW, FetchOr)),
        "(db) r1 = atomic64_fetch_or((u64 *)(r8 +0), r1)"
    );
    assert_eq!(
        line(at(Size::DW, FetchAnd)),
        "(db) r1 = atomic64_fetch_and((u64 *)(r8 +0), r1)"
    );
    assert_eq!(
        line(at(Size::DW, FetchXor)),
        "(db) r1 = atomic64_fetch_xor((u64 *)(r8 +0), r1)"
    );
    assert_eq!(
        line(at(Size::DW, Xchg)),
        "(db) r1 = atomic64_xchg((u64 *)(r8 +0), r1)"
    );
    assert_eq!(
        line(at(Size::DW, CmpXchg)),
        "(db) r0 = atomic64_cmpxchg((u64 *)(r8 +0), r0, r1)"
    );
    assert_eq!(
        line(at(Size::W, CmpXchg)),
        "(c3) r0 = atomic_cmpxchg((u32 *)(r8 +0), r0, r1)"
    );
}

#[test]
fn wide_immediates_and_maps() {
    assert_eq!(
        line(Insn::LdImm64 {
            dst: r(1),
            imm: 0x12_3456_7890
        }),
        "(18) r1 = 0x1234567890"
    );
    assert_eq!(
        line(Insn::LdImm64 { dst: r(1), imm: -1 }),
        "(18) r1 = 0xffffffffffffffff"
    );
    assert_eq!(
        line(Insn::LdMapFd { dst: r(1), fd: 7 }),
        "(18) r1 = map[fd:7]"
    );
    assert_eq!(
        line(Insn::LdMapValue {
            dst: r(8),
            fd: 7,
            off: 16
        }),
        "(18) r8 = map[fd:7][0]+16"
    );
}

#[test]
fn jumps_calls_exit() {
    let jmp = |wide, cond, dst, src, off| Insn::Jmp {
        wide,
        cond,
        dst: r(dst),
        src,
        off,
    };
    use JmpCond::*;
    assert_eq!(
        line(jmp(true, Le, 3, Src::Reg(r(2)), 2)),
        "(bd) if r3 <= r2 goto pc+2"
    );
    assert_eq!(
        line(jmp(false, SGt, 1, Src::Imm(5), -3)),
        "(66) if w1 s> 0x5 goto pc-3"
    );
    assert_eq!(
        line(jmp(true, Eq, 1, Src::Imm(0), 0)),
        "(15) if r1 == 0x0 goto pc+0"
    );
    assert_eq!(
        line(jmp(true, Ne, 1, Src::Imm(-1), 1)),
        "(55) if r1 != 0xffffffff goto pc+1"
    );
    assert_eq!(
        line(jmp(true, Gt, 3, Src::Reg(r(2)), 1)),
        "(2d) if r3 > r2 goto pc+1"
    );
    assert_eq!(
        line(jmp(true, Ge, 3, Src::Imm(16), 1)),
        "(35) if r3 >= 0x10 goto pc+1"
    );
    assert_eq!(
        line(jmp(true, Lt, 3, Src::Imm(16), 1)),
        "(a5) if r3 < 0x10 goto pc+1"
    );
    assert_eq!(
        line(jmp(true, Set, 3, Src::Imm(1), 1)),
        "(45) if r3 & 0x1 goto pc+1"
    );
    assert_eq!(
        line(jmp(true, SGe, 3, Src::Reg(r(4)), 1)),
        "(7d) if r3 s>= r4 goto pc+1"
    );
    assert_eq!(
        line(jmp(true, SLt, 3, Src::Reg(r(4)), 1)),
        "(cd) if r3 s< r4 goto pc+1"
    );
    assert_eq!(
        line(jmp(false, SLe, 3, Src::Reg(r(4)), 1)),
        "(de) if w3 s<= w4 goto pc+1"
    );
    assert_eq!(line(Insn::Ja { off: 1 }), "(05) goto pc+1");
    assert_eq!(line(Insn::Ja { off: -5 }), "(05) goto pc-5");
    assert_eq!(line(Insn::JaLong { imm: 70000 }), "(06) gotol pc+70000");
    assert_eq!(
        line(Insn::Call { helper: 5 }),
        "(85) call bpf_ktime_get_ns#5"
    );
    assert_eq!(
        line(Insn::Call { helper: 7 }),
        "(85) call bpf_get_prandom_u32#7"
    );
    assert_eq!(
        line(Insn::Call { helper: 99999 }),
        "(85) call unknown#99999"
    );
    assert_eq!(line(Insn::Exit), "(95) exit");
}

#[test]
fn format_insn_has_no_opcode() {
    assert_eq!(
        format_insn(&Insn::Load {
            size: Size::W,
            signed: false,
            dst: r(2),
            src: r(8),
            off: 12
        }),
        "r2 = *(u32 *)(r8 +12)"
    );
}

#[test]
fn listing_numbers_slots_and_skips_second_half_of_wide_loads() {
    let slots = encode(&[
        Insn::LdImm64 { dst: r(1), imm: 1 },
        Insn::Alu {
            wide: true,
            op: AluOp::Mov,
            dst: r(0),
            src: Src::Imm(2),
        },
        Insn::Exit,
    ]);
    assert_eq!(
        listing(&slots),
        "0: (18) r1 = 0x1\n2: (b7) r0 = 2\n3: (95) exit\n"
    );
    assert_eq!(listing_range(&slots, 1, 3), "2: (b7) r0 = 2\n");
}

#[test]
fn undecodable_slots_are_shown_and_the_walk_continues() {
    let slots = [
        RawInsn::new(0xff, 0, 0, 0, 0),
        RawInsn::new(0xb7, 11, 0, 0, 0),
        RawInsn::new(0x95, 0, 0, 0, 0),
        RawInsn::new(0x18, 1, 0, 0, 0),
    ];
    let lines = disassemble(&slots);
    assert_eq!(
        lines,
        vec![
            (0, "(ff) invalid: slot 0: unknown opcode 0xff".to_string()),
            (
                1,
                "(b7) invalid: slot 1: invalid register number 11".to_string()
            ),
            (2, "(95) exit".to_string()),
            (
                3,
                "(18) invalid: slot 3: 64-bit immediate load lacks its second slot".to_string()
            ),
        ]
    );
}

#[test]
fn arbitrary_slots_never_panic() {
    // Every opcode byte with a spread of register, offset and immediate values.
    for code in 0..=255u8 {
        for regs in [0x00u8, 0x21, 0xab, 0xff] {
            for (off, imm) in [(0i16, 0i32), (1, 16), (-1, -1), (i16::MIN, i32::MAX)] {
                let slots = [RawInsn {
                    code,
                    regs,
                    off,
                    imm,
                }];
                let lines = disassemble(&slots);
                assert_eq!(lines.len(), 1);
                assert!(lines[0].1.starts_with(&format!("({code:02x}) ")));
            }
        }
    }
    assert!(disassemble(&[]).is_empty());
}
