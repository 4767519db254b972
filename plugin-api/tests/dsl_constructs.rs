//! Golden tests of the `ebpf!` DSL: every construct produces exactly the fragment of
//! the hand-written builder calls it stands for (instructions, relocations,
//! declarations), and a few are pinned to their disassembly.

use ferrocat_plugin_api::ebpf;
use ferrocat_plugin_api::ebpf::builder::{Builder, Var};
use ferrocat_plugin_api::ebpf::disasm::listing;
use ferrocat_plugin_api::fragment::{Fragment, ScalarType::*};

/// Builds a fragment from `f`.
fn build(f: impl for<'b> FnOnce(&'b Builder)) -> Fragment {
    let b = Builder::new("t");
    f(&b);
    b.finish().expect("the fragment builds")
}

/// The DSL and the hand-written calls give the same fragment, which is returned.
fn same(dsl: impl for<'b> FnOnce(&'b Builder), hand: impl for<'b> FnOnce(&'b Builder)) -> Fragment {
    let d = build(dsl);
    let h = build(hand);
    assert_eq!(
        d,
        h,
        "DSL:\n{}\nhand-written:\n{}",
        listing(&d.insns),
        listing(&h.insns)
    );
    assert!(!d.insns.is_empty());
    d
}

/// Device variables `x`, `y`, `z` (i64) and `u` (u32).
fn vars(b: &Builder) -> (Var<'_>, Var<'_>, Var<'_>, Var<'_>) {
    (
        b.device("x", I64),
        b.device("y", I64),
        b.device("z", I64),
        b.device("u", U32),
    )
}

#[test]
fn if_else_if_else() {
    let f = same(
        |b| {
            let (x, y, _, _) = vars(b);
            ebpf! { b =>
                if x > 10 { y = 1; } else if x < -10 { y = -1; } else { y = 0; }
            }
        },
        |b| {
            let (x, y, _, _) = vars(b);
            b.if_(x.gt(10), |_| y.assign(1))
                .else_if(x.lt(-10), |_| y.assign(-1))
                .else_(|_| y.assign(0));
        },
    );
    assert_eq!(
        listing(&f.insns),
        "\
0: (79) r0 = *(u64 *)(r8 +0)
1: (d5) if r0 s<= 0xa goto pc+2
2: (7a) *(u64 *)(r8 +0) = 1
3: (05) goto pc+4
4: (75) if r0 s>= 0xfffffff6 goto pc+2
5: (7a) *(u64 *)(r8 +0) = -1
6: (05) goto pc+1
7: (7a) *(u64 *)(r8 +0) = 0
"
    );
}

#[test]
fn if_without_else_and_nested_if() {
    same(
        |b| {
            let (x, y, z, _) = vars(b);
            ebpf! { b =>
                if x != 0 { if y >= 3 { z = 1; } }
                if x == 2 { z = 2; }
            }
        },
        |b| {
            let (x, y, z, _) = vars(b);
            b.if_(x.ne(0), |b| {
                b.if_(y.ge(3), |_| z.assign(1));
            });
            b.if_(x.eq(2), |_| z.assign(2));
        },
    );
}

#[test]
fn every_comparison_and_literal_on_the_left() {
    same(
        |b| {
            let (x, y, z, _) = vars(b);
            ebpf! { b =>
                if x > y { z = 1; }
                if x >= y { z = 2; }
                if x < y { z = 3; }
                if x <= y { z = 4; }
                if x == y { z = 5; }
                if x != y { z = 6; }
                if 5 < x { z = 7; }
                if -5 >= x + y { z = 8; }
            }
        },
        |b| {
            let (x, y, z, _) = vars(b);
            b.if_(x.gt(y), |_| z.assign(1));
            b.if_(x.ge(y), |_| z.assign(2));
            b.if_(x.lt(y), |_| z.assign(3));
            b.if_(x.le(y), |_| z.assign(4));
            b.if_(x.eq(y), |_| z.assign(5));
            b.if_(x.ne(y), |_| z.assign(6));
            b.if_(x.gt(5), |_| z.assign(7));
            b.if_((x + y).le(-5), |_| z.assign(8));
        },
    );
}

