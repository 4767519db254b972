//! Every builder construct loaded through the real verifier and run with
//! `BPF_PROG_TEST_RUN`, with asserted results: arithmetic corner cases (overflow,
//! negative division, division by zero, `MIN / -1`, shifts by 63), packet fields and
//! terminal variables of every width and byte order, bit fields at byte edges, control
//! flow, helpers, atomics, optional regions, exits, long jumps and spilling. Needs root;
//! fails without it.

mod ebpf_kernel_support;

use ebpf_kernel_support::{TermAt, XDP_TX, load};
use ferrocat_plugin_api::ebpf::builder::Builder;
use ferrocat_plugin_api::fragment::{ScalarType as T, VarType};

/// CLOCK_MONOTONIC in nanoseconds, the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn at(byte: u32, bit: u8) -> TermAt {
    TermAt { byte, bit }
}

/// A 64-byte test packet.
fn packet() -> Vec<u8> {
    (0..64u8).collect()
}

#[test]
fn arithmetic_corner_cases() {
    let b = Builder::new("arith");
    let x = b.device("x", T::I64);
    let y = b.device("y", T::I64);
    let ux = b.device("ux", T::U64);
    let uy = b.device("uy", T::U64);
    let names = [
        "add", "sub", "mul", "div", "rem", "udiv", "urem", "shl", "sar", "shr", "neg", "not",
        "and", "or", "xor", "divk", "remk", "abs", "min", "max", "clamp", "umin",
    ];
    let out: Vec<_> = names.iter().map(|n| b.device(n, T::I64)).collect();
    out[0].assign(x + y);
    out[1].assign(x - y);
    out[2].assign(x * y);
    out[3].assign(x / y);
    out[4].assign(x % y);
    out[5].assign(ux / uy);
    out[6].assign(ux % uy);
    out[7].assign(x << y);
    out[8].assign(x >> y);
    out[9].assign(ux >> uy);
    out[10].assign(-x);
    out[11].assign(!x);
    out[12].assign(x & y);
    out[13].assign(x | y);
    out[14].assign(x ^ y);
    out[15].assign(x / -1);
    out[16].assign(x % 7);
    out[17].assign(x.abs());
    out[18].assign(x.min(y));
    out[19].assign(x.max(y));
    out[20].assign(x.clamp(-100, 100));
    out[21].assign(ux.min(uy));
    let f = b.finish().expect("builds");
    let l = load(&f, &[], &[]);
    let cases: [(i64, i64); 9] = [
        (i64::MAX, 1),
        (-7, 2),
        (7, -2),
        (5, 0),
        (i64::MIN, -1),
        (1, 63),
        (-1, 63),
        (-5, 64 + 3),
        (i64::MIN, i64::MIN),
    ];
    for (a, c) in cases {
        l.set_many(&[("x", a), ("y", c), ("ux", a), ("uy", c)]);
        let r = l.run(&packet());
        assert_eq!(r.retval, XDP_TX as u32);
        let (ua, uc) = (a as u64, c as u64);
        let sh = (c & 63) as u32;
        let want: [i64; 22] = [
            a.wrapping_add(c),
            a.wrapping_sub(c),
            a.wrapping_mul(c),
            if c == 0 { 0 } else { a.wrapping_div(c) },
            if c == 0 { a } else { a.wrapping_rem(c) },
            if c == 0 { 0 } else { (ua / uc) as i64 },
            if c == 0 { a } else { (ua % uc) as i64 },
            a.wrapping_shl(sh),
            a >> sh,
            (ua >> sh) as i64,
            a.wrapping_neg(),
            !a,
            a & c,
            a | c,
            a ^ c,
            a.wrapping_neg(),
            a.wrapping_rem(7),
            a.wrapping_abs(),
            a.min(c),
            a.max(c),
            a.clamp(-100, 100),
            ua.min(uc) as i64,
        ];
        for (k, n) in names.iter().enumerate() {
            assert_eq!(l.get_i64(n), want[k], "{n} of ({a}, {c})");
        }
    }
}

