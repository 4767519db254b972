//! The lowering of `ebpf!`: Rust-like device logic in, calls of the eBPF builder out.
//!
//! It works on tokens only (no types are known to a proc-macro), so every rule is
//! syntactic:
//!
//! | written | lowered to |
//! |---|---|
//! | `if c { A } else if d { B } else { C }` | `b.if_(c, \|b\| A).else_if(d, \|b\| B).else_(\|b\| C);` |
//! | `if let P = e { A } else { B }` | itself: a generation-time `if let` (bodies lowered) |
//! | `match e { .. }` | itself: a generation-time `match` (arm bodies lowered) |
//! | `a > b`, `>=`, `<`, `<=`, `==`, `!=` | `a.gt(b)`, `.ge`, `.lt`, `.le`, `.eq`, `.ne` (a literal on the left is swapped to the right: `0 < x` is `x.gt(0)`) |
//! | `c && d`, `c \|\| d` | `c.and(d)`, `c.or(d)` |
//! | `!c` in a condition | `!c` (`Not` on a condition) |
//! | a plain value `v` as a condition | `v.is_true()` (non-zero; a bool bit is tested directly) |
//! | `x = e;` | `x.assign(e);` (`e.as_value()` if `e` is a condition) |
//! | `x += e;` (and `-= *= /= %= <<= >>= &= \|= ^=`) | `x.add_assign(e);` (`sub_assign` ...) |
//! | `let t = e;` | `let t = b.temp(e);` (a run-time temporary) |
//! | arithmetic, casts, method and function calls, macros, items | unchanged (operands lowered) |
//! | `while`, `for`, `loop`, `return`, `break`, `continue`, `async`, `await` | a compile error naming the construct |
//!
//! The expansion is a block, or, if the macro's body has a `let` at its top level, the
//! statements themselves (the temporaries stay visible after the macro).
//!
//! `b` is the builder: the expression given before `=>` at the top of the macro
//! (`ebpf! { b => ... }`), and inside a run-time branch the branch closure's parameter.
//! Without a builder the run-time `if` uses the builder's free function
//! `if_(cond, || ..)`, and a `let` is refused with a message asking for one.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{BinOp, Block, Expr, Pat, Stmt, Token, UnOp};

/// The path of the builder module every lowered name comes from.
fn builder_path() -> TokenStream {
    quote!(::ferrocat_plugin_api::ebpf::builder)
}

/// The name of the builder inside a run-time branch's closure. `mixed_site` keeps it
/// invisible to (and unshadowable by) the user's code.
fn branch_builder() -> TokenStream {
    syn::Ident::new("__ebpf_b", Span::mixed_site()).into_token_stream()
}

/// The parsed macro input: an optional builder expression, then statements.
struct Input {
    builder: Option<Expr>,
    stmts: Vec<Stmt>,
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let fork = input.fork();
        let builder = match fork.parse::<Expr>() {
            Ok(e) if fork.peek(Token![=>]) => {
                input.parse::<Expr>()?;
                input.parse::<Token![=>]>()?;
                Some(e)
            }
            _ => None,
        };
        let stmts = Block::parse_within(input)?;
        Ok(Input { builder, stmts })
    }
}

/// Lowers the body of an `ebpf!` invocation; errors become `compile_error!` with the
/// span of the offending construct.
pub fn lower(input: TokenStream) -> TokenStream {
    match syn::parse2::<Input>(input).and_then(|i| lower_input(&i)) {
        Ok(ts) => ts,
        Err(e) => e.to_compile_error(),
    }
}

