#!/usr/bin/env bash
# CPython's own gdb helpers (Tools/gdb/libpython.py), the reference crashcatch's gdb commands
# are compared with where the interpreter has DWARF. pyenv installs do not keep them, so they
# are taken from Debian's pythonX.Y-dbg packages: downloaded (not installed: installing would
# give the stripped interpreters under test debug info) and only the script extracted.
# Usage: tools/fetch-libpython-gdb.sh OUT_DIR [SID_ROOT]   → OUT_DIR/3.X.py   (cached)
set -euo pipefail
out=${1:?usage: fetch-libpython-gdb.sh OUT_DIR [SID_ROOT]}
sid=${2:-}
mkdir -p "$out"
extract() { # VERSION DEB
    local tmp
    tmp=$(mktemp -d)
    dpkg-deb -x "$2" "$tmp"
    local script="$tmp/usr/share/gdb/auto-load/usr/bin/python$1-gdb.py"
    if [ -f "$script" ]; then cp "$script" "$out/$1.py"; else echo "no gdb script in $2" >&2; fi
    rm -rf "$tmp"
}
fetch() { # VERSION [CHROOT]
    local v=$1 root=${2:-}
    [ -s "$out/$v.py" ] && return 0
    local dl
    dl=$(mktemp -d "${root:-/tmp}/libpython-gdb.XXXXXX")
    local inside=${dl#"$root"}
    # apt-get download runs unsandboxed as root here: the directory must be ours, not _apt's.
    if (cd "$dl" && if [ -n "$root" ]; then chroot "$root" sh -c "cd '$inside' && apt-get download -qq python$v-dbg"; \
            else apt-get download -qq "python$v-dbg"; fi) >/dev/null 2>&1; then
        extract "$v" "$(ls "$dl"/*.deb | head -n1)"
    else
        echo "python$v-dbg is not available from the package sources: no libpython.py for $v" >&2
    fi
    rm -rf "$dl"
}
fetch 3.11
if [ -n "$sid" ] && [ -d "$sid" ]; then
    for v in 3.13 3.14 3.15; do fetch "$v" "$sid"; done
fi
ls "$out"
