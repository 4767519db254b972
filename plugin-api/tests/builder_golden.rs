//! Golden disassembly of every builder construct: the exact instructions (in the
//! kernel verifier's syntax) and relocations each statement compiles to, and the build
//! errors of what the builder refuses.

use ferrocat_plugin_api::ebpf::builder::{BuildError, Builder, MapRef, q16};
use ferrocat_plugin_api::ebpf::disasm::disassemble;
use ferrocat_plugin_api::fragment::{Fragment, RelocKind, ScalarType as T, VarKind, VarType};

/// The listing with each relocation shown after its instruction.
fn render(f: &Fragment) -> String {
    let var = |v: &u32| {
        let d = &f.vars[*v as usize];
        match &d.kind {
            VarKind::Terminal { link, .. } | VarKind::Foreign { link } => {
                format!("{link}.{}", d.name)
            }
            VarKind::Device => d.name.clone(),
        }
    };
    let mut at: Vec<Vec<&RelocKind>> = vec![Vec::new(); f.insns.len()];
    for r in &f.relocs {
        at[r.insn as usize].push(&r.kind);
    }
    let mut out = String::new();
    for (slot, text) in disassemble(&f.insns) {
        out.push_str(&format!("{slot}: {text}"));
        for kind in &at[slot] {
            out.push_str(&match kind {
                RelocKind::TerminalByte(v) => format!(" ; byte {}", var(v)),
                RelocKind::TerminalBitShift(v) => format!(" ; shift {}", var(v)),
                RelocKind::TerminalBitMask(v) => format!(" ; mask {}", var(v)),
                RelocKind::TerminalBitClear(v) => format!(" ; clear {}", var(v)),
                RelocKind::DeviceVar(v) => format!(" ; dev {}", var(v)),
                RelocKind::Stack => " ; stack".to_string(),
                RelocKind::Helper(h) => format!(" ; helper {h}"),
                RelocKind::Optional { link, len } => format!(" ; optional {link} {len}"),
            });
        }
        out.push('\n');
    }
    out
}

#[track_caller]
fn check(f: Fragment, want: &str) {
    let got = render(&f);
    if std::env::var_os("GOLDEN_PRINT").is_some() {
        println!("=== {}\n{got}", std::panic::Location::caller());
        return;
    }
    let want: Vec<&str> = want
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines, want, "\n--- got:\n{got}");
}

/// Builds a fragment and checks it against the fragment format: every relocation on an
/// instruction of the right shape, and a lossless byte encoding.
fn build(f: impl FnOnce(&Builder)) -> Fragment {
    let b = Builder::new("golden");
    f(&b);
    let f = b.finish().expect("builds");
    assert_eq!(f.check(), vec![], "fragment format check");
    let back = Fragment::from_bytes(&f.to_bytes()).expect("decodes");
    assert_eq!(back, f, "byte encoding round trip");
    f
}

fn build_err(f: impl FnOnce(&Builder)) -> BuildError {
    let b = Builder::new("golden");
    f(&b);
    b.finish().expect_err("must be refused")
}

#[test]
fn typed_loads_extend_by_type() {
    let f = build(|b| {
        let o = b.device("o", T::I64);
        for (k, t) in [
            T::U8,
            T::U16,
            T::U32,
            T::U64,
            T::I8,
            T::I16,
            T::I32,
            T::I64,
            T::Bool,
        ]
        .into_iter()
        .enumerate()
        {
            o.assign(b.device(&format!("v{k}"), t));
        }
    });
    check(
        f,
        "
            0: (71) r0 = *(u8 *)(r8 +0) ; dev v0
            1: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            2: (69) r0 = *(u16 *)(r8 +0) ; dev v1
            3: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            4: (61) r0 = *(u32 *)(r8 +0) ; dev v2
            5: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            6: (79) r0 = *(u64 *)(r8 +0) ; dev v3
            7: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            8: (91) r0 = *(s8 *)(r8 +0) ; dev v4
            9: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            10: (89) r0 = *(s16 *)(r8 +0) ; dev v5
            11: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            12: (81) r0 = *(s32 *)(r8 +0) ; dev v6
            13: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            14: (79) r0 = *(u64 *)(r8 +0) ; dev v7
            15: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            16: (71) r0 = *(u8 *)(r8 +0) ; dev v8
            17: (7b) *(u64 *)(r8 +0) = r0 ; dev o
        ",
    );
}

