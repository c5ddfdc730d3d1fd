# Shared setup for tools/demo.sh and tools/test.sh: system packages, a tooling venv, the
# wheel (built once). Sourced, not run.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$REPO/build"
TOOLS_VENV="$BUILD/tools-venv"
mkdir -p "$BUILD"

step() { printf '\n==> %s\n' "$*"; }

# Debian packages, installed only when missing.
apt_install() {
    local need=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
    [ ${#need[@]} -eq 0 ] && return 0
    step "installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

# The Python that runs our tooling (maturin, pytest): the machine's python3.
tools_venv() {
    if [ ! -x "$TOOLS_VENV/bin/python" ]; then
        step "creating the tooling venv ($TOOLS_VENV)"
        python3 -m venv "$TOOLS_VENV"
    fi
    # pybind11: headers for the test extension examples/pybindext. ziglang, cargo-zigbuild:
    # the manylinux2014 wheel's linker; build, auditwheel: the packaging tests.
    "$TOOLS_VENV/bin/pip" install -q --disable-pip-version-check "maturin>=1.5,<2" pytest pytest-xdist pybind11 \
        ziglang cargo-zigbuild build auditwheel
}

# Builds the crashcatch wheel into build/wheels and prints its path: `pip wheel .`, the
# same PEP 517 build as `pip install .` (tools/pep517/crashcatch_build.py: the extension,
# plus the dump helper, the symbolizer and the debugger commands inside the package), for
# manylinux2014 (glibc >= 2.17, linked by zig).
build_wheel() {
    step "building the crashcatch wheel (release, manylinux2014)" >&2
    rm -rf "$BUILD/wheels"
    (cd "$REPO" && CRASHCATCH_MANYLINUX=2014 "$TOOLS_VENV/bin/pip" wheel -q --disable-pip-version-check \
        --no-build-isolation --no-deps -w "$BUILD/wheels" . >&2)
    ls "$BUILD"/wheels/crashcatch-*.whl
}
