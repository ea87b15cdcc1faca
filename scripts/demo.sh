#!/usr/bin/env bash
# Install brokerkit and run its main job on the embedded sandbox (no configuration, no network):
# print the consolidated status, then serve the dashboard on http://127.0.0.1:5006 until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
.venv/bin/brokerkit status
exec .venv/bin/brokerkit serve --port "${PORT:-5006}" "$@"
