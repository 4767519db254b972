//! Devices written with the `device!` and `ebpf!` DSL, usable by plugins and by the
//! host's tests and benchmarks: the seed's motor controller ([`motor`]).

pub mod motor;
