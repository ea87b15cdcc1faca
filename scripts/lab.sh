#!/usr/bin/env bash
# Open notebooks/ in JupyterLab on 127.0.0.1 (installing first, as scripts/setup.sh does; in an
# activated conda environment from environment.yml, that environment's JupyterLab is used).
# Arguments go to JupyterLab, e.g. `bash scripts/lab.sh --port 8899 --no-browser`.
# `BROKERKIT_NOTEBOOK=1 bash scripts/lab.sh` opens the classic interface (Notebook 7) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${CONDA_PREFIX:-}" ] && [ ! -x .venv/bin/python ] && command -v jupyter-lab >/dev/null; then
  PY=python
else
  bash scripts/setup.sh
  PY=.venv/bin/python
fi
APP=jupyterlab
if [ "${BROKERKIT_NOTEBOOK:-}" = 1 ]; then APP=notebook; fi
ARGS=(--ip=127.0.0.1 "--ServerApp.root_dir=$PWD/notebooks")
if [ "$(id -u)" = 0 ]; then ARGS+=(--allow-root); fi  # containers run as root
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
exec "$PY" -m "$APP" "${ARGS[@]}" "$@"
