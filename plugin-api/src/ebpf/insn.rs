//! eBPF instructions as types, with their encoding and decoding.
