//! Every `bpf(2)` call ferrocat makes goes through this module: programs, maps, XDP
//! links, bpffs pins and run statistics. [`sys`] is the only place that calls the kernel;
//! a fake stands in for it in unit tests that need no root.

pub mod bpffs;
pub mod map;
mod netlink;
pub mod prog;
pub mod sys;
pub mod xdp;