#[test]
fn stores_truncate_and_constants_use_immediates() {
    let f = build(|b| {
        let x = b.device("x", T::I64);
        b.device("a", T::U8).assign(x);
        b.device("c", T::I32).assign(-5);
        b.device("d", T::U64).assign(0x1_2345_6789i64);
        b.device("e", T::Bool).assign(x);
        b.device("f", T::Bool).assign(x.gt(3));
        x.assign(0xffff_ffffu64);
    });
    check(
        f,
        "
            0: (79) r0 = *(u64 *)(r8 +0) ; dev x
            1: (73) *(u8 *)(r8 +0) = r0 ; dev a
            2: (62) *(u32 *)(r8 +0) = -5 ; dev c
            3: (18) r0 = 0x123456789
            5: (7b) *(u64 *)(r8 +0) = r0 ; dev d
            6: (79) r0 = *(u64 *)(r8 +0) ; dev x
            7: (15) if r0 == 0x0 goto pc+1
            8: (b7) r0 = 1
            9: (73) *(u8 *)(r8 +0) = r0 ; dev e
            10: (b7) r0 = 1
            11: (79) r1 = *(u64 *)(r8 +0) ; dev x
            12: (65) if r1 s> 0x3 goto pc+1
            13: (b7) r0 = 0
            14: (73) *(u8 *)(r8 +0) = r0 ; dev f
            15: (b4) w0 = -1
            16: (7b) *(u64 *)(r8 +0) = r0 ; dev x
        ",
    );
}

#[test]
fn terminal_variables_bytes_and_big_endian() {
    let f = build(|b| {
        let o = b.device("o", T::I64);
        o.assign(b.terminal("t", "s16", T::I16));
        o.assign(b.terminal("t", "be32", VarType::be(T::I32)));
        b.terminal("t", "be16", VarType::be(T::U16)).assign(o);
        b.terminal("t", "be16", VarType::be(T::U16)).assign(0x1234);
    });
    check(
        f,
        "
            0: (89) r0 = *(s16 *)(r9 +0) ; byte t.s16
            1: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            2: (61) r0 = *(u32 *)(r9 +0) ; byte t.be32
            3: (dc) r0 = be32 r0
            4: (bf) r0 = (s32)r0
            5: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            6: (dc) r0 = be16 r0
            7: (6b) *(u16 *)(r9 +0) = r0 ; byte t.be16
            8: (6a) *(u16 *)(r9 +0) = 13330 ; byte t.be16
        ",
    );
}

#[test]
fn terminal_bit_fields() {
    let f = build(|b| {
        let o = b.device("o", T::I64);
        let f3 = b.terminal("t", "f3", T::Bits(3));
        let on = b.terminal("t", "on", T::Bool);
        let wide = b.terminal("t", "wide", T::Bits(40));
        o.assign(f3);
        f3.assign(o);
        f3.assign(5);
        on.assign(true);
        on.assign(false);
        o.assign(wide);
        wide.assign(o);
    });
    check(
        f,
        "
            0: (69) r0 = *(u16 *)(r9 +0) ; byte t.f3
            1: (77) r0 >>= 0 ; shift t.f3
            2: (57) r0 &= 7
            3: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            4: (57) r0 &= 7
            5: (67) r0 <<= 0 ; shift t.f3
            6: (69) r1 = *(u16 *)(r9 +0) ; byte t.f3
            7: (57) r1 &= 0 ; clear t.f3
            8: (4f) r1 |= r0
            9: (6b) *(u16 *)(r9 +0) = r1 ; byte t.f3
            10: (69) r0 = *(u16 *)(r9 +0) ; byte t.f3
            11: (57) r0 &= 0 ; clear t.f3
            12: (b7) r1 = 5
            13: (67) r1 <<= 0 ; shift t.f3
            14: (4f) r0 |= r1
            15: (6b) *(u16 *)(r9 +0) = r0 ; byte t.f3
            16: (71) r0 = *(u8 *)(r9 +0) ; byte t.on
            17: (47) r0 |= 0 ; mask t.on
            18: (73) *(u8 *)(r9 +0) = r0 ; byte t.on
            19: (71) r0 = *(u8 *)(r9 +0) ; byte t.on
            20: (57) r0 &= 0 ; clear t.on
            21: (73) *(u8 *)(r9 +0) = r0 ; byte t.on
            22: (79) r0 = *(u64 *)(r9 +0) ; byte t.wide
            23: (77) r0 >>= 0 ; shift t.wide
            24: (67) r0 <<= 24
            25: (77) r0 >>= 24
            26: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            27: (79) r1 = *(u64 *)(r9 +0) ; byte t.wide
            28: (bf) r2 = r1
            29: (77) r2 >>= 0 ; shift t.wide
            30: (af) r2 ^= r0
            31: (67) r2 <<= 24
            32: (77) r2 >>= 24
            33: (67) r2 <<= 0 ; shift t.wide
            34: (af) r1 ^= r2
            35: (7b) *(u64 *)(r9 +0) = r1 ; byte t.wide
        ",
    );
}