#[test]
fn packet_fields_every_width_and_order() {
    let b = Builder::new("fields");
    let s8 = b.terminal("t", "s8", T::I8);
    let s16 = b.terminal("t", "s16", T::I16);
    let u32_ = b.terminal("t", "u32", T::U32);
    let be16 = b.packet(12, VarType::be(T::U16));
    let bes32 = b.packet(20, VarType::be(T::I32));
    let be64 = b.packet(24, VarType::be(T::U64));
    let names = ["s8", "s16", "u32", "be16", "bes32", "be64"];
    let outs: Vec<_> = names
        .iter()
        .map(|n| b.device(&format!("o_{n}"), T::I64))
        .collect();
    for (o, v) in outs.iter().zip([s8, s16, u32_, be16, bes32, be64]) {
        o.assign(v);
    }
    // Writes: big-endian stores of a constant and of a value; a += on a packet field.
    b.packet(40, VarType::be(T::U32)).assign(0x0102_0304);
    b.packet(44, VarType::be(T::I16)).assign(outs[1]);
    s16.add_assign(1000);
    b.packet(48, VarType::be(T::U64))
        .assign(b.device("big", T::U64));
    let f = b.finish().expect("builds");
    let l = load(
        &f,
        &[("t.s8", at(2, 0)), ("t.s16", at(4, 0)), ("t.u32", at(8, 0))],
        &[],
    );
    let mut p = packet();
    p[2] = 0x80;
    p[4..6].copy_from_slice(&(-2i16).to_le_bytes());
    p[8..12].copy_from_slice(&0xfedc_ba98u32.to_le_bytes());
    p[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    p[20..24].copy_from_slice(&(-3i32).to_be_bytes());
    p[24..32].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes());
    l.set("big", 0x1122_3344_5566_7788, 8);
    let r = l.run(&p);
    assert_eq!(l.get_i64("o_s8"), -128);
    assert_eq!(l.get_i64("o_s16"), -2);
    assert_eq!(l.get_i64("o_u32"), 0xfedc_ba98);
    assert_eq!(l.get_i64("o_be16"), 0x86dd);
    assert_eq!(l.get_i64("o_bes32"), -3);
    assert_eq!(l.get_i64("o_be64"), 0x0123_4567_89ab_cdef);
    assert_eq!(r.data[40..44], [1, 2, 3, 4]);
    assert_eq!(r.data[44..46], (-2i16).to_be_bytes());
    assert_eq!(r.data[4..6], 998i16.to_le_bytes());
    assert_eq!(r.data[48..56], 0x1122_3344_5566_7788u64.to_be_bytes());
}

