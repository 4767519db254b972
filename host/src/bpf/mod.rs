//! Every `bpf(2)` call ferrocat makes goes through this module.