#[test]
fn and_or_not_and_plain_values() {
    same(
        |b| {
            let (x, y, z, _) = vars(b);
            let bit = b.terminal("io", "bit", Bool);
            ebpf! { b =>
                if x > 1 && y > 2 || z > 3 { z = 1; }
                if x > 1 && (y > 2 || z > 3) { z = 2; }
                if !(x > 1) { z = 3; }
                if bit { z = 4; }
                if !bit && x != 0 { z = 5; }
                if x || !y { z = 6; }
            }
        },
        |b| {
            let (x, y, z, _) = vars(b);
            let bit = b.terminal("io", "bit", Bool);
            b.if_(x.gt(1).and(y.gt(2)).or(z.gt(3)), |_| z.assign(1));
            b.if_(x.gt(1).and(y.gt(2).or(z.gt(3))), |_| z.assign(2));
            b.if_(!x.gt(1), |_| z.assign(3));
            b.if_(bit, |_| z.assign(4));
            b.if_((!bit.is_true()).and(x.ne(0)), |_| z.assign(5));
            b.if_(x.is_true().or(y.is_true().not()), |_| z.assign(6));
        },
    );
}

#[test]
fn assignments_and_compound_assignments() {
    same(
        |b| {
            let (x, y, _, u) = vars(b);
            let p = b.terminal("io", "word", I16);
            ebpf! { b =>
                x = y * 3 - 1;
                x += y; x -= 2; x *= y; x /= 3; x %= 7;
                x <<= 2; x >>= 1; x &= 255; x |= 16; x ^= y;
                u >>= 3;
                p += 5; p -= x; p *= 2; p ^= 1;
            }
        },
        |b| {
            let (x, y, _, u) = vars(b);
            let p = b.terminal("io", "word", I16);
            x.assign(y * 3 - 1);
            x.add_assign(y);
            x.sub_assign(2);
            x.mul_assign(y);
            x.div_assign(3);
            x.rem_assign(7);
            x.shl_assign(2);
            x.shr_assign(1);
            x.and_assign(255);
            x.or_assign(16);
            x.xor_assign(y);
            u.shr_assign(3);
            p.add_assign(5);
            p.sub_assign(x);
            p.mul_assign(2);
            p.xor_assign(1);
        },
    );
}

#[test]
fn compound_assignment_on_a_packet_variable_is_load_op_store() {
    let f = build(|b| {
        let p = b.terminal("io", "word", I16);
        ebpf! { b => p += 5; }
    });
    assert_eq!(
        listing(&f.insns),
        "\
0: (89) r0 = *(s16 *)(r9 +0)
1: (07) r0 += 5
2: (6b) *(u16 *)(r9 +0) = r0
"
    );
}

#[test]
fn condition_as_value() {
    same(
        |b| {
            let (x, y, z, _) = vars(b);
            ebpf! { b =>
                z = x > y;
                z = !(x > 1 || y == 2);
            }
        },
        |b| {
            let (x, y, z, _) = vars(b);
            z.assign(x.gt(y).as_value());
            z.assign((!x.gt(1).or(y.eq(2))).as_value());
        },
    );
}

#[test]
fn let_temporaries() {
    same(
        |b| {
            let (x, y, z, _) = vars(b);
            ebpf! { b =>
                let t = x - y;
                let mut s = 0;
                if t > 0 { s = t * 2; }
                z = s + t;
            }
        },
        |b| {
            let (x, y, z, _) = vars(b);
            let t = b.temp(x - y);
            let s = b.temp(0);
            b.if_(t.gt(0), |_| s.assign(t * 2));
            z.assign(s + t);
        },
    );
}

#[test]
fn arithmetic_methods_and_calls_pass_through() {
    fn scale<'b>(v: Var<'b>, by: i64) {
        v.assign((v * by) >> 16);
    }
    same(
        |b| {
            let (x, y, z, u) = vars(b);
            let factor = (1.5f64 * 65536.0) as i64;
            ebpf! { b =>
                z = (x - y).abs().min(100).max(-100) + (u >> 2) - !y;
                z = x.clamp(-3, 3) * -y % 5 / 2;
                scale(z, factor);
                z = (factor * y) >> 16;
            }
        },
        |b| {
            let (x, y, z, u) = vars(b);
            let factor = (1.5f64 * 65536.0) as i64;
            z.assign((x - y).abs().min(100).max(-100) + (u >> 2) - !y);
            z.assign(x.clamp(-3, 3) * -y % 5 / 2);
            scale(z, factor);
            z.assign((factor * y) >> 16);
        },
    );
}

