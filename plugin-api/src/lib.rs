//! The crate every ferrocat plugin depends on, and the only one.
//!
//! It holds the eBPF instruction set and the builder that turns Rust code into eBPF
//! ([`ebpf`]), the fragment format that plugins hand to the host's linker
//! ([`fragment`]), and the `ebpf!` DSL that makes device logic read like ordinary Rust.

extern crate self as ferrocat_plugin_api;

pub mod devices;
pub mod ebpf;
pub mod fragment;

pub use ferrocat_plugin_api_macros::{device, ebpf};
