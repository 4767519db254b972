//! `device!`: a device's variables declared once, like the seed's class attributes
//! (`velocity = TerminalVar()`), giving the struct of handles and its `declare`.
//!
//! ```text
//! device! {
//!     /// A stepper motor.
//!     pub struct Motor {
//!         velocity: terminal("stepper", I16),         // b.terminal("stepper", "velocity", I16)
//!         encoder: terminal("stepper", "enc", I32),    // explicit name
//!         reduced_current: Option<terminal("stepper", Bool)>, // only if present("reduced_current")
//!         target: device(I64),                         // b.device("target", I64)
//!         leader_word: foreign("leader", "set_control_word", U16),
//!         scratch: local(I64),                         // b.local(I64)
//!         inner: Other<'b>,                            // Other::declare(b, present)
//!         leader: linked(Motor),                       // another Motor, through device link "leader"
//!         gain: f64,                                   // Default::default(), set by the caller
//!     }
//! }
//! ```
//!
//! `pub struct Follower: Motor { .. }` makes `Motor` the base device (the seed's
//! `class FollowerDevice(MotorDevice)`): a field `base: Motor<'b>` declaring the same
//! device's variables, and `Deref<Target = Motor<'b>>`, so `self.target` is the base's.
//!
//! A `linked(T)` field is device `T` as this device sees it through the device link
//! named like the field: its terminal variables are reached through the link (terminal
//! link `"leader.stepper"`), its device variables are foreign variables. Every device
//! gets `declare_via(b, via, present)`, which declares its variables as seen through the
//! device-link path `via` (`declare` is `declare_via(b, "", present)`); a linked
//! device's `present` is asked with the path (`"leader.reduced_current"`).
//!
//! One `device!` may define several devices, one after the other.
//!
//! The struct gets the builder lifetime `'b`, and fields without a visibility of their
//! own that of the struct; variable fields become `Var<'b>` (or
//! `Option<Var<'b>>`), a field whose type mentions `'b` is a nested device, and any other
//! field is a generation-time value initialised with `Default::default()` (override it with
//! struct-update syntax: `Follower { lag: 100, ..Follower::declare(b, &|_| true) }`). Bare
//! type names (`U8` .. `I64`, `Bool`, `Bits(n)`) are `ScalarType`s.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Ident, LitStr, Token, Type, Visibility};

/// The builder methods a field may be declared with, and how many arguments they take
/// when the variable's name is left out (it is then the field's name).
const KINDS: [(&str, usize); 5] = [
    ("terminal", 2),
    ("optional_terminal", 2),
    ("foreign", 2),
    ("device", 1),
    ("local", 1),
];

/// Names of `ScalarType` variants that may be written bare.
const SCALARS: [&str; 9] = ["U8", "U16", "U32", "U64", "I8", "I16", "I32", "I64", "Bool"];

struct DeviceDef {
    attrs: Vec<Attribute>,
    vis: Visibility,
    name: Ident,
    base: Option<Type>,
    fields: Vec<FieldDef>,
}

struct FieldDef {
    attrs: Vec<Attribute>,
    vis: Visibility,
    name: Ident,
    spec: FieldSpec,
}

enum FieldSpec {
    Var { kind: Ident, args: Vec<Expr> },
    OptionalVar { kind: Ident, args: Vec<Expr> },
    Nested(Type),
    Linked(Type),
    Plain(Type),
}

