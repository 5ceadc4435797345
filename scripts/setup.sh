#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) to build and run hubblectl:
# system packages, a virtualenv in .venv with hubblectl installed, the BPF objects
# and the native ingest library compiled, bpffs mounted. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs packages and mounts bpffs)" >&2
    exit 1
fi

PKGS=(clang llvm libbpf-dev libbpf1 bpftool iproute2 iputils-ping curl iperf3 nftables
      python3 python3-venv python3-pip make jq)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[test]'

make -s -C bpf
make -s -C native  # the agent's native ingest path (observer/native)

if ! mountpoint -q /sys/fs/bpf; then
    mount -t bpf bpf /sys/fs/bpf
fi
echo "setup.sh: ready (.venv/bin/hubblectl)"
