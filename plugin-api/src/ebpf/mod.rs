//! eBPF for ferrocat: the instruction set ([`insn`]), a disassembler printing the kernel
//! verifier's syntax ([`disasm`]) and the builder that generates code from Rust.

pub mod builder;
pub mod disasm;
pub mod insn;
