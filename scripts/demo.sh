#!/usr/bin/env bash
# Install brokerkit and run its main job on the embedded sandbox: no configuration, no network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
.venv/bin/brokerkit status
echo
.venv/bin/brokerkit positions
