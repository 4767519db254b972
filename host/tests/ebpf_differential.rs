//! Differential test of the builder against the kernel: random expression trees and
//! if/else programs are compiled to eBPF, run with `BPF_PROG_TEST_RUN`, and must agree
//! with a Rust evaluator of eBPF's own semantics and the builder's typing rules
//! (`x / 0 == 0`, `x % 0 == x`, wrapping arithmetic, shifts masked to 6 bits, `MIN / -1
//! == MIN`, signed if either operand is signed, shifts take the left operand's
//! signedness, loads extend by the variable's type, stores truncate). Many cases share
//! one loaded program: each writes its own variable, and each program runs on several
//! inputs. Needs root; fails without it.

mod ebpf_kernel_support;

use ebpf_kernel_support::{Loaded, TermAt, load};
use ferrocat_plugin_api::ebpf::builder::{Builder, Cond, Expr, IntoExpr, Var};
use ferrocat_plugin_api::fragment::{ScalarType as T, VarType};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

// ------------------------------------------------------------------ the model

#[derive(Clone, Copy, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Shl,
    Shr,
    And,
    Or,
    Xor,
}

#[derive(Clone, Copy, Debug)]
enum Un {
    Neg,
    Not,
    Abs,
    Signed,
    Unsigned,
}

#[derive(Clone, Copy, Debug)]
enum Rel {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Debug)]
enum E {
    Var(usize),
    /// Entry of the program's pool of shared subexpressions (replaced by it before use,
    /// so equal subexpressions recur and the builder's reuse of computed values is
    /// exercised).
    Pool(usize),
    Const(i64, bool),
    Bin(Op, Box<E>, Box<E>),
    Un(Un, Box<E>),
    MinMax(bool, Box<E>, Box<E>),
    Clamp(Box<E>, i64, i64),
    CondVal(Box<C>),
}

#[derive(Clone, Debug)]
enum C {
    Cmp(Rel, E, E),
    And(Box<C>, Box<C>),
    Or(Box<C>, Box<C>),
    Not(Box<C>),
    Truthy(usize),
}

#[derive(Clone, Debug)]
enum S {
    Assign(usize, E),
    OpAssign(usize, Op, E),
    If(Vec<(C, Vec<S>)>, Option<Vec<S>>),
}

/// What a place is in the test program.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Device,
    Local,
    Terminal(TermAt),
    Fixed(u32),
    FixedBitsBe(u32, u8, u8),
}

/// The places every program declares: (kind, type).
const PLACES: [(Kind, T, bool); 17] = [
    (Kind::Device, T::I64, false),
    (Kind::Device, T::U64, false),
    (Kind::Device, T::I32, false),
    (Kind::Device, T::U32, false),
    (Kind::Device, T::I16, false),
    (Kind::Device, T::U8, false),
    (Kind::Device, T::I8, false),
    (Kind::Device, T::Bool, false),
    (Kind::Local, T::I64, false),
    (Kind::Local, T::U32, false),
    (Kind::Local, T::I8, false),
    (Kind::Terminal(TermAt { byte: 14, bit: 0 }), T::I16, false),
    (Kind::Fixed(20), T::U32, true),
    (
        Kind::Terminal(TermAt { byte: 30, bit: 6 }),
        T::Bits(5),
        false,
    ),
    (Kind::Terminal(TermAt { byte: 31, bit: 3 }), T::Bool, false),
    (Kind::Fixed(40), T::I16, true),
    (Kind::FixedBitsBe(44, 3, 13), T::Bits(13), true),
];
const N_PLACES: usize = PLACES.len();
const LOCALS: std::ops::Range<usize> = 8..11;
const PACKET_LEN: usize = 64;

fn signed_ty(t: T) -> bool {
    t.is_signed()
}

fn norm(t: T, v: i64) -> i64 {
    match t {
        T::U8 => v & 0xff,
        T::U16 => v & 0xffff,
        T::U32 => v & 0xffff_ffff,
        T::I8 => v as i8 as i64,
        T::I16 => v as i16 as i64,
        T::I32 => v as i32 as i64,
        T::U64 | T::I64 => v,
        T::Bool => (v != 0) as i64,
        T::Bits(n) => v & ((1i64 << n) - 1),
    }
}

