#!/usr/bin/env bash
# Create .venv (if missing) and install brokerkit with every extra plus the test tools.
# Idempotent: a second run only checks that everything is installed (and the kernel registered).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
.venv/bin/python -m pip install -q -e ".[all,dev]"
# Register this environment as the Jupyter kernel "Python (brokerkit)" of the user, once (VS Code
# and a JupyterLab of another environment list it; scripts/lab.sh's own kernel needs nothing).
# BROKERKIT_NO_KERNEL=1 skips it.
if [ "${BROKERKIT_NO_KERNEL:-}" != 1 ]; then
  KERNELS=$(.venv/bin/python -c "from jupyter_core.paths import jupyter_data_dir as d; print(d())")
  if ! grep -qF "\"$PWD/.venv/bin/python\"" "$KERNELS/kernels/brokerkit/kernel.json" 2>/dev/null; then
    .venv/bin/python -m ipykernel install --user --name brokerkit \
      --display-name "Python (brokerkit)" >/dev/null
  fi
fi
