//! The `ebpf!` DSL: device logic written as ordinary Rust, lowered to calls of the
//! builder in `ferrocat_plugin_api::ebpf::builder`.
//!
//! The rules are in the `lower` module and in `docs/dsl.md`; this file is only the
//! proc-macro entry point.

mod device;
mod lower;

use proc_macro::TokenStream;

/// Lowers a block of Rust-like device logic to eBPF builder calls.
///
/// ```ignore
/// ebpf! { b =>
///     let speed = self.target - self.encoder;
///     if speed.abs() > self.deadband && self.enabled {
///         self.velocity = speed;
///     } else {
///         self.velocity = 0;
///     }
/// }
/// ```
///
/// Run-time `if`/`else if`/`else`, comparisons, `&&`/`||`/`!`, assignments, compound
/// assignments and `let` temporaries become builder calls; arithmetic and calls pass
/// through; `if let` and `match` stay generation-time Rust; loops and `return` are
/// compile errors. `b =>` names the builder (needed for `let`).
#[proc_macro]
pub fn ebpf(input: TokenStream) -> TokenStream {
    lower::lower(input.into()).into()
}

/// Declares devices' variables once, like the seed's class attributes: for each
/// `struct`, the struct of `Var<'b>` handles and its `declare(b, present)` constructor.
/// `struct Follower: Motor` derives a device from a base device, and `linked(Motor)`
/// declares another device reached through a device link.
///
/// ```ignore
/// device! {
///     /// A stepper motor.
///     pub struct Motor {
///         velocity: terminal("stepper", I16),
///         reduced_current: Option<terminal("stepper", Bool)>,
///         target: device(I64),
///     }
/// }
/// let motor = Motor::declare(&b, &|_| true);
/// ```
///
/// See `docs/dsl.md` for every field form.
#[proc_macro]
pub fn device(input: TokenStream) -> TokenStream {
    device::expand(input.into()).into()
}
