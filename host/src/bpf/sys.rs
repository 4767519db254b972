//! The raw bpf(2) system call and a fake of it for unit tests.