fn lower_input(input: &Input) -> syn::Result<TokenStream> {
    let cx = Cx {
        builder: input.builder.as_ref().map(|b| {
            if is_atomic(b) {
                b.to_token_stream()
            } else {
                quote!((#b))
            }
        }),
    };
    let mut body = TokenStream::new();
    if let (Some(b), Some(expr)) = (&cx.builder, &input.builder) {
        // Uses the builder even if nothing needs it, and reports a builder expression of
        // the wrong type at that expression.
        let bp = builder_path();
        body.extend(quote_spanned!(expr.span() => let _: &#bp::Builder = #b;));
    }
    body.extend(cx.stmts(&input.stmts)?);
    // Without a top-level `let` the expansion is a block, usable where an expression is
    // expected (`|b| ebpf! { b => .. }`); with one it stays statements, so the
    // temporaries remain visible after the macro, in the function that invoked it.
    if input.stmts.iter().any(|s| matches!(s, Stmt::Local(_))) {
        Ok(body)
    } else {
        Ok(quote!({ #body }))
    }
}

/// Where the builder is reachable at a point of the lowering.
#[derive(Clone)]
struct Cx {
    builder: Option<TokenStream>,
}

impl Cx {
    /// The context inside a run-time branch: the closure parameter is the builder,
    /// if the branch has one.
    fn branch(&self) -> Cx {
        Cx {
            builder: self.builder.as_ref().map(|_| branch_builder()),
        }
    }

    fn stmts(&self, stmts: &[Stmt]) -> syn::Result<TokenStream> {
        let mut out = TokenStream::new();
        for s in stmts {
            out.extend(self.stmt(s)?);
        }
        Ok(out)
    }

    fn block(&self, block: &Block) -> syn::Result<TokenStream> {
        let body = self.stmts(&block.stmts)?;
        Ok(quote_spanned!(block.brace_token.span.join() => { #body }))
    }

    fn stmt(&self, stmt: &Stmt) -> syn::Result<TokenStream> {
        match stmt {
            Stmt::Local(local) => self.local(local),
            Stmt::Item(item) => Ok(item.to_token_stream()),
            Stmt::Macro(m) => Ok(m.to_token_stream()),
            Stmt::Expr(e, semi) => {
                let lowered = self.stmt_expr(e)?;
                Ok(match semi {
                    Some(semi) => quote!(#lowered #semi),
                    // Blocks, `match` and `if let` stay Rust statements; everything
                    // else became a call, which needs its `;` (run-time code yields no
                    // value, so a tail expression is a statement too).
                    None if stays_statement(e) => lowered,
                    None => quote!(#lowered;),
                })
            }
        }
    }

    /// `let t = e;`: a run-time temporary initialised with `e`.
    fn local(&self, local: &syn::Local) -> syn::Result<TokenStream> {
        let name = match &local.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => &p.ident,
            Pat::Type(t) => {
                return Err(syn::Error::new_spanned(
                    &t.ty,
                    "ebpf!: a `let` temporary takes no type: it is a 64-bit value, \
                     signed unless its initial value is unsigned",
                ));
            }
            other => {
                return Err(syn::Error::new_spanned(
                    other,
                    "ebpf!: a `let` temporary binds a single name (`let speed = ...;`); \
                     destructure at generation time, outside ebpf!",
                ));
            }
        };
        let Some(init) = &local.init else {
            return Err(syn::Error::new_spanned(
                local,
                "ebpf!: a `let` temporary needs an initial value (`let t = 0;`); an \
                 uninitialised run-time variable is `b.local(type)`",
            ));
        };
        if let Some((else_token, _)) = &init.diverge {
            return Err(syn::Error::new_spanned(
                else_token,
                "ebpf!: `let ... else` is not supported in run-time code",
            ));
        }
        let Some(b) = &self.builder else {
            return Err(syn::Error::new_spanned(
                local,
                "ebpf!: a run-time `let` needs the builder: write `ebpf! { b => ... }` \
                 with `b: &Builder`",
            ));
        };
        let value = self.value_expr(&init.expr)?;
        let attrs = &local.attrs;
        Ok(quote_spanned!(local.let_token.span =>
            #(#attrs)* let #name = #b.temp(#value);
        ))
    }

    /// An expression in statement position.
    fn stmt_expr(&self, e: &Expr) -> syn::Result<TokenStream> {
        match e {
            Expr::If(i) => self.if_(i),
            Expr::Assign(a) => {
                let place = self.place(&a.left)?;
                let value = self.value_expr(&a.right)?;
                Ok(quote_spanned!(a.eq_token.span => #place.assign(#value)))
            }
            Expr::Binary(bin) if compound_method(&bin.op).is_some() => {
                let method =
                    syn::Ident::new(compound_method(&bin.op).unwrap_or("assign"), bin.op.span());
                let place = self.place(&bin.left)?;
                let value = self.value_expr(&bin.right)?;
                Ok(quote!(#place.#method(#value)))
            }
            Expr::Block(b) if b.label.is_none() => {
                let attrs = &b.attrs;
                let body = self.block(&b.block)?;
                Ok(quote!(#(#attrs)* #body))
            }
            Expr::Match(m) => self.match_(m),
            other => self.value(other),
        }
    }

    /// The place of an assignment: a variable handle, written as a path, a field, an
    /// index or a call returning one.
    fn place(&self, e: &Expr) -> syn::Result<TokenStream> {
        match e {
            Expr::Path(_) | Expr::Field(_) | Expr::Paren(_) => Ok(e.to_token_stream()),
            Expr::Index(_) | Expr::MethodCall(_) | Expr::Call(_) => {
                let v = self.value(e)?;
                Ok(if is_atomic(e) { v } else { quote!((#v)) })
            }
            other => Err(syn::Error::new_spanned(
                other,
                "ebpf!: only a variable can be assigned to (a packet, device, foreign or \
                 temporary variable such as `self.velocity`)",
            )),
        }
    }

    /// `if`: run-time unless it is an `if let`, which is generation-time Rust.
    fn if_(&self, i: &syn::ExprIf) -> syn::Result<TokenStream> {
        if matches!(&*i.cond, Expr::Let(_)) {
            return self.gen_if(i);
        }
        let bp = builder_path();
        let inner = self.branch();
        // `else` arms always get the builder; the free `if_` takes a plain closure.
        let closure_param = {
            let p = branch_builder();
            quote!(|#p|)
        };
        let cond = self.cond(&i.cond)?;
        let then = inner.block(&i.then_branch)?;
        let mut out = match &self.builder {
            Some(b) => quote_spanned!(i.if_token.span => #b.if_(#cond, #closure_param #then)),
            None => quote_spanned!(i.if_token.span => #bp::if_(#cond, || #then)),
        };
        let mut rest = i.else_branch.as_ref();
        while let Some((else_token, branch)) = rest {
            match &**branch {
                Expr::If(elif) if !matches!(&*elif.cond, Expr::Let(_)) => {
                    let cond = self.cond(&elif.cond)?;
                    let body = inner.block(&elif.then_branch)?;
                    out = quote_spanned!(elif.if_token.span =>
                        #out.else_if(#cond, #closure_param #body));
                    rest = elif.else_branch.as_ref();
                }
                Expr::If(gen_if) => {
                    // `else if let`: a generation-time choice inside the run-time else.
                    let body = inner.gen_if(gen_if)?;
                    out = quote_spanned!(else_token.span =>
                        #out.else_(#closure_param { #body }));
                    rest = None;
                }
                Expr::Block(b) => {
                    let body = inner.block(&b.block)?;
                    out = quote_spanned!(else_token.span => #out.else_(#closure_param #body));
                    rest = None;
                }
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "ebpf!: unexpected else branch",
                    ));
                }
            }
        }
        Ok(out)
    }

    /// A generation-time `if let`: kept as Rust, its bodies lowered in this context.
    fn gen_if(&self, i: &syn::ExprIf) -> syn::Result<TokenStream> {
        let attrs = &i.attrs;
        let if_token = &i.if_token;
        let cond = &i.cond;
        let then = self.block(&i.then_branch)?;
        let else_part = match &i.else_branch {
            None => TokenStream::new(),
            Some((else_token, branch)) => match &**branch {
                Expr::If(elif) => {
                    let lowered = self.if_(elif)?;
                    if matches!(&*elif.cond, Expr::Let(_)) {
                        quote!(#else_token #lowered)
                    } else {
                        quote!(#else_token { #lowered; })
                    }
                }
                Expr::Block(b) => {
                    let body = self.block(&b.block)?;
                    quote!(#else_token #body)
                }
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "ebpf!: unexpected else branch",
                    ));
                }
            },
        };
        Ok(quote!(#(#attrs)* #if_token #cond #then #else_part))
    }

    /// A generation-time `match`: kept as Rust, arm bodies lowered as statements.
    fn match_(&self, m: &syn::ExprMatch) -> syn::Result<TokenStream> {
        let attrs = &m.attrs;
        let match_token = &m.match_token;
        let scrutinee = &m.expr;
        let mut arms = TokenStream::new();
        for arm in &m.arms {
            let attrs = &arm.attrs;
            let pat = &arm.pat;
            let guard = arm.guard.as_ref().map(|(if_token, g)| quote!(#if_token #g));
            let body = match &*arm.body {
                Expr::Block(b) if b.label.is_none() => self.block(&b.block)?,
                other => {
                    let s = self.stmt_expr(other)?;
                    quote!({ #s; })
                }
            };
            let arrow = &arm.fat_arrow_token;
            arms.extend(quote!(#(#attrs)* #pat #guard #arrow #body));
        }
        Ok(quote!(#(#attrs)* #match_token #scrutinee { #arms }))
    }

    /// A run-time condition.
    fn cond(&self, e: &Expr) -> syn::Result<TokenStream> {
        match e {
            Expr::Paren(p) if is_condition(&p.expr) => self.cond(&p.expr),
            Expr::Binary(bin) => match &bin.op {
                BinOp::And(_) | BinOp::Or(_) => {
                    let method = if matches!(bin.op, BinOp::And(_)) {
                        "and"
                    } else {
                        "or"
                    };
                    let method = syn::Ident::new(method, bin.op.span());
                    let l = self.cond_operand(&bin.left)?;
                    let r = self.cond_operand(&bin.right)?;
                    Ok(quote!(#l.#method(#r)))
                }
                op if compare_method(op).is_some() => self.compare(bin),
                _ => self.value(e),
            },
            Expr::Unary(u) if matches!(u.op, UnOp::Not(_)) => {
                if is_condition(&u.expr) || yields_condition(&u.expr) {
                    let inner = self.cond_operand(&u.expr)?;
                    let not = &u.op;
                    Ok(quote!(#not #inner))
                } else {
                    let inner = self.receiver(&u.expr)?;
                    let not = &u.op;
                    Ok(quote_spanned!(u.op.span() => #not #inner.is_true()))
                }
            }
            other if yields_condition(other) => self.value(other),
            other => {
                let v = self.receiver(other)?;
                Ok(quote_spanned!(other.span() => #v.is_true()))
            }
        }
    }

    /// An operand of `&&`, `||` or `!`: a condition with method-call precedence.
    fn cond_operand(&self, e: &Expr) -> syn::Result<TokenStream> {
        let stripped = strip_parens(e);
        let is_not = matches!(stripped, Expr::Unary(u) if matches!(u.op, UnOp::Not(_)));
        if is_condition(e) || is_not {
            let c = self.cond(stripped)?;
            Ok(match stripped {
                // `!c` as a receiver needs parentheses.
                Expr::Unary(_) => quote!((#c)),
                _ => c,
            })
        } else {
            self.cond(e)
        }
    }

    /// `a OP b` for a comparison, as a method call on the non-literal side.
    fn compare(&self, bin: &syn::ExprBinary) -> syn::Result<TokenStream> {
        let method = compare_method(&bin.op).unwrap_or("eq");
        let (left, right, method) = if is_literal(&bin.left) && !is_literal(&bin.right) {
            (&bin.right, &bin.left, swapped(method))
        } else {
            (&bin.left, &bin.right, method)
        };
        let method = syn::Ident::new(method, bin.op.span());
        let l = self.receiver(left)?;
        let r = self.value(right)?;
        Ok(quote!(#l.#method(#r)))
    }

    /// A value used as a method receiver: parenthesised unless it binds tighter.
    fn receiver(&self, e: &Expr) -> syn::Result<TokenStream> {
        let v = self.value(e)?;
        Ok(if is_atomic(e) { v } else { quote!((#v)) })
    }

    /// The right-hand side of an assignment or `let`: a value, or a condition turned
    /// into 0/1.
    fn value_expr(&self, e: &Expr) -> syn::Result<TokenStream> {
        if is_condition(e) {
            let c = self.cond(e)?;
            Ok(match strip_parens(e) {
                Expr::Unary(_) => quote!((#c).as_value()),
                _ => quote!(#c.as_value()),
            })
        } else {
            self.value(e)
        }
    }

    /// A run-time value: arithmetic and calls pass through with their operands lowered.
    fn value(&self, e: &Expr) -> syn::Result<TokenStream> {
        Ok(match e {
            Expr::While(_) => return Err(refuse(e, "a `while` loop")),
            Expr::ForLoop(_) => return Err(refuse(e, "a `for` loop")),
            Expr::Loop(_) => return Err(refuse(e, "a `loop`")),
            Expr::Return(_) => {
                return Err(syn::Error::new_spanned(
                    e,
                    "ebpf!: `return` is not allowed: device logic falls off its end \
                     (use `b.exit(verdict)` for a standalone program's verdict)",
                ));
            }
            Expr::Break(_) | Expr::Continue(_) => {
                return Err(syn::Error::new_spanned(
                    e,
                    "ebpf!: `break`/`continue` are not allowed: there are no loops in \
                     device logic",
                ));
            }
            Expr::Async(_) | Expr::Await(_) | Expr::Yield(_) | Expr::TryBlock(_) => {
                return Err(syn::Error::new_spanned(
                    e,
                    "ebpf!: this construct has no meaning in eBPF device logic",
                ));
            }
            Expr::If(i) if matches!(&*i.cond, Expr::Let(_)) => self.gen_if(i)?,
            Expr::If(i) => {
                return Err(syn::Error::new_spanned(
                    i.if_token,
                    "ebpf!: a run-time `if` is a statement, not a value: assign in each \
                     branch (`if c { x = a; } else { x = b; }`)",
                ));
            }
            Expr::Assign(_) => {
                return Err(syn::Error::new_spanned(
                    e,
                    "ebpf!: an assignment is a statement, not a value",
                ));
            }
            Expr::Binary(bin) if compound_method(&bin.op).is_some() => {
                return Err(syn::Error::new_spanned(
                    e,
                    "ebpf!: a compound assignment is a statement, not a value",
                ));
            }
            Expr::Binary(bin)
                if compare_method(&bin.op).is_some()
                    || matches!(bin.op, BinOp::And(_) | BinOp::Or(_)) =>
            {
                self.cond(e)?
            }
            Expr::Binary(bin) => {
                let l = self.value(&bin.left)?;
                let r = self.value(&bin.right)?;
                let op = &bin.op;
                quote!(#l #op #r)
            }
            Expr::Unary(u) => {
                let inner = self.value(&u.expr)?;
                let op = &u.op;
                quote!(#op #inner)
            }
            Expr::Paren(p) => {
                let inner = self.value(&p.expr)?;
                quote_spanned!(p.paren_token.span.join() => (#inner))
            }
            Expr::MethodCall(m) => {
                let receiver = self.value(&m.receiver)?;
                let args = self.args(&m.args)?;
                let method = &m.method;
                let turbofish = &m.turbofish;
                let dot = &m.dot_token;
                quote!(#receiver #dot #method #turbofish (#args))
            }
            Expr::Call(c) => {
                let func = self.value(&c.func)?;
                let args = self.args(&c.args)?;
                quote!(#func(#args))
            }
            Expr::Cast(c) => {
                let inner = self.value(&c.expr)?;
                let as_token = &c.as_token;
                let ty = &c.ty;
                quote!(#inner #as_token #ty)
            }
            Expr::Block(b) if b.label.is_none() => self.block(&b.block)?,
            Expr::Closure(c) => {
                let body = match &*c.body {
                    Expr::Block(b) if b.label.is_none() => self.block(&b.block)?,
                    other => self.value(other)?,
                };
                let attrs = &c.attrs;
                let lifetimes = &c.lifetimes;
                let constness = &c.constness;
                let movability = &c.movability;
                let asyncness = &c.asyncness;
                let capture = &c.capture;
                let or1 = &c.or1_token;
                let inputs = &c.inputs;
                let or2 = &c.or2_token;
                let output = &c.output;
                quote!(#(#attrs)* #lifetimes #constness #movability #asyncness #capture
                    #or1 #inputs #or2 #output #body)
            }
            Expr::Match(m) => self.match_(m)?,
            Expr::Group(g) => self.value(&g.expr)?,
            // Paths, fields, literals, macros, indexing, ranges, tuples, references...
            // carry no run-time control flow: generation-time Rust or plain handles.
            other => other.to_token_stream(),
        })
    }

    fn args(
        &self,
        args: &syn::punctuated::Punctuated<Expr, Token![,]>,
    ) -> syn::Result<TokenStream> {
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            out.push(self.value(a)?);
        }
        Ok(quote!(#(#out),*))
    }
}

/// The compile error for a loop.
fn refuse(e: &Expr, what: &str) -> syn::Error {
    syn::Error::new_spanned(
        e,
        format!(
            "ebpf!: {what} is not allowed in run-time code: device logic runs once per \
             cycle and the verifier needs bounded code; repeat at generation time instead \
             (a Rust loop around `ebpf!`)"
        ),
    )
}

/// The builder method of a compound assignment operator.
fn compound_method(op: &BinOp) -> Option<&'static str> {
    Some(match op {
        BinOp::AddAssign(_) => "add_assign",
        BinOp::SubAssign(_) => "sub_assign",
        BinOp::MulAssign(_) => "mul_assign",
        BinOp::DivAssign(_) => "div_assign",
        BinOp::RemAssign(_) => "rem_assign",
        BinOp::ShlAssign(_) => "shl_assign",
        BinOp::ShrAssign(_) => "shr_assign",
        BinOp::BitAndAssign(_) => "and_assign",
        BinOp::BitOrAssign(_) => "or_assign",
        BinOp::BitXorAssign(_) => "xor_assign",
        _ => return None,
    })
}

/// The builder method of a comparison operator.
fn compare_method(op: &BinOp) -> Option<&'static str> {
    Some(match op {
        BinOp::Gt(_) => "gt",
        BinOp::Ge(_) => "ge",
        BinOp::Lt(_) => "lt",
        BinOp::Le(_) => "le",
        BinOp::Eq(_) => "eq",
        BinOp::Ne(_) => "ne",
        _ => return None,
    })
}

/// The comparison with its operands exchanged: `0 < x` is `x > 0`.
fn swapped(method: &'static str) -> &'static str {
    match method {
        "gt" => "lt",
        "lt" => "gt",
        "ge" => "le",
        "le" => "ge",
        same => same,
    }
}

fn strip_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip_parens(&p.expr),
        Expr::Group(g) => strip_parens(&g.expr),
        other => other,
    }
}

/// Whether `e` is written as a condition: a comparison, `&&`, `||` or `!` of one.
fn is_condition(e: &Expr) -> bool {
    match strip_parens(e) {
        Expr::Binary(b) => {
            compare_method(&b.op).is_some() || matches!(b.op, BinOp::And(_) | BinOp::Or(_))
        }
        Expr::Unary(u) => matches!(u.op, UnOp::Not(_)) && is_condition(&u.expr),
        _ => false,
    }
}

/// Whether `e` is a call that may already yield a condition (a generator function or
/// a builder method such as `is_true()`); it is then used as it is.
fn yields_condition(e: &Expr) -> bool {
    match strip_parens(e) {
        Expr::MethodCall(m) => !matches!(
            m.method.to_string().as_str(),
            "abs"
                | "min"
                | "max"
                | "clamp"
                | "as_signed"
                | "as_unsigned"
                | "fetch_add"
                | "xchg"
                | "cmpxchg"
                | "as_value"
        ),
        Expr::Call(_) | Expr::Macro(_) => true,
        _ => false,
    }
}

/// Whether `e` is a literal (possibly negated): it cannot be a method receiver.
fn is_literal(e: &Expr) -> bool {
    match strip_parens(e) {
        Expr::Lit(_) => true,
        Expr::Unary(u) => matches!(u.op, UnOp::Neg(_)) && is_literal(&u.expr),
        Expr::Cast(c) => is_literal(&c.expr),
        _ => false,
    }
}

/// Whether `e` binds at least as tightly as a method call (needs no parentheses as a
/// receiver).
fn is_atomic(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Path(_)
            | Expr::Field(_)
            | Expr::MethodCall(_)
            | Expr::Call(_)
            | Expr::Paren(_)
            | Expr::Index(_)
            | Expr::Macro(_)
            | Expr::Tuple(_)
    )
}

/// Whether the lowered form of statement `e` is still a block-like Rust statement that
/// needs no `;` (a block, a generation-time `match` or `if let`).
fn stays_statement(e: &Expr) -> bool {
    match e {
        Expr::If(i) => matches!(&*i.cond, Expr::Let(_)),
        Expr::Block(_) | Expr::Match(_) | Expr::Unsafe(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