/// Big-endian terminal variables of every width, signed and unsigned, at odd offsets
/// of the process image (as terminals place them), placed by the linker's terminal-byte
/// relocations: read into device variables, written from device variables, a constant
/// stored and a `+=`, each checked in the packet after the run.
#[test]
fn big_endian_terminal_variables_every_width() {
    let kinds = [
        ("u8", T::U8, 1usize),
        ("i8", T::I8, 1),
        ("u16", T::U16, 2),
        ("i16", T::I16, 2),
        ("u32", T::U32, 4),
        ("i32", T::I32, 4),
        ("u64", T::U64, 8),
        ("i64", T::I64, 8),
    ];
    // Packet values (big-endian in the packet), what the program reads from them, and
    // the values the host gives it to write.
    let values: [i64; 8] = [
        0xa5,
        -2,
        0xfedc,
        -3,
        0x89ab_cdef,
        -4,
        0x0123_4567_89ab_cdef,
        -5,
    ];
    let writes: [i64; 8] = [
        0x5a,
        -100,
        0x1234,
        -30000,
        0xcafe_f00d,
        -2_000_000_000,
        0x7766_5544_3322_1100,
        i64::MIN + 1,
    ];
    let b = Builder::new("be_terms");
    let vars: Vec<_> = kinds
        .iter()
        .map(|(n, t, _)| b.terminal("t", n, VarType::be(*t)))
        .collect();
    for (v, (n, ..)) in vars.iter().zip(&kinds) {
        b.device(&format!("o_{n}"), T::I64).assign(*v);
    }
    for (v, (n, ..)) in vars.iter().zip(&kinds) {
        v.assign(b.device(&format!("w_{n}"), T::I64));
    }
    b.terminal("t", "konst", VarType::be(T::U16)).assign(0x1234);
    b.terminal("t", "counter", VarType::be(T::U32))
        .add_assign(0x0001_0203);
    let f = b.finish().expect("builds");

    // Each variable at an odd offset, one after the other from byte 1.
    let mut offsets = Vec::new();
    let mut next = 1u32;
    for (_, _, width) in &kinds {
        offsets.push(next);
        next += *width as u32 + 1;
    }
    let (konst, counter) = (next + 1, next + 4);
    let names: Vec<String> = kinds.iter().map(|(n, ..)| format!("t.{n}")).collect();
    let mut terms: Vec<(&str, TermAt)> = names
        .iter()
        .zip(&offsets)
        .map(|(n, o)| (n.as_str(), at(*o, 0)))
        .collect();
    terms.push(("t.konst", at(konst, 0)));
    terms.push(("t.counter", at(counter, 0)));
    let l = load(&f, &terms, &[]);

    let mut p = vec![0xeeu8; 80];
    for ((v, o), (_, _, width)) in values.iter().zip(&offsets).zip(&kinds) {
        let o = *o as usize;
        p[o..o + width].copy_from_slice(&v.to_be_bytes()[8 - width..]);
    }
    p[counter as usize..counter as usize + 4].copy_from_slice(&0x1000_2000u32.to_be_bytes());
    for ((n, ..), w) in kinds.iter().zip(writes) {
        l.set(&format!("w_{n}"), w, 8);
    }
    let r = l.run(&p);
    assert_eq!(r.retval, XDP_TX as u32);
    // Reads: swapped to host order, sign-extended for the signed types.
    let read: Vec<i64> = kinds
        .iter()
        .map(|(n, ..)| l.get_i64(&format!("o_{n}")))
        .collect();
    assert_eq!(read, values);
    // Writes: the value's low bytes, most significant first; neighbours kept.
    let d = &r.data;
    for (((n, _, width), w), o) in kinds.iter().zip(writes).zip(&offsets) {
        let o = *o as usize;
        assert_eq!(&d[o..o + width], &w.to_be_bytes()[8 - width..], "{n}");
        assert_eq!(d[o + width], 0xee, "the byte after {n}");
    }
    assert_eq!(d[0], 0xee);
    assert_eq!(d[konst as usize..konst as usize + 2], [0x12, 0x34]);
    assert_eq!(
        d[counter as usize..counter as usize + 4],
        0x1001_2203u32.to_be_bytes(),
        "+= on a big-endian u32"
    );
    assert_eq!(d[counter as usize + 4], 0xee);
}