#[test]
fn fixed_packet_fields() {
    let f = build(|b| {
        let o = b.device("o", T::I64);
        o.assign(b.packet(12, VarType::be(T::U16)));
        o.assign(b.packet_bits_be(20, 3, 13));
        b.packet_bits(23, 4, 4).assign(9);
        b.packet(30, T::U8).assign(o);
    });
    assert_eq!(f.fixed_packet_len, 31);
    check(
        f,
        "
            0: (69) r0 = *(u16 *)(r9 +12)
            1: (dc) r0 = be16 r0
            2: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            3: (69) r0 = *(u16 *)(r9 +20)
            4: (dc) r0 = be16 r0
            5: (57) r0 &= 8191
            6: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            7: (71) r0 = *(u8 *)(r9 +23)
            8: (57) r0 &= -241
            9: (47) r0 |= 144
            10: (73) *(u8 *)(r9 +23) = r0
            11: (79) r0 = *(u64 *)(r8 +0) ; dev o
            12: (73) *(u8 *)(r9 +30) = r0
        ",
    );
}

#[test]
fn add_assign_on_a_packet_variable_is_load_add_store() {
    let f = build(|b| {
        b.terminal("t", "count", T::U16).add_assign(1);
        b.terminal("t", "count", T::U16)
            .add_assign(b.device("step", T::U16));
    });
    check(
        f,
        "
            0: (69) r0 = *(u16 *)(r9 +0) ; byte t.count
            1: (07) r0 += 1
            2: (6b) *(u16 *)(r9 +0) = r0 ; byte t.count
            3: (69) r0 = *(u16 *)(r9 +0) ; byte t.count
            4: (69) r1 = *(u16 *)(r8 +0) ; dev step
            5: (0f) r0 += r1
            6: (6b) *(u16 *)(r9 +0) = r0 ; byte t.count
        ",
    );
}

#[test]
fn device_and_foreign_variables() {
    let f = build(|b| {
        let enc = b.foreign("leader", "encoder", T::I32);
        let t = b.device("target", T::I64);
        t.assign((enc * 3) >> 1);
        b.foreign("leader", "set_control_word", T::U16).assign(7);
    });
    check(
        f,
        "
            0: (81) r0 = *(s32 *)(r8 +0) ; dev leader.encoder
            1: (27) r0 *= 3
            2: (c7) r0 s>>= 1
            3: (7b) *(u64 *)(r8 +0) = r0 ; dev target
            4: (6a) *(u16 *)(r8 +0) = 7 ; dev leader.set_control_word
        ",
    );
}

#[test]
fn locals_in_registers_and_on_the_stack() {
    let f = build(|b| {
        let x = b.device("x", T::I64);
        let a = b.temp(x + 1); // r6
        let c = b.temp(x * 2); // r7
        let d = b.local_named("d", T::I32); // stack
        d.assign(a + c);
        x.assign(d);
    });
    check(
        f,
        "
            0: (79) r6 = *(u64 *)(r8 +0) ; dev x
            1: (07) r6 += 1
            2: (79) r7 = *(u64 *)(r8 +0) ; dev x
            3: (27) r7 *= 2
            4: (bf) r0 = r6
            5: (0f) r0 += r7
            6: (bf) r0 = (s32)r0
            7: (7b) *(u64 *)(r10 -8) = r0 ; stack
            8: (7b) *(u64 *)(r8 +0) = r0 ; dev x
        ",
    );
}

#[test]
fn helpers_and_cycle_time() {
    let f = build(|b| {
        let x = b.device("x", T::U64);
        x.assign(b.ktime_get_ns());
        x.assign(b.get_prandom_u32() & 0xff);
        x.assign(b.cycle_time() - x);
    });
    assert!(f.uses_cycle_time);
    check(
        f,
        "
            0: (85) call unknown#0 ; helper 5
            1: (7b) *(u64 *)(r8 +0) = r0 ; dev x
            2: (85) call unknown#0 ; helper 7
            3: (57) r0 &= 255
            4: (7b) *(u64 *)(r8 +0) = r0 ; dev x
            5: (79) r0 = *(u64 *)(r10 -8)
            6: (79) r1 = *(u64 *)(r8 +0) ; dev x
            7: (1f) r0 -= r1
            8: (7b) *(u64 *)(r8 +0) = r0 ; dev x
        ",
    );
}

