//! Token-level tests of the lowering: each DSL construct against the builder calls it
//! must become, and each refused construct against its error and span.

use super::*;
use proc_macro2::TokenStream;
use quote::quote;

/// Lowers `input` (with no top-level `let`) and compares with the block of `expected`
/// token by token (as text).
fn check(input: TokenStream, expected: TokenStream) {
    let prelude = prelude(&input);
    check_exact(input, quote!({ #prelude #expected }));
}

/// Lowers `input` (with a top-level `let`) and compares with `expected`, statements.
fn check_stmts(input: TokenStream, expected: TokenStream) {
    let prelude = prelude(&input);
    check_exact(input, quote!(#prelude #expected));
}

/// The builder check the expansion starts with when `input` names a builder.
fn prelude(input: &TokenStream) -> TokenStream {
    match syn::parse2::<Input>(input.clone()) {
        Ok(Input {
            builder: Some(b), ..
        }) => {
            let b = if is_atomic(&b) {
                quote!(#b)
            } else {
                quote!((#b))
            };
            quote!(let _: &::ferrocat_plugin_api::ebpf::builder::Builder = #b;)
        }
        _ => TokenStream::new(),
    }
}

fn check_exact(input: TokenStream, expected: TokenStream) {
    let got = lower(input);
    assert_eq!(got.to_string(), expected.to_string());
}

/// Lowers source text that must be refused, returning the error message and the source
/// text its span covers.
fn refused(src: &str) -> (String, String) {
    let tokens: TokenStream = src.parse().expect("test input is valid tokens");
    let input = match syn::parse2::<Input>(tokens) {
        Ok(i) => i,
        Err(e) => {
            let text = e.span().source_text().unwrap_or_default();
            return (e.to_string(), text);
        }
    };
    match lower_input(&input) {
        Ok(ts) => panic!("`{src}` was accepted as `{ts}`"),
        Err(e) => (e.to_string(), e.span().source_text().unwrap_or_default()),
    }
}

#[test]
fn if_else_with_explicit_builder() {
    check(
        quote! { b =>
            if (self.target - self.encoder).abs() > self.deadband {
                self.velocity = 0;
            } else {
                self.velocity = self.target;
            }
        },
        quote! {
            b.if_((self.target - self.encoder).abs().gt(self.deadband), |__ebpf_b| {
                self.velocity.assign(0);
            }).else_(|__ebpf_b| {
                self.velocity.assign(self.target);
            });
        },
    );
}

#[test]
fn if_without_builder_uses_the_free_function() {
    check(
        quote! { if self.a < self.b { self.c = 1; } },
        quote! {
            ::ferrocat_plugin_api::ebpf::builder::if_(self.a.lt(self.b), || {
                self.c.assign(1);
            });
        },
    );
}

#[test]
fn builder_expression_is_parenthesised_when_needed() {
    check(
        quote! { self.ebpf.builder() => if x == 1 { y = 2; } },
        quote! {
            self.ebpf.builder().if_(x.eq(1), |__ebpf_b| { y.assign(2); });
        },
    );
    check_stmts(
        quote! { &b => let t = 1; },
        quote! { let t = (&b).temp(1); },
    );
}

#[test]
fn else_if_chains() {
    check(
        quote! { b =>
            if x > 1 { y = 1; } else if x < -1 { y = -1; } else if x == 0 { y = 7; } else { y = 0; }
        },
        quote! {
            b.if_(x.gt(1), |__ebpf_b| { y.assign(1); })
                .else_if(x.lt(-1), |__ebpf_b| { y.assign(-1); })
                .else_if(x.eq(0), |__ebpf_b| { y.assign(7); })
                .else_(|__ebpf_b| { y.assign(0); });
        },
    );
}

#[test]
fn nested_if_uses_the_branch_builder() {
    check(
        quote! { b =>
            if x != 0 { let t = x * 2; if t >= 4 { y = t; } }
        },
        quote! {
            b.if_(x.ne(0), |__ebpf_b| {
                let t = __ebpf_b.temp(x * 2);
                __ebpf_b.if_(t.ge(4), |__ebpf_b| { y.assign(t); });
            });
        },
    );
}

#[test]
fn every_comparison() {
    check(
        quote! { b =>
            if a > b { x = 1; }
            if a >= b { x = 2; }
            if a < b { x = 3; }
            if a <= b { x = 4; }
            if a == b { x = 5; }
            if a != b { x = 6; }
        },
        quote! {
            b.if_(a.gt(b), |__ebpf_b| { x.assign(1); });
            b.if_(a.ge(b), |__ebpf_b| { x.assign(2); });
            b.if_(a.lt(b), |__ebpf_b| { x.assign(3); });
            b.if_(a.le(b), |__ebpf_b| { x.assign(4); });
            b.if_(a.eq(b), |__ebpf_b| { x.assign(5); });
            b.if_(a.ne(b), |__ebpf_b| { x.assign(6); });
        },
    );
}

#[test]
fn literal_on_the_left_is_swapped() {
    check(
        quote! { b =>
            if 0 < x { y = 1; }
            if -5 >= x + 1 { y = 2; }
            if 3 == x { y = 3; }
            if (7 as i64) <= x { y = 4; }
        },
        quote! {
            b.if_(x.gt(0), |__ebpf_b| { y.assign(1); });
            b.if_((x + 1).le(-5), |__ebpf_b| { y.assign(2); });
            b.if_(x.eq(3), |__ebpf_b| { y.assign(3); });
            b.if_(x.ge((7 as i64)), |__ebpf_b| { y.assign(4); });
        },
    );
}

#[test]
fn non_atomic_left_operand_is_parenthesised() {
    check(
        quote! { b => if self.stmp + self.max_velocity < 0 { self.stmp = -self.max_velocity; } },
        quote! {
            b.if_((self.stmp + self.max_velocity).lt(0), |__ebpf_b| {
                self.stmp.assign(-self.max_velocity);
            });
        },
    );
}

#[test]
fn and_or_not() {
    check(
        quote! { b =>
            if self.low != 0 && s < 0 { s = 0; }
            if a > 1 || b > 2 && c > 3 { s = 1; }
            if (a > 1 || b > 2) && c > 3 { s = 2; }
            if !(a > 1) { s = 3; }
            if !(a > 1 && b > 2) || c > 3 { s = 4; }
        },
        quote! {
            b.if_(self.low.ne(0).and(s.lt(0)), |__ebpf_b| { s.assign(0); });
            b.if_(a.gt(1).or(b.gt(2).and(c.gt(3))), |__ebpf_b| { s.assign(1); });
            b.if_(a.gt(1).or(b.gt(2)).and(c.gt(3)), |__ebpf_b| { s.assign(2); });
            b.if_(!a.gt(1), |__ebpf_b| { s.assign(3); });
            b.if_((!a.gt(1).and(b.gt(2))).or(c.gt(3)), |__ebpf_b| { s.assign(4); });
        },
    );
}

#[test]
fn plain_values_in_conditions() {
    check(
        quote! { b =>
            if self.enabled { s = 1; }
            if !self.enabled { s = 2; }
            if self.enabled && self.error { s = 3; }
            if !(self.a + 1) || self.moving() { s = 4; }
            if !self.moving() { s = 5; }
        },
        quote! {
            b.if_(self.enabled.is_true(), |__ebpf_b| { s.assign(1); });
            b.if_(!self.enabled.is_true(), |__ebpf_b| { s.assign(2); });
            b.if_(self.enabled.is_true().and(self.error.is_true()), |__ebpf_b| { s.assign(3); });
            b.if_((!(self.a + 1).is_true()).or(self.moving()), |__ebpf_b| { s.assign(4); });
            b.if_(!self.moving(), |__ebpf_b| { s.assign(5); });
        },
    );
}

#[test]
fn assignments_and_compound_assignments() {
    check(
        quote! { b =>
            x = y * 3 + 1;
            x += 1; x -= 2; x *= 3; x /= 4; x %= 5;
            x <<= 6; x >>= 7; x &= 8; x |= 9; x ^= 10;
        },
        quote! {
            x.assign(y * 3 + 1);
            x.add_assign(1); x.sub_assign(2); x.mul_assign(3); x.div_assign(4);
            x.rem_assign(5); x.shl_assign(6); x.shr_assign(7); x.and_assign(8);
            x.or_assign(9); x.xor_assign(10);
        },
    );
}

#[test]
fn assigning_a_condition_takes_its_value() {
    check_stmts(
        quote! { b =>
            self.flag = self.a > 3;
            self.flag = !(self.a > 3 || self.b);
            let t = a == b;
        },
        quote! {
            self.flag.assign(self.a.gt(3).as_value());
            self.flag.assign((!self.a.gt(3).or(self.b.is_true())).as_value());
            let t = b.temp(a.eq(b).as_value());
        },
    );
}

#[test]
fn let_temporaries() {
    check_stmts(
        quote! { b =>
            let speed = self.target - self.encoder;
            let mut t = 0;
            t = speed >> 16;
        },
        quote! {
            let speed = b.temp(self.target - self.encoder);
            let t = b.temp(0);
            t.assign(speed >> 16);
        },
    );
}

#[test]
fn arithmetic_methods_and_calls_pass_through() {
    check(
        quote! { b =>
            self.v = ((self.p * s) >> 16).min(self.max).max(-self.max) + f(a, b > 1) - !x;
            self.calculate_speed(speed);
            helper::go(b, speed.abs());
            s += (((self.factor * 65536.0) as i64) * self.leader_velocity) >> 16;
        },
        quote! {
            self.v.assign(((self.p * s) >> 16).min(self.max).max(-self.max) + f(a, b.gt(1)) - !x);
            self.calculate_speed(speed);
            helper::go(b, speed.abs());
            s.add_assign((((self.factor * 65536.0) as i64) * self.leader_velocity) >> 16);
        },
    );
}

#[test]
fn tail_expression_becomes_a_statement() {
    check(
        quote! { b => if x > 0 { y = 1 } else { self.go() } },
        quote! {
            b.if_(x.gt(0), |__ebpf_b| { y.assign(1); }).else_(|__ebpf_b| { self.go(); });
        },
    );
}

#[test]
fn if_let_stays_generation_time() {
    check(
        quote! { b =>
            if let Some(rc) = self.reduced_current {
                if x > 0 { rc = false; } else { rc = true; }
            } else if y > 0 {
                z = 1;
            }
        },
        quote! {
            if let Some(rc) = self.reduced_current {
                b.if_(x.gt(0), |__ebpf_b| { rc.assign(false); })
                    .else_(|__ebpf_b| { rc.assign(true); });
            } else {
                b.if_(y.gt(0), |__ebpf_b| { z.assign(1); });
            }
        },
    );
}

#[test]
fn else_if_let_inside_a_run_time_else() {
    check(
        quote! { b =>
            if x > 0 { y = 1; } else if let Some(e) = self.error { e = 1; }
        },
        quote! {
            b.if_(x.gt(0), |__ebpf_b| { y.assign(1); })
                .else_(|__ebpf_b| { if let Some(e) = self.error { e.assign(1); } });
        },
    );
}

#[test]
fn match_stays_generation_time() {
    check(
        quote! { b =>
            match self.mode {
                Mode::Fast => { x = 1; }
                Mode::Slow if self.careful => x = 2,
                _ => {}
            }
        },
        quote! {
            match self.mode {
                Mode::Fast => { x.assign(1); }
                Mode::Slow if self.careful => { x.assign(2); }
                _ => {}
            }
        },
    );
}

#[test]
fn closures_and_blocks_are_lowered_inside() {
    check(
        quote! { b =>
            b.if_linked("stepper", |b| { if x > 0 { self.rc = 1; } });
            { let t = 3; x = t; }
        },
        quote! {
            b.if_linked("stepper", |b| { b.if_(x.gt(0), |__ebpf_b| { self.rc.assign(1); }); });
            { let t = b.temp(3); x.assign(t); }
        },
    );
}

#[test]
fn items_and_macros_pass_through() {
    check(
        quote! { b =>
            const SWITCH_OFF: i64 = 6;
            x = SWITCH_OFF;
            debug_assert!(true);
        },
        quote! {
            const SWITCH_OFF: i64 = 6;
            x.assign(SWITCH_OFF);
            debug_assert!(true);
        },
    );
}

#[test]
fn loops_are_refused_where_they_are_written() {
    let (msg, at) = refused("b => x = 1; while x < 3 { x += 1; }");
    assert!(msg.contains("a `while` loop is not allowed"), "{msg}");
    assert_eq!(at, "while x < 3 { x += 1; }");

    let (msg, at) = refused("b => if y > 0 { for i in 0..3 { x += i; } }");
    assert!(msg.contains("a `for` loop is not allowed"), "{msg}");
    assert_eq!(at, "for i in 0..3 { x += i; }");

    let (msg, at) = refused("b => loop { x = 1; }");
    assert!(msg.contains("a `loop` is not allowed"), "{msg}");
    assert!(msg.contains("generation time"), "{msg}");
    assert_eq!(at, "loop { x = 1; }");
}

#[test]
fn return_break_continue_are_refused() {
    let (msg, at) = refused("b => if x > 0 { return; }");
    assert!(msg.contains("`return` is not allowed"), "{msg}");
    assert_eq!(at, "return");

    let (msg, at) = refused("b => x = f(break);");
    assert!(msg.contains("`break`/`continue` are not allowed"), "{msg}");
    assert_eq!(at, "break");
}

#[test]
fn let_needs_a_builder_a_name_and_a_value() {
    let (msg, at) = refused("let t = 1;");
    assert!(msg.contains("needs the builder"), "{msg}");
    assert_eq!(at, "let t = 1;");

    let (msg, at) = refused("b => let (a, c) = (1, 2);");
    assert!(msg.contains("binds a single name"), "{msg}");
    assert_eq!(at, "(a, c)");

    let (msg, at) = refused("b => let t: u32 = 1;");
    assert!(msg.contains("takes no type"), "{msg}");
    assert_eq!(at, "u32");

    let (msg, _) = refused("b => let t;");
    assert!(msg.contains("needs an initial value"), "{msg}");
}

#[test]
fn value_position_if_and_assignment_are_refused() {
    let (msg, at) = refused("b => x = if y > 0 { 1 } else { 2 };");
    assert!(msg.contains("run-time `if` is a statement"), "{msg}");
    assert_eq!(at, "if");

    let (msg, at) = refused("b => x = (y = 2);");
    assert!(msg.contains("assignment is a statement"), "{msg}");
    assert_eq!(at, "y = 2");

    let (msg, at) = refused("b => 3 = x;");
    assert!(msg.contains("only a variable can be assigned"), "{msg}");
    assert_eq!(at, "3");
}

#[test]
fn the_builder_is_checked_once_at_the_top() {
    check_exact(
        quote! { self.b => x = 1; },
        quote! {{
            let _: &::ferrocat_plugin_api::ebpf::builder::Builder = self.b;
            x.assign(1);
        }},
    );
    check_exact(quote! { x = 1; }, quote! {{ x.assign(1); }});
}

#[test]
fn errors_become_compile_error() {
    let out = lower(quote! { b => while x { } }).to_string();
    assert!(out.contains("compile_error"), "{out}");
    assert!(out.contains("`while` loop is not allowed"), "{out}");
}

#[test]
fn a_generation_time_bool_uses_a_pattern() {
    check(
        quote! { b => if let true = self.limitless { x = 0; } else if x > 0 { x = 1; } },
        quote! {
            if let true = self.limitless { x.assign(0); } else {
                b.if_(x.gt(0), |__ebpf_b| { x.assign(1); });
            }
        },
    );
}