/// `T` with the builder lifetime: `Motor` becomes `Motor<'b>`; `Motor<'b>` stays.
fn with_builder_lifetime(ty: Type) -> Type {
    if mentions_builder_lifetime(&ty) {
        return ty;
    }
    syn::parse_quote!(#ty<'b>)
}

fn is_kind(input: ParseStream<'_>) -> bool {
    let fork = input.fork();
    match fork.parse::<Ident>() {
        Ok(id) => KINDS.iter().any(|(k, _)| id == k) && fork.peek(syn::token::Paren),
        Err(_) => false,
    }
}

fn parse_var(input: ParseStream<'_>) -> syn::Result<(Ident, Vec<Expr>)> {
    let kind: Ident = input.parse()?;
    let content;
    syn::parenthesized!(content in input);
    let args = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
    let (_, short) = KINDS
        .iter()
        .find(|(k, _)| kind == k)
        .copied()
        .unwrap_or(("", 0));
    if args.len() != short && args.len() != short + 1 {
        return Err(syn::Error::new_spanned(
            &kind,
            format!(
                "device!: `{kind}` takes {short} argument(s) (the name is the field's) or \
                 {} with an explicit name",
                short + 1
            ),
        ));
    }
    Ok((kind, args.into_iter().collect()))
}

fn mentions_builder_lifetime(ty: &Type) -> bool {
    ty.to_token_stream()
        .into_iter()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| {
            matches!(&w[0], proc_macro2::TokenTree::Punct(p) if p.as_char() == '\'')
                && matches!(&w[1], proc_macro2::TokenTree::Ident(i) if i == "b")
        })
}

impl Parse for FieldDef {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let name: Ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let spec = if input.peek(Ident) && input.peek2(syn::token::Paren) && {
            let fork = input.fork();
            fork.parse::<Ident>().is_ok_and(|i| i == "linked")
        } {
            input.parse::<Ident>()?;
            let content;
            syn::parenthesized!(content in input);
            let ty: Type = content.parse()?;
            if !content.is_empty() {
                return Err(
                    content.error("device!: `linked` takes one device type: `linked(Motor)`")
                );
            }
            FieldSpec::Linked(with_builder_lifetime(ty))
        } else if is_kind(input) {
            let (kind, args) = parse_var(input)?;
            FieldSpec::Var { kind, args }
        } else if input.peek(Ident) && input.peek2(Token![<]) && {
            let fork = input.fork();
            fork.parse::<Ident>().is_ok_and(|i| i == "Option") && {
                fork.parse::<Token![<]>().is_ok() && is_kind(&fork)
            }
        } {
            input.parse::<Ident>()?;
            input.parse::<Token![<]>()?;
            let (kind, args) = parse_var(input)?;
            input.parse::<Token![>]>()?;
            FieldSpec::OptionalVar { kind, args }
        } else if input.peek(Ident) && input.peek2(syn::token::Paren) {
            let kind: Ident = input.parse()?;
            return Err(syn::Error::new_spanned(
                &kind,
                format!(
                    "device!: unknown declaration `{kind}(..)`: expected terminal, \
                     optional_terminal, device, foreign, local or linked"
                ),
            ));
        } else {
            let ty: Type = input.parse()?;
            if mentions_builder_lifetime(&ty) {
                FieldSpec::Nested(ty)
            } else {
                FieldSpec::Plain(ty)
            }
        };
        Ok(FieldDef {
            attrs,
            vis,
            name,
            spec,
        })
    }
}

impl Parse for DeviceDef {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        input.parse::<Token![struct]>()?;
        let name: Ident = input.parse()?;
        if input.peek(Token![<]) {
            return Err(input.error(
                "device!: write the struct without generics; it gets the builder lifetime 'b",
            ));
        }
        let base = if input.parse::<Option<Token![:]>>()?.is_some() {
            Some(with_builder_lifetime(input.parse()?))
        } else {
            None
        };
        let content;
        syn::braced!(content in input);
        let fields = Punctuated::<FieldDef, Token![,]>::parse_terminated(&content)?;
        if let Some(f) = fields.iter().find(|f| f.name == "base" && base.is_some()) {
            return Err(syn::Error::new_spanned(
                &f.name,
                "device!: a device with a base device has a field `base` already",
            ));
        }
        Ok(DeviceDef {
            attrs,
            vis,
            name,
            base,
            fields: fields.into_iter().collect(),
        })
    }
}

/// Expands `device!`; errors become `compile_error!`.
pub fn expand(input: TokenStream) -> TokenStream {
    match syn::parse2::<Devices>(input) {
        Ok(Devices(defs)) => defs.iter().map(expand_def).collect(),
        Err(e) => e.to_compile_error(),
    }
}