#[test]
fn values_live_across_helper_calls_are_kept_in_r6_r7_or_spilled() {
    let f = build(|b| {
        let x = b.device("x", T::U64);
        x.assign(x + (b.ktime_get_ns() ^ x));
        x.assign((b.ktime_get_ns() + x) - b.ktime_get_ns());
    });
    check(
        f,
        "
            0: (85) call unknown#0 ; helper 5
            1: (79) r1 = *(u64 *)(r8 +0) ; dev x
            2: (af) r0 ^= r1
            3: (0f) r1 += r0
            4: (7b) *(u64 *)(r8 +0) = r1 ; dev x
            5: (85) call unknown#0 ; helper 5
            6: (79) r1 = *(u64 *)(r8 +0) ; dev x
            7: (0f) r0 += r1
            8: (bf) r6 = r0
            9: (85) call unknown#0 ; helper 5
            10: (1f) r6 -= r0
            11: (7b) *(u64 *)(r8 +0) = r6 ; dev x
        ",
    );
}

#[test]
fn signed_and_unsigned_arithmetic() {
    let f = build(|b| {
        let s = b.device("s", T::I64);
        let u = b.device("u", T::U64);
        let o = b.device("o", T::I64);
        o.assign(s / s);
        o.assign(u / u);
        o.assign(s % 7);
        o.assign(u % 7u64);
        o.assign(s >> 3);
        o.assign(u >> 3);
        o.assign(s / -1);
        o.assign(s / 0);
        o.assign(s % 0);
        o.assign(u << 70);
        o.assign(u * 0x1_0000_0000u64);
    });
    check(
        f,
        "
            0: (79) r0 = *(u64 *)(r8 +0) ; dev s
            1: (79) r1 = *(u64 *)(r8 +0) ; dev s
            2: (3f) r0 s/= r1
            3: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            4: (79) r0 = *(u64 *)(r8 +0) ; dev u
            5: (79) r1 = *(u64 *)(r8 +0) ; dev u
            6: (3f) r0 /= r1
            7: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            8: (79) r0 = *(u64 *)(r8 +0) ; dev s
            9: (97) r0 s%= 7
            10: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            11: (97) r1 %= 7
            12: (7b) *(u64 *)(r8 +0) = r1 ; dev o
            13: (79) r0 = *(u64 *)(r8 +0) ; dev s
            14: (c7) r0 s>>= 3
            15: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            16: (79) r0 = *(u64 *)(r8 +0) ; dev u
            17: (77) r0 >>= 3
            18: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            19: (79) r0 = *(u64 *)(r8 +0) ; dev s
            20: (87) r0 = -r0
            21: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            22: (7a) *(u64 *)(r8 +0) = 0 ; dev o
            23: (79) r0 = *(u64 *)(r8 +0) ; dev s
            24: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            25: (79) r0 = *(u64 *)(r8 +0) ; dev u
            26: (67) r0 <<= 6
            27: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            28: (79) r0 = *(u64 *)(r8 +0) ; dev u
            29: (18) r1 = 0x100000000
            31: (2f) r0 *= r1
            32: (7b) *(u64 *)(r8 +0) = r0 ; dev o
        ",
    );
}

#[test]
fn abs_min_max_clamp() {
    let f = build(|b| {
        let s = b.device("s", T::I64);
        let u = b.device("u", T::U64);
        let o = b.device("o", T::I64);
        o.assign(s.abs());
        o.assign(s.min(u));
        o.assign(u.max(5u64));
        o.assign(s.clamp(-10, 10));
    });
    check(
        f,
        "
            0: (79) r0 = *(u64 *)(r8 +0) ; dev s
            1: (75) if r0 s>= 0x0 goto pc+1
            2: (87) r0 = -r0
            3: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            4: (79) r0 = *(u64 *)(r8 +0) ; dev s
            5: (79) r1 = *(u64 *)(r8 +0) ; dev u
            6: (dd) if r0 s<= r1 goto pc+1
            7: (bf) r0 = r1
            8: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            9: (35) if r1 >= 0x5 goto pc+1
            10: (b7) r1 = 5
            11: (7b) *(u64 *)(r8 +0) = r1 ; dev o
            12: (79) r0 = *(u64 *)(r8 +0) ; dev s
            13: (75) if r0 s>= 0xfffffff6 goto pc+1
            14: (b7) r0 = -10
            15: (d5) if r0 s<= 0xa goto pc+1
            16: (b7) r0 = 10
            17: (7b) *(u64 *)(r8 +0) = r0 ; dev o
        ",
    );
}

