#!/usr/bin/env bash
# The whole test suite: setup, static checks, unit, integration and privileged tiers.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export HUBBLECTL_REQUIRE_BPF=${HUBBLECTL_REQUIRE_BPF:-1}
export PATH="$PWD/.venv/bin:$PATH"
nox --no-venv -s lint unit integration privileged