#[test]
fn bit_fields_at_byte_edges() {
    let b = Builder::new("bits");
    // Terminal bit fields: a 3-bit field across a byte edge, a bool, a 30-bit field in
    // an 8-byte window, and a 9-bit field.
    let f3 = b.terminal("t", "f3", T::Bits(3));
    let flag = b.terminal("t", "flag", T::Bool);
    let f30 = b.terminal("t", "f30", T::Bits(30));
    let f9 = b.terminal("t", "f9", T::Bits(9));
    // Fixed fields: IPv4-like big-endian 13-bit field at bit 3 of byte 20, a nibble.
    let frag_off = b.packet_bits_be(20, 3, 13);
    let nibble = b.packet_bits(22, 4, 4);
    let o: Vec<_> = ["f3", "flag", "f30", "f9", "frag", "nib", "flagc"]
        .iter()
        .map(|n| b.device(n, T::I64))
        .collect();
    o[0].assign(f3);
    o[1].assign(flag);
    o[2].assign(f30);
    o[3].assign(f9);
    o[4].assign(frag_off);
    o[5].assign(nibble);
    b.if_(flag, |_| o[6].assign(1)).else_(|_| o[6].assign(2));
    // Writes.
    f3.assign(f3 + 1); // wraps within 3 bits
    flag.assign(flag.is_true().not());
    f30.assign(b.device("w30", T::U64));
    f9.assign(0x1ff);
    frag_off.assign(0x1abc);
    nibble.add_assign(3);
    let f = b.finish().expect("builds");
    let l = load(
        &f,
        &[
            ("t.f3", at(30, 6)),
            ("t.flag", at(31, 7)),
            ("t.f30", at(32, 5)),
            ("t.f9", at(36, 3)),
        ],
        &[],
    );
    let mut p = vec![0u8; 64];
    // f3 = 0b111 at bits 6,7 of byte 30 and bit 0 of byte 31.
    p[30] = 0b1100_0000;
    p[31] = 0b1000_0001; // flag (bit 7) set, f3's top bit set
    let v30: u64 = 0x2aaa_5555;
    let w = v30 << 5;
    for k in 0..5 {
        p[32 + k] |= (w >> (8 * k)) as u8;
    }
    p[36] |= 0b1010_1000; // f9 low bits 101 01 at bit 3
    p[37] |= 0b0000_0001; // f9 bit 5 -> bit 8 of byte 36? (bit 3 + 5 = 8)
    p[20] = 0b1110_0001; // flags 111, fragment offset top bits 00001
    p[21] = 0x23; // offset = 0x123
    p[22] = 0xa5; // nibble at bits 4..7 = 0xa
    l.set("w30", 0x1555_aaaa, 8);
    let r = l.run(&p);
    assert_eq!(l.get_i64("f3"), 7);
    assert_eq!(l.get_i64("flag"), 1);
    assert_eq!(l.get_i64("flagc"), 1);
    assert_eq!(l.get_i64("f30"), v30 as i64);
    let f9_in = ((u16::from(p[37]) << 8 | u16::from(p[36])) >> 3) & 0x1ff;
    assert_eq!(l.get_i64("f9"), i64::from(f9_in));
    assert_eq!(l.get_i64("frag"), 0x123);
    assert_eq!(l.get_i64("nib"), 0xa);
    let d = &r.data;
    // f3: 7 + 1 wraps to 0; neighbouring bits kept.
    assert_eq!(d[30], 0b0000_0000);
    // flag cleared, f3's top bit (bit 0 of byte 31) cleared, others kept.
    assert_eq!(d[31], 0b0000_0000);
    let got30 = (u64::from_le_bytes(d[32..40].try_into().unwrap()) >> 5) & ((1 << 30) - 1);
    assert_eq!(got30, 0x1555_aaaa);
    assert_eq!(d[32] & 0x1f, p[32] & 0x1f, "bits below f30 kept");
    let got9 = ((u16::from(d[37]) << 8 | u16::from(d[36])) >> 3) & 0x1ff;
    assert_eq!(got9, 0x1ff);
    // Bits 0..2 of byte 36 are the top of f30 (its new value), kept by the f9 write.
    assert_eq!(d[36] & 0b111, ((0x1555_aaaau64 << 5) >> 32) as u8 & 0b111);
    assert_eq!(d[20] >> 5, 0b111, "IPv4 flags kept");
    assert_eq!(u16::from_be_bytes([d[20], d[21]]) & 0x1fff, 0x1abc);
    assert_eq!(d[22], 0xd5, "nibble 0xa + 3, low nibble kept");
}

