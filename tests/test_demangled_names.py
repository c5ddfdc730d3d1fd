"""Crash-time C stacks name C++ and Rust functions as people read them, on every
interpreter: c++filt's names for C++ (a class template's method, a lambda, std::function's
internals, a name too long to show whole), rustc-demangle's `{:#}` names for Rust (closures,
generics, std's own v0-mangled functions; the crate built with legacy and with v0 mangling).

Truth is outside crashcatch: each frame's symbol is looked up with `nm` at the address the
report gives (module offset minus offset into the function) and demangled by c++filt or by
the rustc-demangle crate (tests/dumpcheck). The libraries are built once and loaded with
ctypes, copied into each interpreter's root."""
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from crashlib import c_stack, run_script
from interpreters import REPO

NATIVE = os.path.join(REPO, "tests", "native")
DUMPCHECK = os.path.join(REPO, "target", "release", "dumpcheck")
# collector/src/signal_safe/cstack.rs: MAX_SHOWN_NAME; longer names end in "...".
MAX_SHOWN = 1024

RUSTC = shutil.which("rustc") or os.path.expanduser("~/.cargo/bin/rustc")

# library: (file name, function called with 16, demangler, names expected among the frames,
# the faulting one first)
LIBRARIES = {
    "cxx": ("libcrashy.so", "crashy_crash", "c++filt", [
        "crashy::Foo<int>::bar(int const*) const::{lambda(int)#1}::operator()(int) const",
        "std::function<int (int)>::operator()(int) const",
        "crashy::Foo<int>::bar(int const*) const",
        "crashy_crash",
    ]),
    "rust_legacy": ("libcrashy_rs_legacy.so", "crashy_rs_crash", "rust", [
        "core::ptr::read_volatile",
        "crashy_rs::crashy_rs_crash::{{closure}}::{{closure}}",
        "crashy_rs::Holder<T>::poke",
        "std::sync::once::Once::call_once",
        "crashy_rs_crash",
    ]),
    "rust_v0": ("libcrashy_rs_v0.so", "crashy_rs_crash", "rust", [
        "core::ptr::read_volatile::<u64>",
        "crashy_rs::crashy_rs_crash::{closure#0}::{closure#0}",
        "<crashy_rs::Holder<u32>>::poke",
        "<std::sync::once::Once>::call_once::<crashy_rs::crashy_rs_crash::{closure#0}>",
        "crashy_rs_crash",
    ]),
}


def sh(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300).stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{library: host path}, built once (statically linked C++ runtime, so a chroot's
    interpreter can load it whatever libstdc++ the chroot has)."""
    d = str(tmp_path_factory.mktemp("native"))
    paths = {lib: os.path.join(d, LIBRARIES[lib][0]) for lib in LIBRARIES}
    sh("g++", "-std=c++17", "-O0", "-shared", "-fPIC", "-static-libstdc++", "-static-libgcc",
       os.path.join(NATIVE, "crashy.cpp"), "-o", paths["cxx"])
    source = os.path.join(NATIVE, "crashy_rs.rs")
    sh(RUSTC, "--edition", "2021", "--crate-type", "cdylib", "-C", "opt-level=0", source, "-o", paths["rust_legacy"])
    sh(RUSTC, "--edition", "2021", "--crate-type", "cdylib", "-C", "opt-level=0", "-C", "symbol-mangling-version=v0",
       source, "-o", paths["rust_v0"])
    return paths


def functions_by_address(path):
    """{address: [symbol names]} of the functions `nm` finds in a library."""
    table = {}
    for line in sh("nm", "--defined-only", path).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwWiI":
            table.setdefault(int(parts[0], 16), []).append(parts[2])
    return table


def demangled(tool, names):
    """{name: demangled name} by c++filt or rustc-demangle."""
    if tool == "c++filt":
        out = subprocess.run(["c++filt"], input="\n".join(names) + "\n", check=True, capture_output=True,
                             text=True).stdout
    else:
        out = sh(DUMPCHECK, "--rust-demangle", *names)
    lines = out.splitlines()
    assert len(lines) == len(names)
    return dict(zip(names, lines))


def shown(name):
    """How the report shows a name: whole, or its first MAX_SHOWN bytes and `...`."""
    raw = name.encode()
    return name if len(raw) <= MAX_SHOWN else raw[:MAX_SHOWN].decode(errors="ignore") + "..."


@pytest.mark.parametrize("lib", LIBRARIES)
def test_c_stack_names_demangled(interp, built, lib):
    file_name, function, tool, expected = LIBRARIES[lib]
    host_dir = tempfile.mkdtemp(dir=interp.host_path(interp.work_dir))
    shutil.copy(built[lib], host_dir)
    inner = interp.work_dir + "/" + os.path.basename(host_dir) + "/" + file_name
    code = f"""
    import ctypes, crashcatch
    crashcatch.enable()
    ctypes.CDLL({inner!r}).{function}(16)
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    frames = [f for f in c_stack(r.stderr) or [] if f.get("module") == file_name]
    assert len(frames) >= len(expected), r.stderr

    # Every frame in the library: the demangled name of the function nm finds there.
    table = functions_by_address(built[lib])
    candidates = []
    for f in frames:
        assert f.get("sym"), f
        address = int(f["modoff"], 16) - int(f["off"], 16)
        assert address in table, (f, hex(address))
        candidates.append(table[address])
    truth = demangled(tool, sorted({n for names in candidates for n in names}))
    for f, names in zip(frames, candidates):
        assert f["sym"] in {shown(truth[n]) for n in names}, (f["sym"], names)

    got = [f["sym"] for f in frames]
    assert got[0] == expected[0], r.stderr  # the faulting function
    for name in expected:
        assert name in got, (name, r.stderr)
    if lib != "cxx":
        # The crate's own functions in its mangling, std's precompiled ones (its `Once`
        # runs the closure) in v0: both kinds of Rust names in one stack.
        mangled = [names[0] for names in candidates]
        own = "_R" if lib == "rust_v0" else "_ZN"
        assert sum(m.startswith(own) for m in mangled) >= 4, mangled
        assert any(m.startswith("_R") and "futex" in m for m in mangled), mangled
    if lib == "cxx":
        # A template argument of nested std::map and std::string: over MAX_SHOWN bytes.
        long = [n for n in got if n.startswith("int crashy::relay<std::map<")]
        assert len(long) == 1 and long[0].endswith("...") and len(long[0]) == MAX_SHOWN + 3, got
        assert any(n.startswith("std::_Function_handler<int (int), crashy::Foo<int>::bar") for n in got), got
