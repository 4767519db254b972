//! eBPF programs: loading with the verifier log, test runs and run statistics.