#[test]
fn control_flow_and_conditions() {
    let b = Builder::new("flow");
    let x = b.device("x", T::I64);
    let y = b.device("y", T::U32);
    let out = b.device("out", T::I64);
    let both = b.device("both", T::I64);
    let val = b.device("val", T::I64);
    b.if_(x.lt(0), |_| out.assign(-1))
        .else_if(x.eq(0), |_| out.assign(0))
        .else_if(x.gt(100).and(y.ne(7u32)), |_| out.assign(2))
        .else_(|_| out.assign(1));
    b.if_(x.gt(0).or(y.eq(3u32)).and(!(x.eq(42))), |_| both.assign(1))
        .else_(|_| both.assign(0));
    val.assign(x.ge(10).as_value() + y.le(5u32).as_value() * 2);
    let f = b.finish().expect("builds");
    let l = load(&f, &[], &[]);
    for (xv, yv) in [
        (-5i64, 0u32),
        (0, 3),
        (0, 4),
        (150, 7),
        (150, 8),
        (42, 3),
        (50, 1),
        (7, 9),
    ] {
        l.set("x", xv, 8);
        l.set("y", i64::from(yv), 4);
        l.run(&packet());
        let want = if xv < 0 {
            -1
        } else if xv == 0 {
            0
        } else if xv > 100 && yv != 7 {
            2
        } else {
            1
        };
        assert_eq!(l.get_i64("out"), want, "x={xv} y={yv}");
        let b_want = ((xv > 0 || yv == 3) && xv != 42) as i64;
        assert_eq!(l.get_i64("both"), b_want, "x={xv} y={yv}");
        assert_eq!(l.get_i64("val"), (xv >= 10) as i64 + 2 * (yv <= 5) as i64);
    }
}

#[test]
fn locals_temps_helpers_and_cycle_time() {
    let b = Builder::new("locals");
    let a = b.device("a", T::I64);
    let o = b.device("o", T::I64);
    let t = b.device("t", T::U64);
    let rnd = b.device("rnd", T::U64);
    let ct = b.device("ct", T::U64);
    let n8 = b.device("n8", T::I64);
    let l8 = b.local_named("l8", T::I8);
    l8.assign(a); // truncates to i8
    n8.assign(l8);
    let tmp = b.temp(a * 3);
    let s = b.local_named("s", T::I64);
    b.if_(tmp.gt(10), |_| s.assign(tmp - 10))
        .else_(|_| s.assign(0));
    // A value kept across helper calls (r0-r5 are clobbered).
    // Both helper results are 0 at run time: ktime > 0, so min(ktime, 1) - 1 == 0.
    o.assign(s + (b.ktime_get_ns().min(1u64) - 1u64) + a + (b.get_prandom_u32() >> 40) + tmp);
    t.assign(b.ktime_get_ns());
    rnd.assign(b.get_prandom_u32());
    ct.assign(b.cycle_time() + 1u64);
    let f = b.finish().expect("builds");
    assert!(f.uses_cycle_time);
    let l = load(&f, &[], &[]);
    l.set("a", 300, 8);
    let before = monotonic_ns();
    l.run(&packet());
    let after = monotonic_ns();
    assert_eq!(l.get_i64("n8"), 44, "300 as i8");
    assert_eq!(l.get_i64("o"), 890 + 300 + 900);
    assert!(l.get("t", 8) > 0, "ktime_get_ns ran");
    assert!(l.get("rnd", 8) <= u64::from(u32::MAX));
    // The prologue reads the kernel's monotonic clock (bpf_ktime_get_ns) once per run.
    let ct = l.get("ct", 8);
    assert!(
        (before + 1..=after + 1).contains(&ct),
        "cycle time + 1 = {ct} lies outside [{before} + 1, {after} + 1]"
    );
    l.set("a", 2, 8);
    l.run(&packet());
    assert_eq!(l.get_i64("o"), 2 + 6, "s = 0 on the else path");
}