fn bin(op: Op, s: bool, a: i64, b: i64) -> i64 {
    match op {
        Op::Add => a.wrapping_add(b),
        Op::Sub => a.wrapping_sub(b),
        Op::Mul => a.wrapping_mul(b),
        Op::Div => match (b, s) {
            (0, _) => 0,
            (_, true) => a.wrapping_div(b),
            (_, false) => ((a as u64) / (b as u64)) as i64,
        },
        Op::Rem => match (b, s) {
            (0, _) => a,
            (_, true) => a.wrapping_rem(b),
            (_, false) => ((a as u64) % (b as u64)) as i64,
        },
        Op::Shl => a.wrapping_shl((b & 63) as u32),
        Op::Shr if s => a >> (b & 63),
        Op::Shr => ((a as u64) >> (b & 63)) as i64,
        Op::And => a & b,
        Op::Or => a | b,
        Op::Xor => a ^ b,
    }
}

fn holds(r: Rel, s: bool, a: i64, b: i64) -> bool {
    let o = if s {
        a.cmp(&b)
    } else {
        (a as u64).cmp(&(b as u64))
    };
    match r {
        Rel::Eq => o.is_eq(),
        Rel::Ne => o.is_ne(),
        Rel::Gt => o.is_gt(),
        Rel::Ge => o.is_ge(),
        Rel::Lt => o.is_lt(),
        Rel::Le => o.is_le(),
    }
}

/// (value, signed)
fn eval(e: &E, st: &[i64]) -> (i64, bool) {
    match e {
        E::Var(p) => (st[*p], signed_ty(PLACES[*p].1)),
        E::Pool(_) => unreachable!("pool references are expanded before evaluation"),
        E::Const(v, s) => (*v, *s),
        E::Bin(op, a, b) => {
            let (x, sa) = eval(a, st);
            let (y, sb) = eval(b, st);
            let s = match op {
                Op::Shl | Op::Shr => sa,
                _ => sa || sb,
            };
            (bin(*op, s, x, y), s)
        }
        E::Un(u, a) => {
            let (x, s) = eval(a, st);
            match u {
                Un::Neg => (x.wrapping_neg(), s),
                Un::Not => (!x, s),
                Un::Abs => (if s { x.wrapping_abs() } else { x }, s),
                Un::Signed => (x, true),
                Un::Unsigned => (x, false),
            }
        }
        E::MinMax(max, a, b) => {
            let (x, sa) = eval(a, st);
            let (y, sb) = eval(b, st);
            let s = sa || sb;
            let lt = holds(Rel::Lt, s, x, y);
            (if lt != *max { x } else { y }, s)
        }
        E::Clamp(a, lo, hi) => {
            // lo and hi are signed literals: the comparisons are signed.
            let (x, _) = eval(a, st);
            let s = true;
            let m = if holds(Rel::Lt, s, x, *lo) { *lo } else { x };
            (if holds(Rel::Lt, s, *hi, m) { *hi } else { m }, s)
        }
        E::CondVal(c) => (test(c, st) as i64, false),
    }
}

fn test(c: &C, st: &[i64]) -> bool {
    match c {
        C::Cmp(r, a, b) => {
            let (x, sa) = eval(a, st);
            let (y, sb) = eval(b, st);
            holds(*r, sa || sb, x, y)
        }
        C::And(a, b) => test(a, st) && test(b, st),
        C::Or(a, b) => test(a, st) || test(b, st),
        C::Not(a) => !test(a, st),
        C::Truthy(p) => st[*p] != 0,
    }
}

fn exec(stmts: &[S], st: &mut Vec<i64>) {
    for s in stmts {
        match s {
            S::Assign(p, e) => st[*p] = norm(PLACES[*p].1, eval(e, st).0),
            S::OpAssign(p, op, e) => {
                let cur = E::Var(*p);
                let v = eval(&E::Bin(*op, Box::new(cur), Box::new(e.clone())), st).0;
                st[*p] = norm(PLACES[*p].1, v);
            }
            S::If(arms, els) => {
                let mut done = false;
                for (c, body) in arms {
                    if test(c, st) {
                        exec(body, st);
                        done = true;
                        break;
                    }
                }
                if !done && let Some(body) = els {
                    exec(body, st);
                }
            }
        }
    }
}

