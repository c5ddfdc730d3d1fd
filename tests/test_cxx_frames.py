"""C++ frames read back from a dump as addr2line and c++filt give them, on every interpreter.

examples/pybindext is a pybind11 module built at -O2 -g. Every pybind11 call goes through a
dispatch lambda (`cpp_function::initialize<…>::{lambda(function_call&)#3}::_FUN`) whose
DWARF function sits in the lambda's closure type, itself inside `initialize<…>`, with the
bound function and what it calls inlined into it; a local class's member function sits in
its enclosing function the same way. For each of the module's frames from the faulting one
to pybind11's dispatcher, `crashcatch symbolize --json` must give the chain of inlined
calls, file:line and names of `addr2line -i -f` (names demangled by c++filt) — run in the
interpreter's own world — and name the function that holds them as c++filt names its symbol
when DWARF gives it only a short name (`_FUN`, `add`).
"""
import json
import os
import re
import signal
import subprocess

import pytest

from crashlib import run_script
from interpreters import REPO
from pybindext_build import NOTE
from test_symbolize import symbolize_in

SOURCE = os.path.join(REPO, "examples", "pybindext", "pybindext.cpp")
DISPATCHER = "pybind11::cpp_function::dispatcher("
DISPATCH_IMPL = " pybind11::cpp_function::call_impl<"
DISPATCH_LAMBDA = "::{lambda(pybind11::detail::function_call&)#3}::_FUN(pybind11::detail::function_call&)"

# call, and the innermost frame: its function and the source line marked `// @<marker>`.
CRASHES = {
    "inlined": ("pybindext.fill_grid(0, 3)", "shapes::Grid::poke(int, int)", "poke"),
    "local_class": ("pybindext.checksum('abc', 0)",
                    "shapes::checksum_of(std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > "
                    "const&, int*)::Accumulator::add(std::__cxx11::basic_string<char, std::char_traits<char>, "
                    "std::allocator<char> > const&)", "add"),
}


def source_line(marker):
    with open(SOURCE) as f:
        return next(i for i, line in enumerate(f, 1) if f"// @{marker}" in line)


def physical_frames(native, module_prefix):
    """The module's frames, grouped by return address: each group a chain of inlined calls
    (innermost first) ending with the function that holds them."""
    groups, current = [], []
    for frame in native:
        if not (frame["module"] or "").startswith(module_prefix):
            continue
        current.append(frame)
        if not frame["inlined"]:
            groups.append(current)
            current = []
    return groups


def addr2line_chain(interp, so, offset):
    """[(raw name, file, line)] of `addr2line -i -f` at `offset`, innermost first."""
    r = interp.run(["addr2line", "-i", "-f", "-e", so, hex(offset)])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    chain = []
    for name, place in zip(lines[::2], lines[1::2]):
        place = re.sub(r" \(discriminator \d+\)$", "", place)
        file, _, line = place.rpartition(":")
        chain.append((name, None if file == "??" else file, int(line) if line.isdigit() and line != "0" else None))
    return chain


def cxxfilt(interp, names):
    r = interp.run(["c++filt"], input="\n".join(names) + "\n")
    assert r.returncode == 0, r.stderr
    return dict(zip(names, r.stdout.splitlines()))


def symbol_at(interp, so, offset):
    """The symbol table's function symbol covering `offset`."""
    r = interp.run(["nm", "--defined-only", "-S", so])
    assert r.returncode == 0, r.stderr
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            start, size = int(parts[0], 16), int(parts[1], 16)
            if start <= offset < start + size:
                return parts[3]
    return None


@pytest.mark.parametrize("kind", sorted(CRASHES))
def test_pybind11_frames_match_addr2line_and_cxxfilt(interp, kind):
    problems = [n for n in interp.notes if n.startswith(NOTE)]
    if problems:
        pytest.fail(problems[0])
    call, innermost, marker = CRASHES[kind]
    r = run_script(interp, f"""
    import crashcatch, pybindext
    crashcatch.enable()
    {call}
    """)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    out = symbolize_in(interp, r.dumps[0], "--json")
    assert out.returncode == 0, out.stderr
    native = json.loads(out.stdout)["threads"][0]["native_frames"]
    groups = physical_frames(native, "pybindext")
    ends = [i for i, g in enumerate(groups) if (g[-1]["function"] or "").startswith(DISPATCHER)]
    assert ends and groups[0][0]["trust"] == "context", native
    groups = groups[:ends[0] + 1]

    expected, got = [], []
    for group in groups:
        so = os.path.join(interp.ext_dir, group[0]["module"])
        # A return address is looked up one byte back, inside the call (as the symbolizer does).
        offset = group[0]["module_offset"] - (0 if group[0]["trust"] == "context" else 1)
        chain = addr2line_chain(interp, so, offset)
        raw_outer = chain[-1][0]
        symbol = symbol_at(interp, so, offset)
        names = cxxfilt(interp, [name for name, _, _ in chain] + ([symbol] if symbol else []))
        chain = [(names[name], file, line) for name, file, line in chain]
        if not raw_outer.startswith("_Z") and symbol and symbol.startswith("_Z"):
            # DWARF gives the function only its short name: c++filt's name of its symbol.
            chain[-1] = (names[symbol],) + chain[-1][1:]
        expected.append(chain)
        got.append([(f["function"], f["file"], f["line"]) for f in group])
    assert got == expected, "\n".join(f"{g}\n   != {e}" for gs, es in zip(got, expected) for g, e in zip(gs, es) if g != e)

    # What the comparison must have covered: the fault in the module's source, the dispatch
    # lambda with the calls inlined into it, file:line everywhere.
    # (The compiler may have cloned the function: `… [clone .isra.0]`.)
    function, file, line = got[0][0]
    assert re.sub(r"( \[clone [^]]+\])+$", "", function) == innermost, got[0]
    assert (file, line) == (os.path.dirname(interp.ext_dir) + "/examples/pybindext/pybindext.cpp",
                            source_line(marker)), got[0]
    # pybind11 dispatches through a lambda nested in cpp_function::initialize (GCC 12) or,
    # with newer compilers, through cpp_function::call_impl; either way calls are inlined.
    dispatch = [chain for chain in got if chain[-1][0].endswith(DISPATCH_LAMBDA) or DISPATCH_IMPL in chain[-1][0]]
    assert len(dispatch) == 1 and len(dispatch[0]) >= 5, [chain[-1][0] for chain in got]
    assert all(file and line for chain in got for _, file, line in chain), got
