//! ferrocat: an EtherCAT master for Linux whose real-time control logic runs in the
//! kernel as eBPF/XDP programs generated at run time from Rust code.
//!
//! - [`cli`]: the `ferrocat` command-line tool.
//! - [`bpf`]: every `bpf(2)` call ferrocat makes: programs, maps, XDP links, bpffs.
//! - [`ethercat`]: the EtherCAT master: wire format, transport, SII, mailbox/CoE, bring-up.
//! - [`link`]: the linker that joins plugin fragments into one verified program.
//! - [`xdp`]: generic XDP programs in Rust (counters, packet filters) with typed maps.

pub mod bpf;
pub mod cli;
pub mod ethercat;
pub mod link;
pub mod xdp;