// ------------------------------------------------------------------ strategies

fn op() -> impl Strategy<Value = Op> {
    prop::sample::select(vec![
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::Rem,
        Op::Shl,
        Op::Shr,
        Op::And,
        Op::Or,
        Op::Xor,
    ])
}

fn rel() -> impl Strategy<Value = Rel> {
    prop::sample::select(vec![Rel::Eq, Rel::Ne, Rel::Gt, Rel::Ge, Rel::Lt, Rel::Le])
}

fn interesting() -> impl Strategy<Value = i64> {
    prop_oneof![
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            2,
            -2,
            7,
            63,
            64,
            65,
            127,
            -128,
            255,
            0x7fff,
            -0x8000,
            0xffff,
            0x7fff_ffff,
            -0x8000_0000,
            0xffff_ffff,
            0x1_0000_0000,
            i64::MIN,
            i64::MAX,
        ]),
        -300i64..300,
        any::<i64>(),
    ]
}

const POOL: usize = 4;

fn leaf() -> impl Strategy<Value = E> {
    prop_oneof![
        3 => (0..N_PLACES).prop_map(E::Var),
        1 => (interesting(), any::<bool>()).prop_map(|(v, s)| E::Const(v, s)),
        1 => (0..POOL).prop_map(E::Pool),
    ]
}

/// Replaces pool references by the pool's expressions (which contain none).
fn expand_e(e: &mut E, pool: &[E]) {
    match e {
        E::Pool(k) => *e = pool[*k].clone(),
        E::Var(_) | E::Const(..) => {}
        E::Bin(_, a, b) | E::MinMax(_, a, b) => {
            expand_e(a, pool);
            expand_e(b, pool);
        }
        E::Un(_, a) | E::Clamp(a, ..) => expand_e(a, pool),
        E::CondVal(c) => expand_c(c, pool),
    }
}

fn expand_c(c: &mut C, pool: &[E]) {
    match c {
        C::Cmp(_, a, b) => {
            expand_e(a, pool);
            expand_e(b, pool);
        }
        C::And(a, b) | C::Or(a, b) => {
            expand_c(a, pool);
            expand_c(b, pool);
        }
        C::Not(a) => expand_c(a, pool),
        C::Truthy(_) => {}
    }
}

fn expand_s(stmts: &mut [S], pool: &[E]) {
    for s in stmts {
        match s {
            S::Assign(_, e) | S::OpAssign(_, _, e) => expand_e(e, pool),
            S::If(arms, els) => {
                for (c, body) in arms.iter_mut() {
                    expand_c(c, pool);
                    expand_s(body, pool);
                }
                if let Some(body) = els {
                    expand_s(body, pool);
                }
            }
        }
    }
}

/// The shared subexpressions: small trees without pool references.
fn pool() -> impl Strategy<Value = Vec<E>> {
    let leaf = prop_oneof![
        3 => (0..N_PLACES).prop_map(E::Var),
        1 => (interesting(), any::<bool>()).prop_map(|(v, s)| E::Const(v, s)),
    ];
    let e = leaf.prop_recursive(2, 6, 2, |inner| {
        (op(), inner.clone(), inner).prop_map(|(o, a, b)| E::Bin(o, Box::new(a), Box::new(b)))
    });
    prop::collection::vec(e, POOL)
}

fn expr(depth: u32) -> BoxedStrategy<E> {
    leaf()
        .prop_recursive(depth, 40, 2, |inner| {
            prop_oneof![
                4 => (op(), inner.clone(), inner.clone())
                    .prop_map(|(o, a, b)| E::Bin(o, Box::new(a), Box::new(b))),
                1 => (
                    prop::sample::select(vec![Un::Neg, Un::Not, Un::Abs, Un::Signed, Un::Unsigned]),
                    inner.clone()
                )
                    .prop_map(|(u, a)| E::Un(u, Box::new(a))),
                1 => (any::<bool>(), inner.clone(), inner.clone())
                    .prop_map(|(m, a, b)| E::MinMax(m, Box::new(a), Box::new(b))),
                1 => (inner.clone(), -1000i64..0, 0i64..1000)
                    .prop_map(|(a, lo, hi)| E::Clamp(Box::new(a), lo, hi)),
                1 => (rel(), inner.clone(), inner)
                    .prop_map(|(r, a, b)| E::CondVal(Box::new(C::Cmp(r, a, b)))),
            ]
        })
        .boxed()
}

