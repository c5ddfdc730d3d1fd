#!/usr/bin/env bash
# The demo, from a fresh machine: builds crashcatch, installs it into a venv, builds the
# buggy example extension and runs examples/demo.py, which crashes inside it.
source "$(dirname "$0")/common.sh"

apt_install gcc
tools_venv
WHEEL=$(build_wheel)

DEMO_VENV="$BUILD/demo-venv"
step "installing crashcatch into $DEMO_VENV"
[ -x "$DEMO_VENV/bin/python" ] || python3 -m venv "$DEMO_VENV"
"$DEMO_VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall "$WHEEL"

step "building examples/buggyext (gcc -g, no frame pointers)"
"$DEMO_VENV/bin/python" "$REPO/examples/build_ext.py" "$BUILD/demo-ext"

export CRASHCATCH_DUMP_DIR="$BUILD/demo-dumps"
step "running examples/demo.py: it crashes inside buggyext, crashcatch reports"
set +e
BUGGYEXT_DIR="$BUILD/demo-ext" "$DEMO_VENV/bin/python" "$REPO/examples/demo.py"
status=$?
set -e
echo
echo "demo.py exited with status $status (128 + $((status - 128)) = killed by signal $((status - 128)))"
[ "$status" -eq 139 ]  # SIGSEGV, as the report says

step "crashcatch symbolize --last: the stacks, read back from the minidump alone"
"$DEMO_VENV/bin/crashcatch" symbolize --last