#[test]
fn if_let_and_match_stay_generation_time() {
    for present in [false, true] {
        let mode = if present { 1 } else { 2 };
        let d = build(|b| {
            let (x, y, _, _) = vars(b);
            let opt = present.then(|| b.device("opt", I64));
            ebpf! { b =>
                if let Some(o) = opt { if x > 0 { o = 1; } } else { y = 2; }
                match mode { 1 => { x = 10; } _ => x = 20, }
            }
        });
        let h = build(|b| {
            let (x, y, _, _) = vars(b);
            let opt = present.then(|| b.device("opt", I64));
            match opt {
                Some(o) => {
                    b.if_(x.gt(0), |_| o.assign(1));
                }
                None => y.assign(2),
            }
            x.assign(if mode == 1 { 10 } else { 20 });
        });
        assert_eq!(d, h, "present = {present}");
        assert_eq!(d.vars.len(), if present { 5 } else { 4 });
    }
}

#[test]
fn closures_are_lowered_inside() {
    same(
        |b| {
            let (x, _, _, _) = vars(b);
            let rc = b.optional_terminal("extra", "rc", Bool);
            ebpf! { b =>
                b.if_linked("extra", |b| { if x > 0 { rc = true; } else { rc = false; } });
            }
        },
        |b| {
            let (x, _, _, _) = vars(b);
            let rc = b.optional_terminal("extra", "rc", Bool);
            b.if_linked("extra", |b| {
                b.if_(x.gt(0), |_| rc.assign(true))
                    .else_(|_| rc.assign(false));
            });
        },
    );
}

#[test]
fn without_a_builder_if_uses_the_condition() {
    same(
        |b| {
            let (x, y, _, _) = vars(b);
            ebpf! {
                if x > 1 { y = 1; } else if y == 3 { y = 2; } else { x = 0; }
                if x { y = 5; }
            }
        },
        |b| {
            let (x, y, _, _) = vars(b);
            b.if_(x.gt(1), |_| y.assign(1))
                .else_if(y.eq(3), |_| y.assign(2))
                .else_(|_| x.assign(0));
            b.if_(x, |_| y.assign(5));
        },
    );
}

#[test]
fn cycle_time_marks_the_fragment() {
    let f = build(|b| {
        let (x, _, _, _) = vars(b);
        ebpf! { b => x = b.cycle_time() - x; }
    });
    assert!(f.uses_cycle_time);
}

#[test]
fn build_errors_point_at_the_dsl_statement() {
    let b = Builder::new("t");
    let (_, y, _, _) = vars(&b);
    let t = b.local_named("t", I64);
    let line = line!() + 3;
    ebpf! { &b =>
        if y > 0 { t = 1; }
        y = t;
    }
    match b.finish() {
        Err(ferrocat_plugin_api::ebpf::builder::BuildError::MaybeUninitialised {
            local,
            at,
            ..
        }) => {
            assert_eq!(local, "t");
            assert_eq!(at.file(), file!());
            assert_eq!(at.line(), line, "the error names the line of `y = t;`");
        }
        other => panic!("expected MaybeUninitialised, got {other:?}"),
    }
}

#[test]
fn without_top_level_let_the_macro_is_an_expression() {
    same(
        |b| {
            let (x, y, _, _) = vars(b);
            let rc = b.optional_terminal("extra", "rc", Bool);
            b.if_linked("extra", |b| ebpf! { b => if x > 0 { rc = true; } });
            let run = |b| ebpf! { b => y += 1; };
            run(b);
        },
        |b| {
            let (x, y, _, _) = vars(b);
            let rc = b.optional_terminal("extra", "rc", Bool);
            b.if_linked("extra", |b| {
                b.if_(x.gt(0), |_| rc.assign(true));
            });
            y.add_assign(1);
        },
    );
}