fn cond() -> BoxedStrategy<C> {
    let cmp = prop_oneof![
        4 => (rel(), expr(2), expr(2)).prop_map(|(r, a, b)| C::Cmp(r, a, b)),
        1 => (0..N_PLACES).prop_map(C::Truthy),
    ];
    cmp.prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| C::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| C::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| C::Not(Box::new(a))),
        ]
    })
    .boxed()
}

fn stmt() -> BoxedStrategy<S> {
    let simple = prop_oneof![
        3 => ((0..N_PLACES), expr(3)).prop_map(|(p, e)| S::Assign(p, e)),
        1 => ((0..N_PLACES), op(), expr(2)).prop_map(|(p, o, e)| S::OpAssign(p, o, e)),
    ];
    simple
        .prop_recursive(3, 24, 4, |inner| {
            let body = prop::collection::vec(inner, 1..4);
            (
                prop::collection::vec((cond(), body.clone()), 1..3),
                prop::option::of(body),
            )
                .prop_map(|(arms, els)| S::If(arms, els))
        })
        .boxed()
}

// ------------------------------------------------------------------ building

fn declare(b: &Builder) -> Vec<Var<'_>> {
    let mut v = Vec::new();
    for (k, (kind, ty, be)) in PLACES.iter().enumerate() {
        let vt = if *be {
            VarType::be(*ty)
        } else {
            VarType::le(*ty)
        };
        v.push(match kind {
            Kind::Device => b.device(&format!("d{k}"), vt),
            Kind::Local => b.local_named(&format!("l{k}"), vt),
            Kind::Terminal(_) => b.terminal("t", &format!("p{k}"), vt),
            Kind::Fixed(off) => b.packet(*off, vt),
            Kind::FixedBitsBe(off, bit, w) => b.packet_bits_be(*off, *bit, *w),
        });
    }
    v
}

fn build_e<'b>(b: &'b Builder, v: &[Var<'b>], e: &E) -> Expr<'b> {
    match e {
        E::Var(p) => v[*p].get(),
        E::Pool(_) => unreachable!("pool references are expanded before building"),
        E::Const(c, true) => b.constant(*c),
        E::Const(c, false) => (*c as u64).into_expr(b),
        E::Bin(op, x, y) => {
            let (x, y) = (build_e(b, v, x), build_e(b, v, y));
            match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                Op::Mul => x * y,
                Op::Div => x / y,
                Op::Rem => x % y,
                Op::Shl => x << y,
                Op::Shr => x >> y,
                Op::And => x & y,
                Op::Or => x | y,
                Op::Xor => x ^ y,
            }
        }
        E::Un(u, x) => {
            let x = build_e(b, v, x);
            match u {
                Un::Neg => -x,
                Un::Not => !x,
                Un::Abs => x.abs(),
                Un::Signed => x.as_signed(),
                Un::Unsigned => x.as_unsigned(),
            }
        }
        E::MinMax(max, x, y) => {
            let (x, y) = (build_e(b, v, x), build_e(b, v, y));
            if *max { x.max(y) } else { x.min(y) }
        }
        E::Clamp(x, lo, hi) => build_e(b, v, x).clamp(*lo, *hi),
        E::CondVal(c) => build_c(b, v, c).as_value(),
    }
}