#[test]
fn spilling_a_deep_expression() {
    let b = Builder::new("deep");
    let vars: Vec<_> = (0..16)
        .map(|k| b.device(&format!("v{k}"), T::I64))
        .collect();
    // A balanced tree of depth 9 over the 16 variables: needs more than 8 registers.
    fn tree<'b>(
        vars: &[ferrocat_plugin_api::ebpf::builder::Var<'b>],
        depth: u32,
        k: &mut usize,
    ) -> ferrocat_plugin_api::ebpf::builder::Expr<'b> {
        if depth == 0 {
            *k += 1;
            return vars[*k % vars.len()].get();
        }
        let l = tree(vars, depth - 1, k);
        let r = tree(vars, depth - 1, k);
        if depth % 2 == 0 {
            l - r * 3
        } else {
            (l ^ r) + 1
        }
    }
    fn eval(vals: &[i64], depth: u32, k: &mut usize) -> i64 {
        if depth == 0 {
            *k += 1;
            return vals[*k % vals.len()];
        }
        let l = eval(vals, depth - 1, k);
        let r = eval(vals, depth - 1, k);
        if depth % 2 == 0 {
            l.wrapping_sub(r.wrapping_mul(3))
        } else {
            (l ^ r).wrapping_add(1)
        }
    }
    let out = b.device("out", T::I64);
    let mut k = 0;
    out.assign(tree(&vars, 9, &mut k));
    let f = b.finish().expect("builds");
    assert!(f.frame_size > 0, "the tree spilled to the stack");
    let l = load(&f, &[], &[]);
    let vals: Vec<i64> = (0..16)
        .map(|k| (k as i64 * 7919) ^ (k as i64) << 40)
        .collect();
    for (k, v) in vals.iter().enumerate() {
        l.set(&format!("v{k}"), *v, 8);
    }
    l.run(&packet());
    let mut k = 0;
    assert_eq!(l.get_i64("out"), eval(&vals, 9, &mut k));
}

#[test]
fn atomics_on_device_variables() {
    let b = Builder::new("atomics");
    let c64 = b.device("c64", T::I64);
    let c32 = b.device("c32", T::I32);
    let x = b.device("x", T::U64);
    let cas = b.device("cas", T::I64);
    let o = b.device("o", T::I64);
    let o2 = b.device("o2", T::I64);
    let o3 = b.device("o3", T::I64);
    let o4 = b.device("o4", T::I64);
    c64.atomic_add(5);
    let old = c32.fetch_add(-3);
    o.assign(old);
    let prev = x.xchg(77u64);
    o2.assign(prev);
    let seen = cas.cmpxchg(10, 20);
    o3.assign(seen);
    let seen2 = cas.cmpxchg(10, 30);
    o4.assign(seen2);
    let f = b.finish().expect("builds");
    let l = load(&f, &[], &[]);
    l.set("c64", 100, 8);
    l.set("c32", 1, 4);
    l.set("x", 9, 8);
    l.set("cas", 10, 8);
    l.run(&packet());
    assert_eq!(l.get_i64("c64"), 105);
    assert_eq!(l.get("c32", 4) as u32 as i32, -2);
    assert_eq!(l.get_i64("o"), 1);
    assert_eq!(l.get_i64("x"), 77);
    assert_eq!(l.get_i64("o2"), 9);
    assert_eq!(l.get_i64("cas"), 20, "first cmpxchg swapped");
    assert_eq!(l.get_i64("o3"), 10);
    assert_eq!(
        l.get_i64("o4"),
        20,
        "second cmpxchg saw 20 and did not swap"
    );
    l.run(&packet());
    assert_eq!(
        l.get("c32", 4) as u32 as i32,
        -5,
        "fetch_add of a negative i32"
    );
    assert_eq!(l.get_i64("o"), -2, "old i32 value sign-extended");
}

