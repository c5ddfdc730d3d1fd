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
    # pybind11: headers for the test extension examples/pybindext.
    "$TOOLS_VENV/bin/pip" install -q --disable-pip-version-check "maturin>=1.5,<2" pytest pytest-xdist pybind11
}

# Builds the crashcatch wheel into build/wheels and prints its path. The wheel carries the
# dump helper (crashcatch-dump) and the symbolizer inside the package, next to the extension,
# and the debugger commands (gdb-scripts/) in crashcatch/_debugger/.
build_wheel() {
    step "building the crashcatch wheel (release)" >&2
    (cd "$REPO" && cargo build --release -p crashcatch-dumper -p crashcatch-symbolizer >&2)
    mkdir -p "$REPO/collector/python/crashcatch/_bin"
    install -s -m 755 "$REPO/target/release/crashcatch-dump" "$REPO/target/release/crashcatch-symbolize" \
        "$REPO/collector/python/crashcatch/_bin/"
    # The debugger commands: gdb-scripts/ is their one copy in git.
    rm -rf "$REPO/collector/python/crashcatch/_debugger"
    mkdir -p "$REPO/collector/python/crashcatch/_debugger"
    cp "$REPO"/gdb-scripts/*.py "$REPO"/gdb-scripts/README.md "$REPO/collector/python/crashcatch/_debugger/"
    rm -rf "$BUILD/wheels"
    (cd "$REPO/collector" && "$TOOLS_VENV/bin/maturin" build --release -o "$BUILD/wheels" >&2)
    ls "$BUILD"/wheels/crashcatch-*.whl
}