fn build_c<'b>(b: &'b Builder, v: &[Var<'b>], c: &C) -> Cond<'b> {
    match c {
        C::Cmp(r, x, y) => {
            let (x, y) = (build_e(b, v, x), build_e(b, v, y));
            match r {
                Rel::Eq => x.eq(y),
                Rel::Ne => x.ne(y),
                Rel::Gt => x.gt(y),
                Rel::Ge => x.ge(y),
                Rel::Lt => x.lt(y),
                Rel::Le => x.le(y),
            }
        }
        C::And(x, y) => build_c(b, v, x).and(build_c(b, v, y)),
        C::Or(x, y) => build_c(b, v, x).or(build_c(b, v, y)),
        C::Not(x) => !build_c(b, v, x),
        C::Truthy(p) => v[*p].is_true(),
    }
}

fn build_s<'b>(b: &'b Builder, v: &[Var<'b>], stmts: &[S]) {
    for s in stmts {
        match s {
            S::Assign(p, e) => v[*p].assign(build_e(b, v, e)),
            S::OpAssign(p, op, e) => {
                let e = build_e(b, v, e);
                let t = v[*p];
                match op {
                    Op::Add => t.add_assign(e),
                    Op::Sub => t.sub_assign(e),
                    Op::Mul => t.mul_assign(e),
                    Op::Div => t.div_assign(e),
                    Op::Rem => t.rem_assign(e),
                    Op::Shl => t.shl_assign(e),
                    Op::Shr => t.shr_assign(e),
                    Op::And => t.and_assign(e),
                    Op::Or => t.or_assign(e),
                    Op::Xor => t.xor_assign(e),
                }
            }
            S::If(arms, els) => {
                let (c0, body0) = &arms[0];
                let mut chain = b.if_(build_c(b, v, c0), |b| build_s(b, v, body0));
                for (c, body) in &arms[1..] {
                    chain = chain.else_if(build_c(b, v, c), |b| build_s(b, v, body));
                }
                if let Some(body) = els {
                    chain.else_(|b| build_s(b, v, body));
                }
            }
        }
    }
}

// ------------------------------------------------------------------ running

/// Initial state from raw inputs: every place normalised to its type; locals start as
/// copies of the device variables `l - 8`.
fn initial(raw: &[i64]) -> Vec<i64> {
    let mut st: Vec<i64> = PLACES
        .iter()
        .zip(raw)
        .map(|((_, t, _), v)| norm(*t, *v))
        .collect();
    for l in LOCALS {
        st[l] = norm(PLACES[l].1, st[l - 8]);
    }
    st
}

fn write_inputs(l: &Loaded, st: &[i64]) -> Vec<u8> {
    let mut p = vec![0u8; PACKET_LEN];
    for (k, (kind, ty, _)) in PLACES.iter().enumerate() {
        let v = st[k];
        match kind {
            Kind::Device => l.set(&format!("d{k}"), v, ty.memory_bytes() as usize),
            Kind::Local => {}
            Kind::Terminal(at) => put_bits(
                &mut p,
                at.byte as usize * 8 + at.bit as usize,
                bits(*ty),
                v as u64,
                false,
            ),
            Kind::Fixed(off) => {
                let n = ty.memory_bytes() as usize;
                let be = (v as u64).to_be_bytes();
                p[*off as usize..*off as usize + n].copy_from_slice(&be[8 - n..]);
            }
            Kind::FixedBitsBe(off, bit, w) => put_bits(
                &mut p,
                *off as usize * 8 + *bit as usize,
                u32::from(*w),
                v as u64,
                true,
            ),
        }
    }
    p
}

fn bits(t: T) -> u32 {
    match t {
        T::Bool => 1,
        T::Bits(n) => u32::from(n),
        other => other.packet_bits(),
    }
}

/// Bit `i` of a packet: LSB-first within bytes (`be == false`) or MSB-first (`true`).
fn bit_index(i: usize, be: bool) -> (usize, u8) {
    if be {
        (i / 8, 7 - (i % 8) as u8)
    } else {
        (i / 8, (i % 8) as u8)
    }
}

fn put_bits(p: &mut [u8], start: usize, n: u32, v: u64, be: bool) {
    for k in 0..n as usize {
        // Little endian: value bit k at packet bit start + k. Big endian: the value's
        // most significant bit first.
        let vb = if be {
            (v >> (n as usize - 1 - k)) & 1
        } else {
            (v >> k) & 1
        };
        let (byte, bit) = bit_index(start + k, be);
        p[byte] = (p[byte] & !(1 << bit)) | ((vb as u8) << bit);
    }
}

fn get_bits(p: &[u8], start: usize, n: u32, be: bool) -> u64 {
    let mut v = 0u64;
    for k in 0..n as usize {
        let (byte, bit) = bit_index(start + k, be);
        let b = u64::from((p[byte] >> bit) & 1);
        if be {
            v = (v << 1) | b;
        } else {
            v |= b << k;
        }
    }
    v
}

fn read_outputs(l: &Loaded, p: &[u8]) -> Vec<i64> {
    PLACES
        .iter()
        .enumerate()
        .map(|(k, (kind, ty, _))| match kind {
            Kind::Device => {
                let n = ty.memory_bytes() as usize;
                norm(*ty, l.get(&format!("d{k}"), n) as i64)
            }
            Kind::Local => l.get_i64(&format!("r{k}")),
            Kind::Terminal(at) => norm(
                *ty,
                get_bits(p, at.byte as usize * 8 + at.bit as usize, bits(*ty), false) as i64,
            ),
            Kind::Fixed(off) => {
                let n = ty.memory_bytes() as usize;
                let mut b = [0u8; 8];
                b[8 - n..].copy_from_slice(&p[*off as usize..*off as usize + n]);
                norm(*ty, u64::from_be_bytes(b) as i64)
            }
            Kind::FixedBitsBe(off, bit, w) => {
                get_bits(p, *off as usize * 8 + *bit as usize, u32::from(*w), true) as i64
            }
        })
        .collect()
}

/// Builds `stmts` into a program (locals initialised from devices first, copied to
/// result variables at the end) and checks it on every input against the model.
fn check_program(stmts: &[S], inputs: &[Vec<i64>]) -> Result<(), TestCaseError> {
    let b = Builder::new("diff");
    let v = declare(&b);
    for l in LOCALS {
        v[l].assign(v[l - 8]);
    }
    build_s(&b, &v, stmts);
    for l in LOCALS {
        b.device(&format!("r{l}"), T::I64).assign(v[l]);
    }
    let f = b
        .finish()
        .map_err(|e| TestCaseError::fail(format!("build: {e}")))?;
    let terms: Vec<(String, TermAt)> = PLACES
        .iter()
        .enumerate()
        .filter_map(|(k, (kind, _, _))| match kind {
            Kind::Terminal(at) => Some((format!("t.p{k}"), *at)),
            _ => None,
        })
        .collect();
    let terms: Vec<(&str, TermAt)> = terms.iter().map(|(k, a)| (k.as_str(), *a)).collect();
    let l = load(&f, &terms, &[]);
    for raw in inputs {
        let mut st = initial(raw);
        l.write_block(&vec![0; l.block_size() as usize]);
        let p = write_inputs(&l, &st);
        let r = l.run(&p);
        exec(stmts, &mut st);
        let got = read_outputs(&l, &r.data);
        for k in 0..N_PLACES {
            prop_assert_eq!(
                got[k],
                st[k],
                "place {} ({:?}) differs; input {:?}\nprogram {:#?}\nlisting:\n{}",
                k,
                PLACES[k],
                raw,
                stmts,
                ferrocat_plugin_api::ebpf::disasm::listing(&f.insns)
            );
        }
    }
    Ok(())
}

/// Number of programs per test: `FERROCAT_DIFF_CASES`, or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("FERROCAT_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn inputs() -> impl Strategy<Value = Vec<Vec<i64>>> {
    prop::collection::vec(prop::collection::vec(interesting(), N_PLACES), 6)
}

#[test]
fn random_expressions_agree_with_the_model() {
    // Each program: 24 assignments of random expressions (one case each), 6 inputs.
    let mut runner = TestRunner::new(Config {
        cases: cases(128),
        ..Config::default()
    });
    let strat = (
        prop::collection::vec(
            ((0..N_PLACES), expr(5)).prop_map(|(p, e)| S::Assign(p, e)),
            24,
        ),
        pool(),
        inputs(),
    );
    runner
        .run(&strat, |(mut stmts, pool, inputs)| {
            expand_s(&mut stmts, &pool);
            check_program(&stmts, &inputs)
        })
        .unwrap();
}

#[test]
fn random_if_else_programs_agree_with_the_model() {
    let mut runner = TestRunner::new(Config {
        cases: cases(256),
        ..Config::default()
    });
    let strat = (prop::collection::vec(stmt(), 1..8), pool(), inputs());
    runner
        .run(&strat, |(mut stmts, pool, inputs)| {
            expand_s(&mut stmts, &pool);
            check_program(&stmts, &inputs)
        })
        .unwrap();
}
