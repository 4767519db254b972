//! A disassembler printing instructions in the kernel verifier's syntax.
