//! The `ebpf!` DSL: device logic written as ordinary Rust, lowered to calls of the
//! builder in `ferrocat_plugin_api::ebpf`.

use proc_macro::TokenStream;

/// Lowers a block of Rust-like device logic to eBPF builder calls.
#[proc_macro]
pub fn ebpf(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}
