//! The linker: plugin fragments plus prologue and epilogue become one eBPF program.
