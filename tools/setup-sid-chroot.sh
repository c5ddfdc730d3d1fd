#!/usr/bin/env bash
# Builds (once) a Debian sid chroot holding the distro's stripped CPython 3.13/3.14/3.15,
# their test suites (for test_faulthandler), C and C++ compilers for the test extensions,
# the debuggers (gdb, lldb-22) the debugger tests run inside the chroot, and strace for the
# tests that check which files the symbolizer opens.
# Usage: tools/setup-sid-chroot.sh DIR        (idempotent; ~30-60 s the first time)
set -euo pipefail
dir=${1:?usage: setup-sid-chroot.sh DIR}
stamp="$dir/.crashcatch-ready"
versions="3.13 3.14 3.15"
# lldb-22: the first lldb with scripted frame providers (python3-lldb-NN conflict: one only).
pkgs="gcc,g++,libc6-dev,gdb,strace,lldb-22,python3-lldb-22"
for v in $versions; do
    pkgs="$pkgs,python$v,python$v-dev,python$v-venv,libpython$v-testsuite"
done
if [ -e "$stamp" ]; then
    # Built before: add whatever packages the list gained since.
    [ "$(cat "$stamp")" = "$pkgs" ] && exit 0
    chroot "$dir" apt-get -qq -o Acquire::Check-Valid-Until=false update
    chroot "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkgs//,/ } >/dev/null
    echo "$pkgs" >"$stamp"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi
# The Debian archive this machine's apt is configured with (deb822 .sources first, then
# sources.list): the chroot uses the same package source, never one named here.
mirror=$(for f in /etc/apt/sources.list.d/*.sources; do
             [ -e "$f" ] && grep -q debian-archive-keyring "$f" && awk '/^URIs:/ && $2 !~ /security/ {print $2}' "$f"
         done | head -n1)
if [ -z "$mirror" ] && [ -e /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $2 !~ /^\[/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
    echo "no Debian archive in this machine's apt configuration (/etc/apt/sources.list*)" >&2
    exit 1
fi
rm -rf "$dir"
mkdir -p "$dir"
# sid's Release file may be past Valid-Until on the mirror; debootstrap does not check it.
debootstrap --variant=minbase --include="$pkgs" sid "$dir" "$mirror" \
    >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }
echo 'Acquire::Check-Valid-Until "false";' >"$dir/etc/apt/apt.conf.d/99no-valid-until"
echo "$pkgs" >"$stamp"
