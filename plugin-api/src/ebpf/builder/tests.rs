//! Unit tests of the builder's internals: constant folding follows eBPF semantics,
//! type normalisation, load windows, and misuse of if-chains.

use super::ir::{BinOp, eval_bin, normalise, terminal_window};
use super::{BuildError, Builder};
use crate::fragment::ScalarType as T;

#[test]
fn folding_follows_ebpf_semantics() {
    assert_eq!(eval_bin(BinOp::Div, true, 7, 0), 0);
    assert_eq!(eval_bin(BinOp::Rem, true, 7, 0), 7);
    assert_eq!(eval_bin(BinOp::Div, true, i64::MIN, -1), i64::MIN);
    assert_eq!(eval_bin(BinOp::Rem, true, i64::MIN, -1), 0);
    assert_eq!(eval_bin(BinOp::Div, true, -7, 2), -3);
    assert_eq!(eval_bin(BinOp::Rem, true, -7, 2), -1);
    assert_eq!(
        eval_bin(BinOp::Div, false, -7, 2),
        ((-7i64 as u64) / 2) as i64
    );
    assert_eq!(eval_bin(BinOp::Shl, false, 1, 64 + 63), i64::MIN);
    assert_eq!(eval_bin(BinOp::Shr, true, -8, 65), -4);
    assert_eq!(
        eval_bin(BinOp::Shr, false, -8, 65),
        ((-8i64 as u64) >> 1) as i64
    );
    assert_eq!(eval_bin(BinOp::Add, true, i64::MAX, 1), i64::MIN);
}

#[test]
fn normalisation_truncates_then_extends() {
    assert_eq!(normalise(T::I8, 0x1ff), -1);
    assert_eq!(normalise(T::U8, -1), 0xff);
    assert_eq!(normalise(T::I32, 0x8000_0000), i64::from(i32::MIN));
    assert_eq!(normalise(T::Bool, 2), 1);
    assert_eq!(normalise(T::Bits(3), 0xf), 7);
}

#[test]
fn load_windows_hold_any_bit_position() {
    assert_eq!(terminal_window(1), 1);
    assert_eq!(terminal_window(2), 2);
    assert_eq!(terminal_window(9), 2);
    assert_eq!(terminal_window(10), 4);
    assert_eq!(terminal_window(25), 4);
    assert_eq!(terminal_window(26), 8);
    assert_eq!(terminal_window(57), 8);
}

#[test]
fn constants_fold_at_build_time() {
    let b = Builder::new("fold");
    let o = b.device("o", T::I64);
    o.assign(b.constant(6) * 7 + (b.constant(5) / 0) - (b.constant(-9) >> 1));
    let f = b.finish().expect("builds");
    // One store of the folded constant 42 + 0 + 5.
    assert_eq!(f.insns.len(), 1);
    assert_eq!(f.insns[0].imm, 47);
}

#[test]
fn code_between_if_and_else_is_refused() {
    let b = Builder::new("chain");
    let o = b.device("o", T::I64);
    let chain = b.if_(o.gt(0), |_| o.assign(1));
    o.assign(5);
    chain.else_(|_| o.assign(2));
    assert!(matches!(
        b.finish(),
        Err(BuildError::IfChainInterleaved { .. })
    ));
}

#[test]
fn oversized_input_is_an_error_not_a_panic() {
    let b = Builder::new("big");
    let o = b.device("o", T::I64);
    o.assign(b.packet(u32::MAX, T::U32));
    o.assign(b.packet_bits(u32::MAX, 7, 57));
    o.assign(b.terminal("t", "wide", T::Bits(200)));
    for _ in 0..5000 {
        let l = b.local(T::I64);
        l.assign(o);
        o.assign(l);
    }
    let e = b.finish().expect_err("refused");
    assert!(matches!(e, BuildError::BadType { .. }), "{e}");

    let b = Builder::new("deep stack");
    let o = b.device("o", T::I64);
    for _ in 0..100 {
        let l = b.local(T::I64);
        l.assign(o);
    }
    assert!(matches!(
        b.finish(),
        Err(BuildError::StackTooLarge { bytes, .. }) if bytes > 512
    ));
}
