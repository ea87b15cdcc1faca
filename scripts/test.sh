#!/usr/bin/env bash
# Install everything and run the whole test suite (unit, integration on SQLite and PostgreSQL,
# browser and notebook tests). PostgreSQL tests use BROKERKIT_TEST_DATABASE_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export BROKERKIT_TEST_DATABASE_URL=${BROKERKIT_TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