#[test]
fn optional_regions_and_foreign_variables() {
    let b = Builder::new("opt");
    let sw = b.optional_terminal("switch", "on", T::Bool);
    let enc = b.foreign("leader", "encoder", T::I64);
    let out = b.device("out", T::I64);
    out.assign(enc * 2);
    b.if_linked("switch", |_| {
        b.if_(sw, |_| out.assign(-1));
    });
    let f = b.finish().expect("builds");
    let l = load(&f, &[("switch.on", at(10, 2))], &["switch"]);
    let mut p = packet();
    p[10] = 0b100;
    l.set("leader.encoder", 21, 8);
    let r = l.run(&p);
    assert_eq!(l.get_i64("out"), -1, "linked switch set");
    assert_eq!(r.retval, XDP_TX as u32);
    let l = load(&f, &[], &[]);
    let r = l.run(&p);
    assert_eq!(
        l.get_i64("out"),
        0,
        "region removed when the link is absent"
    );
    assert_eq!(r.retval, XDP_TX as u32);
    l.set("leader.encoder", 99, 8);
    l.run(&p);
    assert_eq!(l.get_i64("out"), 198, "the leader's encoder is read");
}

#[test]
fn exit_verdicts() {
    // A verdict is for standalone programs only (docs/fragment-abi.md), where the
    // program's globals are its device variables.
    let b = Builder::new("verdict");
    let x = b.device("x", T::I64);
    let out = b.device("out", T::I64);
    out.assign(x * 2);
    b.if_(x.eq(99), |_| b.exit(1));
    b.exit(2);
    let f = b.finish().expect("builds");
    assert!(f.sets_verdict);
    let l = load(&f, &[], &[]);
    let r = l.run(&packet());
    assert_eq!(r.retval, 2);
    l.set("x", 99, 8);
    let r = l.run(&packet());
    assert_eq!(r.retval, 1, "exit verdict");
    assert_eq!(l.get_i64("out"), 198);
}

#[test]
fn long_jumps_around_a_huge_branch() {
    let b = Builder::new("long");
    let x = b.device("x", T::I64);
    let acc = b.device("acc", T::I64);
    let skipped = b.device("skipped", T::I64);
    b.if_(x.gt(5), |_| {
        for _ in 0..20_000 {
            acc.add_assign(1); // 3 instructions each: > 32767 slots
        }
    })
    .else_(|_| skipped.assign(1));
    let f = b.finish().expect("builds");
    assert!(f.insns.len() > 40_000, "the branch needs a 32-bit jump");
    let l = load(&f, &[], &[]);
    l.set("x", 6, 8);
    l.run(&packet());
    assert_eq!(l.get_i64("acc"), 20_000);
    assert_eq!(l.get_i64("skipped"), 0);
    l.set("x", 1, 8);
    l.set("acc", 0, 8);
    l.run(&packet());
    assert_eq!(l.get_i64("acc"), 0);
    assert_eq!(l.get_i64("skipped"), 1);
}

#[test]
fn reused_values_are_forgotten_when_their_inputs_change() {
    let b = Builder::new("reuse");
    let x = b.device("x", T::I64);
    let y = b.device("y", T::I64);
    let o1 = b.device("o1", T::I64);
    let o2 = b.device("o2", T::I64);
    let o3 = b.device("o3", T::I64);
    let l = b.temp(x); // a local in a register
    // Each compare leaves its sum in a register; the assignments in between must
    // invalidate it.
    b.if_((l + y).gt(0), |_| {
        l.assign(100);
        o1.assign(l + y);
    });
    b.if_((x + y).gt(0), |_| {
        x.assign(1000);
        o2.assign(x + y);
    });
    b.if_(y.gt(0), |_| {
        y.add_assign(1);
        o3.assign(y);
    });
    // `y | m` is left in a register while the local it reads is reassigned.
    let m = b.temp(x);
    m.assign(y + (y | m));
    b.device("o4", T::I64).assign(y | m);
    let f = b.finish().expect("builds");
    let l = load(&f, &[], &[]);
    l.set_many(&[("x", 5), ("y", 7)]);
    l.run(&packet());
    assert_eq!(l.get_i64("o1"), 107);
    assert_eq!(l.get_i64("o2"), 1007);
    assert_eq!(l.get_i64("o3"), 8);
    assert_eq!(l.get_i64("x"), 1000);
    // m = 8 + (8 | 1000) = 1008, o4 = 8 | 1008.
    assert_eq!(l.get_i64("o4"), 8 | 1008);
}
