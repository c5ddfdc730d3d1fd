#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds once, then
# runs the Rust checks and the crash matrix on every interpreter present.
source "$(dirname "$0")/common.sh"

apt_install gcc g++ gdb lldb-19 python3-lldb-19 libc6-dbg dwz debootstrap python3.11-venv python3.11-dev libpython3.11-testsuite debuginfod strace zstd lz4 xz-utils
tools_venv

step "Debian sid chroot with CPython 3.13/3.14/3.15 (cached)"
SID_ROOT=${CRASHCATCH_SID_ROOT:-$HOME/.cache/crashcatch-test/sid}
export CRASHCATCH_SID_ROOT=$SID_ROOT
if ! "$REPO/tools/setup-sid-chroot.sh" "$SID_ROOT"; then
    echo "WARNING: could not build the sid chroot; its interpreters will be reported as skipped"
fi

step "Rust: format, lints, unit tests"
cd "$REPO"
cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo test --workspace --release

WHEEL=$(build_wheel)

step "building the test tools"
# dumpcheck, and the two programs at target/release for the tests that run them from
# outside any interpreter's venv (the wheel's copies are built for manylinux2014 apart).
cargo build --release -p dumpcheck -p crashcatch-dumper -p crashcatch-symbolizer

step "preparing every interpreter (venv + wheel + buggyext)"
"$TOOLS_VENV/bin/python" tests/prepare_envs.py "$WHEEL"

step "crash matrix"
"$TOOLS_VENV/bin/python" -m pytest tests -n 2 -ra "$@"
