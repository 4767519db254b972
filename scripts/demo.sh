#!/usr/bin/env bash
# The ferrocat demo on a virtual bus: ferrocat-sim serves the reference bus (EK1100,
# EL2004, EL2828, EL2889, EL3164, EL4104, EL7041) behind a veth pair in its own network
# namespace, and the ferrocat CLI scans it, brings it to OP and talks to its terminals.
# Needs root (namespaces, raw sockets). Everything is removed again on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== building ferrocat and ferrocat-sim (release)"
cargo build --release --quiet -p ferrocat -p ferrocat-sim
bin=${CARGO_TARGET_DIR:-target}/release
name=fcdemo$$

cleanup() { "$bin/ferrocat-sim" down --name "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

step() { printf '\n== %s\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "start a simulated bus of seven terminals on interface $name" \
    "$bin/ferrocat-sim" up --name "$name" configs/sim/reference.toml
step "scan it" "$bin/ferrocat" -i "$name" slaves
step "bring every terminal to OP" "$bin/ferrocat" -i "$name" states op
step "identity of the stepper terminal over CoE (0x1018:02 product code)" \
    "$bin/ferrocat" -i "$name" upload -p 6 0x1018:02 --type u32
step "its process-data layout" "$bin/ferrocat" -i "$name" pdos -p 6
step "error counters and links of the first terminals" \
    "$bin/ferrocat" -i "$name" diag -p 0
step "the same scan, for scripts" "$bin/ferrocat" -i "$name" slaves --json
echo
echo "== done; removing the bus"