/// One or more device definitions in one `device!`.
struct Devices(Vec<DeviceDef>);

impl Parse for Devices {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut defs = vec![input.parse::<DeviceDef>()?];
        while !input.is_empty() {
            defs.push(input.parse()?);
        }
        Ok(Devices(defs))
    }
}

/// A type argument: a bare scalar name is a `ScalarType` variant.
fn type_arg(e: &Expr) -> TokenStream {
    let scalar = quote!(::ferrocat_plugin_api::fragment::ScalarType);
    match e {
        Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
            let id = p
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            if SCALARS.contains(&id.as_str()) {
                let id = format_ident!("{}", id, span = p.path.segments[0].ident.span());
                return quote!(#scalar::#id);
            }
            e.to_token_stream()
        }
        Expr::Call(c) if matches!(&*c.func, Expr::Path(p) if p.path.is_ident("Bits")) => {
            let args = &c.args;
            quote!(#scalar::Bits(#args))
        }
        other => other.to_token_stream(),
    }
}

fn declaration(field: &Ident, kind: &Ident, args: &[Expr]) -> TokenStream {
    let (_, short) = KINDS
        .iter()
        .find(|(k, _)| kind == k)
        .copied()
        .unwrap_or(("", 0));
    let name = LitStr::new(&field.to_string(), field.span());
    let mut out: Vec<TokenStream> = Vec::new();
    let last = args.len().saturating_sub(1);
    for (i, a) in args.iter().enumerate() {
        if i == last {
            if kind != "local" && args.len() == short {
                out.push(name.to_token_stream());
            }
            out.push(type_arg(a));
        } else {
            out.push(a.to_token_stream());
        }
    }
    // Declarations go through the device-link path `via`: the device's own variables
    // when `via` is empty, another device's through a link otherwise.
    if kind == "device" {
        return quote!(b.device_via(via, #(#out),*));
    }
    if kind != "local" {
        let bp = quote!(::ferrocat_plugin_api::ebpf::builder);
        let link = out[0].clone();
        out[0] = quote!(&#bp::link_path(via, #link));
    }
    quote!(b.#kind(#(#out),*))
}

fn generated_doc(field: &Ident, kind: &Ident, args: &[Expr]) -> String {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_token_stream().to_string())
        .collect();
    format!(
        "Variable `{field}`, declared as `{kind}({})`.",
        args.join(", ")
    )
}

fn expand_def(def: &DeviceDef) -> TokenStream {
    let DeviceDef {
        attrs,
        vis,
        name,
        base,
        fields,
    } = def;
    let bp = quote!(::ferrocat_plugin_api::ebpf::builder);
    let mut decls = Vec::new();
    let mut inits = Vec::new();
    let mut deref = TokenStream::new();
    if let Some(base) = base {
        let doc = format!(
            "The base device `{}`: the same device's variables, reached through `Deref`.",
            base.to_token_stream().to_string().replace(' ', "")
        );
        decls.push(quote!(#[doc = #doc] #vis base: #base));
        inits.push(quote!(base: <#base>::declare_via(b, via, present)));
        deref = quote! {
            impl<'b> ::core::ops::Deref for #name<'b> {
                type Target = #base;
                fn deref(&self) -> &#base {
                    &self.base
                }
            }
        };
    }
    for f in fields {
        let FieldDef {
            attrs: fattrs,
            vis: fvis,
            name: fname,
            spec,
        } = f;
        let has_doc = fattrs.iter().any(|a| a.path().is_ident("doc"));
        let (ty, init, doc) = match spec {
            FieldSpec::Var { kind, args } => (
                quote!(#bp::Var<'b>),
                declaration(fname, kind, args),
                generated_doc(fname, kind, args),
            ),
            FieldSpec::OptionalVar { kind, args } => {
                let decl = declaration(fname, kind, args);
                let lit = LitStr::new(&fname.to_string(), fname.span());
                (
                    quote!(::core::option::Option<#bp::Var<'b>>),
                    quote!(if present(#lit) { ::core::option::Option::Some(#decl) } else { ::core::option::Option::None }),
                    format!(
                        "{} Declared only if the terminal provides it.",
                        generated_doc(fname, kind, args)
                    ),
                )
            }
            FieldSpec::Nested(ty) => (
                ty.to_token_stream(),
                quote!(<#ty>::declare_via(b, via, present)),
                format!("The nested device `{fname}`."),
            ),
            FieldSpec::Linked(ty) => {
                let lit = LitStr::new(&fname.to_string(), fname.span());
                (
                    ty.to_token_stream(),
                    quote!(<#ty>::declare_via(
                        b,
                        &#bp::link_path(via, #lit),
                        &|n: &str| present(&#bp::link_path(#lit, n)),
                    )),
                    format!("The device linked as `{fname}`, seen through that device link."),
                )
            }
            FieldSpec::Plain(ty) => (
                ty.to_token_stream(),
                quote!(::core::default::Default::default()),
                format!("Generation-time value `{fname}`."),
            ),
        };
        let doc_attr = if has_doc {
            TokenStream::new()
        } else {
            quote!(#[doc = #doc])
        };
        // A field without its own visibility is as visible as the struct (the handles
        // are the device's interface, like the seed's class attributes).
        let fvis = match fvis {
            Visibility::Inherited => vis.to_token_stream(),
            other => other.to_token_stream(),
        };
        decls.push(quote!(#(#fattrs)* #doc_attr #fvis #fname: #ty));
        inits.push(quote!(#fname: #init));
    }
    quote! {
        #(#attrs)*
        #[derive(Debug, Clone)]
        #vis struct #name<'b> {
            #(#decls,)*
        }

        impl<'b> #name<'b> {
            /// Declares every variable of this device in `b`. An `Option` variable is
            /// declared only if `present(field name)` says the terminal provides it.
            #vis fn declare(b: &'b #bp::Builder, present: &dyn Fn(&str) -> bool) -> Self {
                Self::declare_via(b, "", present)
            }

            /// Declares every variable of this device as another device sees it through
            /// the device-link path `via` (`""`: this device itself): terminal variables
            /// through the link, device variables as foreign variables.
            #vis fn declare_via(
                b: &'b #bp::Builder,
                via: &str,
                present: &dyn Fn(&str) -> bool,
            ) -> Self {
                let _ = (via, present);
                #name {
                    #(#inits,)*
                }
            }
        }

        #deref
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_expand_to_declarations() {
        let out = expand(quote! {
            /// A motor.
            pub struct Motor {
                velocity: terminal("stepper", I16),
                encoder: terminal("stepper", "enc", I32),
                rc: Option<terminal("stepper", Bool)>,
                /// The target.
                pub target: device(I64),
                field: terminal("x", Bits(3)),
                word: foreign("leader", "set_control_word", U16),
                s: local(U64),
                inner: Other<'b>,
                gain: f64,
            }
        })
        .to_string();
        let expect = |s: TokenStream| {
            let s = s.to_string();
            assert!(out.contains(&s), "missing `{s}` in `{out}`");
        };
        expect(quote!(pub struct Motor<'b>));
        expect(
            quote!(velocity: b.terminal(&::ferrocat_plugin_api::ebpf::builder::link_path(via, "stepper"), "velocity", ::ferrocat_plugin_api::fragment::ScalarType::I16)),
        );
        expect(
            quote!(encoder: b.terminal(&::ferrocat_plugin_api::ebpf::builder::link_path(via, "stepper"), "enc", ::ferrocat_plugin_api::fragment::ScalarType::I32)),
        );
        expect(
            quote!(rc: if present("rc") { ::core::option::Option::Some(b.terminal(&::ferrocat_plugin_api::ebpf::builder::link_path(via, "stepper"), "rc", ::ferrocat_plugin_api::fragment::ScalarType::Bool)) } else { ::core::option::Option::None }),
        );
        expect(
            quote!(target: b.device_via(via, "target", ::ferrocat_plugin_api::fragment::ScalarType::I64)),
        );
        expect(
            quote!(field: b.terminal(&::ferrocat_plugin_api::ebpf::builder::link_path(via, "x"), "field", ::ferrocat_plugin_api::fragment::ScalarType::Bits(3))),
        );
        expect(
            quote!(word: b.foreign(&::ferrocat_plugin_api::ebpf::builder::link_path(via, "leader"), "set_control_word", ::ferrocat_plugin_api::fragment::ScalarType::U16)),
        );
        expect(quote!(s: b.local(::ferrocat_plugin_api::fragment::ScalarType::U64)));
        expect(quote!(inner: <Other<'b> >::declare_via(b, via, present)));
        expect(quote!(gain: ::core::default::Default::default()));
        expect(quote!(pub target: ::ferrocat_plugin_api::ebpf::builder::Var<'b>));
        assert!(
            out.contains("The target.") && !out.contains("Variable `target`"),
            "{out}"
        );
        expect(quote!(rc: ::core::option::Option<::ferrocat_plugin_api::ebpf::builder::Var<'b>>));
        expect(quote!(#[doc = "Variable `velocity`, declared as `terminal(\"stepper\", I16)`."]));
    }

    #[test]
    fn a_base_device_is_a_field_and_the_deref_target() {
        let out = expand(quote! {
            pub struct Follower: Motor {
                leader: linked(Motor),
                lag: i64,
            }
        })
        .to_string();
        let expect = |s: TokenStream| {
            let s = s.to_string();
            assert!(out.contains(&s), "missing `{s}` in `{out}`");
        };
        expect(quote!(pub base: Motor<'b>));
        expect(quote!(base: <Motor<'b> >::declare_via(b, via, present)));
        assert!(
            out.contains(&quote!(impl<'b> ::core::ops::Deref for Follower<'b>).to_string())
                && out.contains(
                    &quote!(
                        type Target = Motor<'b>;
                    )
                    .to_string()
                ),
            "{out}"
        );
        expect(quote!(pub leader: Motor<'b>));
        expect(quote!(leader: <Motor<'b> >::declare_via(
            b,
            &::ferrocat_plugin_api::ebpf::builder::link_path(via, "leader"),
            &|n: &str| present(&::ferrocat_plugin_api::ebpf::builder::link_path("leader", n)),
        )));
        expect(quote!(Self::declare_via(b, "", present)));
    }

    #[test]
    fn several_devices_in_one_macro() {
        let out = expand(quote! {
            pub struct A { x: device(I64) }
            /// B.
            struct B: A { y: device(U8) }
        })
        .to_string();
        assert!(out.contains(&quote!(pub struct A<'b>).to_string()), "{out}");
        assert!(out.contains(&quote!(struct B<'b>).to_string()), "{out}");
        assert!(
            out.contains(
                &quote!(
                    type Target = A<'b>;
                )
                .to_string()
            ),
            "{out}"
        );
    }

    #[test]
    fn a_field_named_base_next_to_a_base_device_is_refused() {
        let out = expand(quote! { struct F: Motor { base: device(I64) } }).to_string();
        assert!(out.contains("has a field `base` already"), "{out}");
    }

    #[test]
    fn linked_takes_one_type() {
        let out = expand(quote! { struct F { l: linked(Motor, 3) } }).to_string();
        assert!(out.contains("`linked` takes one device type"), "{out}");
    }

    #[test]
    fn wrong_argument_count_is_refused() {
        let out = expand(quote! { struct M { v: device("a", "b", I64) } }).to_string();
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("`device` takes 1 argument"), "{out}");
    }

    #[test]
    fn unknown_declarations_are_named() {
        let out = expand(quote! { struct M { v: termnal("stepper", I16) } }).to_string();
        assert!(out.contains("unknown declaration `termnal(..)`"), "{out}");
    }

    #[test]
    fn generics_are_refused() {
        let out = expand(quote! { struct M<'a> { v: device(I64) } }).to_string();
        assert!(out.contains("without generics"), "{out}");
    }
}