#[test]
fn and_or_not_short_circuit() {
    let f = build(|b| {
        let x = b.device("x", T::I64);
        let y = b.device("y", T::I64);
        b.if_(x.gt(1).and(y.lt(2)).or(!x.eq(y)), |_| x.assign(0));
        y.assign(x.ge(y).as_value());
    });
    check(
        f,
        "
            0: (79) r0 = *(u64 *)(r8 +0) ; dev x
            1: (d5) if r0 s<= 0x1 goto pc+2
            2: (79) r0 = *(u64 *)(r8 +0) ; dev y
            3: (c5) if r0 s< 0x2 goto pc+3
            4: (79) r0 = *(u64 *)(r8 +0) ; dev x
            5: (79) r1 = *(u64 *)(r8 +0) ; dev y
            6: (1d) if r0 == r1 goto pc+1
            7: (7a) *(u64 *)(r8 +0) = 0 ; dev x
            8: (b7) r0 = 1
            9: (79) r1 = *(u64 *)(r8 +0) ; dev x
            10: (79) r2 = *(u64 *)(r8 +0) ; dev y
            11: (7d) if r1 s>= r2 goto pc+1
            12: (b7) r0 = 0
            13: (7b) *(u64 *)(r8 +0) = r0 ; dev y
        ",
    );
}

#[test]
fn if_else_if_else() {
    let f = build(|b| {
        let x = b.device("x", T::I64);
        let o = b.device("o", T::I64);
        b.if_(x.lt(0), |_| o.assign(-1))
            .else_if(x.eq(0), |_| o.assign(0))
            .else_(|_| o.assign(1));
    });
    check(
        f,
        "
            0: (79) r0 = *(u64 *)(r8 +0) ; dev x
            1: (75) if r0 s>= 0x0 goto pc+2
            2: (7a) *(u64 *)(r8 +0) = -1 ; dev o
            3: (05) goto pc+4
            4: (55) if r0 != 0x0 goto pc+2
            5: (7a) *(u64 *)(r8 +0) = 0 ; dev o
            6: (05) goto pc+1
            7: (7a) *(u64 *)(r8 +0) = 1 ; dev o
        ",
    );
}

#[test]
fn bool_terminal_as_condition_uses_jset() {
    let f = build(|b| {
        let on = b.terminal("t", "on", T::Bool);
        let o = b.device("o", T::I64);
        b.if_(on, |_| o.assign(1));
        b.if_(!on.is_true(), |_| o.assign(2));
    });
    check(
        f,
        "
            0: (71) r0 = *(u8 *)(r9 +0) ; byte t.on
            1: (57) r0 &= 0 ; mask t.on
            2: (15) if r0 == 0x0 goto pc+1
            3: (7a) *(u64 *)(r8 +0) = 1 ; dev o
            4: (71) r0 = *(u8 *)(r9 +0) ; byte t.on
            5: (45) if r0 & 0x0 goto pc+1 ; mask t.on
            6: (7a) *(u64 *)(r8 +0) = 2 ; dev o
        ",
    );
}

#[test]
fn if_linked_is_an_optional_region() {
    let f = build(|b| {
        let o = b.device("o", T::I64);
        b.if_linked("limit", |b| {
            let sw = b.optional_terminal("limit", "low", T::Bool);
            b.if_(sw, |_| o.assign(0));
        });
        o.add_assign(1);
    });
    check(
        f,
        "
            0: (71) r0 = *(u8 *)(r9 +0) ; byte limit.low ; optional limit 4
            1: (57) r0 &= 0 ; mask limit.low
            2: (15) if r0 == 0x0 goto pc+1
            3: (7a) *(u64 *)(r8 +0) = 0 ; dev o
            4: (79) r0 = *(u64 *)(r8 +0) ; dev o
            5: (07) r0 += 1
            6: (7b) *(u64 *)(r8 +0) = r0 ; dev o
        ",
    );
}

#[test]
fn exit_sets_the_verdict() {
    let f = build(|b| {
        let o = b.device("o", T::I64);
        b.if_(o.eq(0), |b| b.exit(1));
        o.assign(2);
        b.exit(3);
        o.assign(4); // unreachable: not generated
    });
    assert!(f.sets_verdict);
    check(
        f,
        "
            0: (79) r0 = *(u64 *)(r8 +0) ; dev o
            1: (55) if r0 != 0x0 goto pc+2
            2: (b7) r0 = 1
            3: (05) goto pc+2
            4: (7a) *(u64 *)(r8 +0) = 2 ; dev o
            5: (b7) r0 = 3
        ",
    );
}

