#!/usr/bin/env bash
# Prepares a fresh machine for ferrocat's tests and demo: the tools the tests call
# (tshark, iproute2) and a bpffs mount. Safe to run again; it changes nothing that is
# already in place.
set -euo pipefail

need_apt=()
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v tshark >/dev/null 2>&1 || need_apt+=(tshark)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need ${need_apt[*]} but not root; install them and run again" >&2
        exit 1
    fi
    echo "setup: installing ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
    if [ "$(id -u)" -eq 0 ]; then
        mkdir -p /sys/fs/bpf
        mount -t bpf bpf /sys/fs/bpf
    else
        echo "setup: bpffs is not mounted at /sys/fs/bpf and we are not root" >&2
    fi
fi
