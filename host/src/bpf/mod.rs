//! Every `bpf(2)` call ferrocat makes goes through this module: programs, maps, XDP
//! links, bpffs pins and run statistics. [`sys`] is the only place that makes them,
//! together with the other calls on BPF objects (mmap/munmap of map memory, the bpffs
//! mount and statfs, the rtnetlink query of an interface's XDP program); a fake stands
//! in for it in unit tests that need no root.
//!
//! - [`prog`]: [`Program::load`](prog::Program::load) (verifier statistics on success,
//!   an annotated [`LoadError`](prog::LoadError) on rejection), test runs, run
//!   statistics.
//! - [`map`]: [`Map`](map::Map) of every type ferrocat uses, [`MapMemory`](map::MapMemory)
//!   for the host's view of mmapped values, [`RingBufReader`](map::RingBufReader).
//! - [`xdp`]: [`XdpLink`](xdp::XdpLink): attach, replace, pin, detach.
//! - [`bpffs`]: [`Bpffs`](bpffs::Bpffs): pin and open pins with type checks.
//!
//! ```no_run
//! use ferrocat::bpf::map::{Map, MapSpec};
//! use ferrocat::bpf::prog::{Program, xdp_action};
//! use ferrocat::bpf::xdp::{XdpLink, XdpMode};
//! use ferrocat_plugin_api::ebpf::insn::{AluOp, AtomicOp, Insn, Reg, Size, Src, encode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A one-entry mmapable array: the program addresses it directly.
//! let vars = Map::create(&MapSpec::mmapable_array("vars", 8, 1))?;
//! let mem = vars.mmap()?;
//! let insns = [
//!     Insn::LdMapValue { dst: Reg::R1, fd: vars.raw_fd(), off: 0 },
//!     Insn::Alu { wide: true, op: AluOp::Mov, dst: Reg::R2, src: Src::Imm(1) },
//!     Insn::Atomic { size: Size::DW, op: AtomicOp::Add, dst: Reg::R1, src: Reg::R2, off: 0 },
//!     Insn::Alu { wide: true, op: AluOp::Mov, dst: Reg::R0, src: Src::Imm(2) },
//!     Insn::Exit,
//! ];
//! let prog = Program::load_xdp("count", &encode(&insns))?; // LoadError shows the log
//! println!("{}", prog.verifier_stats().map(|s| s.to_string()).unwrap_or_default());
//! let run = prog.test_run(&[0u8; 60])?;
//! assert_eq!(run.retval, xdp_action::PASS);
//! assert_eq!(mem.read_u64(0)?, 1);
//! let link = XdpLink::attach(&prog, "veth0", XdpMode::Native)?; // detaches on drop
//! # drop(link);
//! # Ok(())
//! # }
//! ```

pub mod bpffs;
mod fake;
pub mod map;
mod netlink;
pub mod prog;
pub mod sys;
pub mod xdp;