#[test]
fn atomics_on_device_variables() {
    let f = build(|b| {
        let c = b.device("c", T::U64);
        let w = b.device("w", T::I32);
        let o = b.device("o", T::I64);
        c.atomic_add(1);
        o.assign(w.fetch_add(2));
        o.assign(c.xchg(o));
        o.assign(c.cmpxchg(5, o));
    });
    check(
        f,
        "
            0: (b7) r0 = 1
            1: (db) lock *(u64 *)(r8 +0) += r0 ; dev c
            2: (b7) r0 = 2
            3: (c3) r0 = atomic_fetch_add((u32 *)(r8 +0), r0) ; dev w
            4: (bf) r0 = (s32)r0
            5: (bf) r6 = r0
            6: (7b) *(u64 *)(r8 +0) = r6 ; dev o
            7: (79) r0 = *(u64 *)(r8 +0) ; dev o
            8: (db) r0 = atomic64_xchg((u64 *)(r8 +0), r0) ; dev c
            9: (bf) r7 = r0
            10: (7b) *(u64 *)(r8 +0) = r7 ; dev o
            11: (b7) r0 = 5
            12: (79) r1 = *(u64 *)(r8 +0) ; dev o
            13: (db) r0 = atomic64_cmpxchg((u64 *)(r8 +0), r0, r1) ; dev c
            14: (7b) *(u64 *)(r10 -8) = r0 ; stack
            15: (79) r0 = *(u64 *)(r10 -8) ; stack
            16: (7b) *(u64 *)(r8 +0) = r0 ; dev o
        ",
    );
}

#[test]
fn large_constants_use_ld_imm64() {
    let f = build(|b| {
        let o = b.device("o", T::I64);
        o.assign(o + 0x1234_5678_9abc_def0i64);
        o.assign(0x1234_5678_9abc_def0i64);
    });
    check(
        f,
        "
            0: (79) r0 = *(u64 *)(r8 +0) ; dev o
            1: (18) r1 = 0x123456789abcdef0
            3: (0f) r0 += r1
            4: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            5: (18) r0 = 0x123456789abcdef0
            7: (7b) *(u64 *)(r8 +0) = r0 ; dev o
        ",
    );
}

#[test]
fn a_long_conditional_jump_becomes_an_inverted_jump_around_gotol() {
    let f = build(|b| {
        let x = b.device("x", T::I64);
        b.if_(x.gt(5), |_| {
            // x stays cached in r0: 2 slots per statement.
            for _ in 0..20_000 {
                x.add_assign(1);
            }
        });
    });
    let text = render(&f);
    let head: Vec<&str> = text.lines().take(3).collect();
    assert_eq!(head[0], "0: (79) r0 = *(u64 *)(r8 +0) ; dev x");
    assert_eq!(head[1], "1: (65) if r0 s> 0x5 goto pc+1");
    assert_eq!(head[2], "2: (06) gotol pc+40000");
    assert_eq!(f.insns.len(), 3 + 40_000);
}

#[test]
fn a_deep_expression_spills_to_the_stack() {
    let b = Builder::new("deep");
    let v: Vec<_> = (0..10)
        .map(|k| b.device(&format!("v{k}"), T::I64))
        .collect();
    let mut layer: Vec<_> = (0..512).map(|k| v[k % 10].get()).collect();
    while layer.len() > 1 {
        layer = layer.chunks(2).map(|p| (p[0] - p[1]) * 3).collect();
    }
    b.device("o", T::I64).assign(layer[0]);
    let f = b.finish().expect("spills instead of failing");
    assert!(f.frame_size >= 8, "frame {}", f.frame_size);
    assert!(f.relocs.iter().any(|r| r.kind == RelocKind::Stack));
}

#[test]
fn reading_a_maybe_uninitialised_local_is_an_error() {
    let e = build_err(|b| {
        let x = b.device("x", T::I64);
        let v = b.local_named("velocity_diff", T::I64);
        b.if_(x.gt(0), |_| v.assign(1));
        x.assign(v);
    });
    assert!(
        matches!(&e, BuildError::MaybeUninitialised { local, .. } if local == "velocity_diff"),
        "{e}"
    );
    assert!(e.to_string().contains("velocity_diff"));
    // Assigned on both paths: fine.
    build(|b| {
        let x = b.device("x", T::I64);
        let v = b.local_named("v", T::I64);
        b.if_(x.gt(0), |_| v.assign(1)).else_(|_| v.assign(2));
        x.assign(v);
    });
    // Assigned on one path, the other exits: fine.
    build(|b| {
        let x = b.device("x", T::I64);
        let v = b.local_named("v", T::I64);
        b.if_(x.gt(0), |_| v.assign(1)).else_(|b| b.exit(2));
        x.assign(v);
    });
}

