#!/usr/bin/env bash
# Runs ferrocat's whole test suite: unit tests, kernel tests (real verifier, XDP on veth
# pairs in private namespaces), simulator interoperability and end-to-end tests.
# Kernel tests need root; they fail rather than skip when the kernel path is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Space left for the build: a full disk shows up as a linker crash, so say it first.
df -h . | sed 's/^/test: /' >&2
# The XDP example tests run the example programs as separate processes (a permanent
# program must outlive the process that attached it); `cargo test` builds examples
# only under hashed names, so build them at their plain paths first.
cargo build --workspace --examples
cargo test --workspace --all-targets "$@"
