#!/usr/bin/env bash
# Rewrites the golden outputs of `crashcatch symbolize` (tests/golden/) from fresh crashes.
# Run after an intended output change, then review `git diff tests/golden`. Needs the test
# environments that tools/test.sh prepares (run it once first).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
CRASHCATCH_BLESS=1 build/tools-venv/bin/python -m pytest tests/test_golden.py -q "$@"
git status --short tests/golden