#[test]
fn refused_constructs() {
    let e = build_err(|b| {
        b.terminal("t", "counter", T::U32).atomic_add(1);
    });
    assert!(
        matches!(&e, BuildError::AtomicOnPacket { var, .. } if var == "t.counter"),
        "{e}"
    );
    let e = build_err(|b| {
        b.device("small", T::U16).atomic_add(1);
    });
    assert!(matches!(e, BuildError::AtomicWidth { .. }), "{e}");
    let e = build_err(|b| {
        let o = b.device("o", T::I64);
        o.assign(b.optional_terminal("limit", "low", T::Bool));
    });
    assert!(
        matches!(e, BuildError::OptionalOutsideIfLinked { .. }),
        "{e}"
    );
    let e = build_err(|b| b.if_linked("limit", |b| b.exit(1)));
    assert!(matches!(e, BuildError::ExitInOptional { .. }), "{e}");
    let e = build_err(|b| {
        b.device("x", T::I64);
        b.device("x", T::U8);
    });
    assert!(matches!(e, BuildError::Redeclared { .. }), "{e}");
    let e = build_err(|b| {
        b.device("bits", T::Bits(3));
    });
    assert!(matches!(e, BuildError::BadType { .. }), "{e}");
    let e = build_err(|b| {
        let mut escaped = None;
        b.if_(true, |b| escaped = Some(b.temp(1)));
        b.device("x", T::I64).assign(escaped.expect("set"));
    });
    assert!(matches!(e, BuildError::LocalOutOfScope { .. }), "{e}");
}

/// A hash map from `u16` to `u64` with descriptor 7, as a standalone program uses it.
const COUNTS: MapRef = MapRef {
    fd: 7,
    key: T::U16,
    value: T::U64,
};

#[test]
fn map_lookup_writes_back_only_an_assigned_value() {
    let f = build(|b| {
        let seen = b.device("seen", T::U64);
        // Assigned: the copy goes back through the saved pointer.
        b.map_lookup(COUNTS, 0x0800u32, |_, v| v.add_assign(1));
        // Only read: nothing is stored into the map.
        b.map_lookup(COUNTS, 0x86ddu32, |_, v| seen.assign(v));
    });
    check(
        f,
        "
            0: (6a) *(u16 *)(r10 -8) = 2048 ; stack
            1: (18) r1 = map[fd:7]
            3: (bf) r2 = r10
            4: (07) r2 += -24
            5: (85) call unknown#0 ; helper 1
            6: (15) if r0 == 0x0 goto pc+6
            7: (7b) *(u64 *)(r10 -8) = r0 ; stack
            8: (79) r1 = *(u64 *)(r0 +0)
            9: (bf) r6 = r1
            10: (07) r6 += 1
            11: (79) r0 = *(u64 *)(r10 -8) ; stack
            12: (7b) *(u64 *)(r0 +0) = r6
            13: (6a) *(u16 *)(r10 -8) = 34525 ; stack
            14: (18) r1 = map[fd:7]
            16: (bf) r2 = r10
            17: (07) r2 += -24
            18: (85) call unknown#0 ; helper 1
            19: (15) if r0 == 0x0 goto pc+4
            20: (7b) *(u64 *)(r10 -8) = r0 ; stack
            21: (79) r1 = *(u64 *)(r0 +0)
            22: (bf) r6 = r1
            23: (7b) *(u64 *)(r8 +0) = r6 ; dev seen
        ",
    );
}

#[test]
fn map_entry_inserts_zero_then_looks_up_again() {
    let f = build(|b| {
        let et = b.packet(12, VarType::be(T::U16));
        b.map_entry(COUNTS, et, |_, v| v.add_assign(1));
    });
    check(
        f,
        "
            0: (69) r0 = *(u16 *)(r9 +12)
            1: (dc) r0 = be16 r0
            2: (6b) *(u16 *)(r10 -8) = r0 ; stack
            3: (18) r1 = map[fd:7]
            5: (bf) r2 = r10
            6: (07) r2 += -24
            7: (85) call unknown#0 ; helper 1
            8: (55) if r0 != 0x0 goto pc+14
            9: (7a) *(u64 *)(r10 -16) = 0 ; stack
            10: (18) r1 = map[fd:7]
            12: (bf) r2 = r10
            13: (07) r2 += -24
            14: (bf) r3 = r10
            15: (07) r3 += -32
            16: (b7) r4 = 1
            17: (85) call unknown#0 ; helper 2
            18: (18) r1 = map[fd:7]
            20: (bf) r2 = r10
            21: (07) r2 += -24
            22: (85) call unknown#0 ; helper 1
            23: (15) if r0 == 0x0 goto pc+6
            24: (7b) *(u64 *)(r10 -8) = r0 ; stack
            25: (79) r1 = *(u64 *)(r0 +0)
            26: (bf) r6 = r1
            27: (07) r6 += 1
            28: (79) r0 = *(u64 *)(r10 -8) ; stack
            29: (7b) *(u64 *)(r0 +0) = r6
        ",
    );
}

