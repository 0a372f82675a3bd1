#!/usr/bin/env bash
# Runs the system tests: the ones that need real servers and tools (redis-server, strongSwan,
# tshark, network namespaces). Installs what is missing first; each test starts and stops the
# servers it uses.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
exec npx mocha --config .mocharc.system.json "$@"