#[test]
fn map_add_is_an_atomic_add_on_the_entry() {
    let f = build(|b| {
        let et = b.packet(12, VarType::be(T::U16));
        b.map_add(COUNTS, et, 3u32);
    });
    check(
        f,
        "
            0: (69) r0 = *(u16 *)(r9 +12)
            1: (dc) r0 = be16 r0
            2: (6b) *(u16 *)(r10 -8) = r0 ; stack
            3: (18) r1 = map[fd:7]
            5: (bf) r2 = r10
            6: (07) r2 += -24
            7: (85) call unknown#0 ; helper 1
            8: (55) if r0 != 0x0 goto pc+14
            9: (7a) *(u64 *)(r10 -16) = 0 ; stack
            10: (18) r1 = map[fd:7]
            12: (bf) r2 = r10
            13: (07) r2 += -24
            14: (bf) r3 = r10
            15: (07) r3 += -32
            16: (b7) r4 = 1
            17: (85) call unknown#0 ; helper 2
            18: (18) r1 = map[fd:7]
            20: (bf) r2 = r10
            21: (07) r2 += -24
            22: (85) call unknown#0 ; helper 1
            23: (15) if r0 == 0x0 goto pc+2
            24: (b7) r1 = 3
            25: (db) lock *(u64 *)(r0 +0) += r1
        ",
    );
}

#[test]
fn scale_multiplies_by_a_q16_constant_and_shifts() {
    assert_eq!(q16(1.5), 98304);
    assert_eq!(q16(-0.25), -16384);
    // Truncated toward zero, as the seed's int(x * (1 << 16)).
    assert_eq!(q16(0.1), 6553);
    assert_eq!(q16(-0.1), -6553);
    let f = build(|b| {
        let o = b.device("o", T::I64);
        let signed = b.device("s", T::I32);
        let unsigned = b.device("u", T::U32);
        o.assign(signed.scale(1.5));
        o.assign(unsigned.scale(-0.25));
        o.assign((signed * q16(0.1)) >> 16);
    });
    check(
        f,
        "
            0: (81) r0 = *(s32 *)(r8 +0) ; dev s
            1: (27) r0 *= 98304
            2: (c7) r0 s>>= 16
            3: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            4: (61) r0 = *(u32 *)(r8 +0) ; dev u
            5: (27) r0 *= -16384
            6: (c7) r0 s>>= 16
            7: (7b) *(u64 *)(r8 +0) = r0 ; dev o
            8: (81) r0 = *(s32 *)(r8 +0) ; dev s
            9: (27) r0 *= 6553
            10: (c7) r0 s>>= 16
            11: (7b) *(u64 *)(r8 +0) = r0 ; dev o
        ",
    );
}

#[test]
fn device_via_declares_its_own_or_a_linked_devices_variable() {
    let f = build(|b| {
        let own = b.device_via("", "target", T::I64);
        let leader = b.device_via("leader", "target", T::I64);
        let far = b.device_via("leader.leader", "set_control_word", T::U16);
        own.assign(leader + 1);
        far.assign(0);
    });
    let kinds: Vec<(&str, &VarKind)> = f.vars.iter().map(|v| (v.name.as_str(), &v.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("target", &VarKind::Device),
            (
                "target",
                &VarKind::Foreign {
                    link: "leader".into()
                }
            ),
            (
                "set_control_word",
                &VarKind::Foreign {
                    link: "leader.leader".into()
                }
            ),
        ]
    );
    check(
        f,
        "
            0: (79) r0 = *(u64 *)(r8 +0) ; dev leader.target
            1: (07) r0 += 1
            2: (7b) *(u64 *)(r8 +0) = r0 ; dev target
            3: (6a) *(u16 *)(r8 +0) = 0 ; dev leader.leader.set_control_word
        ",
    );
}
