"""Native stacks that are easy to get wrong: stack overflows (the dump keeps the stack's two
ends) and code without unwind information (bytes mapped executable and called through
ctypes). Neither the crash-time report nor `crashcatch symbolize` may invent a frame; an
unwind that cannot go on says so, and the Python frames are always kept. One crash per
child process, every interpreter."""
import json
import os
import re
import signal

import pytest

from crashlib import c_stack, current_thread_frames, prepare_script, run_script, script_line
from test_gdb_truth import gdb_available
from test_minidump import check
from test_symbolize import symbolize_in

GAP_LINE = "native frames from the middle of the overflowed stack are not in the dump"


def core_registers(interp, core):
    """(pc, sp, rbp) of the crashing thread in a kernel core, as gdb reads them."""
    r = interp.run(["gdb", "-nx", "-batch", "-ex", "p/x $pc", "-ex", "p/x $sp", "-ex", "p/x $rbp",
                    interp.python, core], timeout=300)
    values = re.findall(r"^\$\d+ = (?:\(void \*\) |\(void \(\*\)\(\) \) )?(0x[0-9a-f]+)", r.stdout, re.M)
    assert len(values) == 3, r.stdout + r.stderr
    return tuple(int(v, 16) for v in values)


def plain_core_pattern():
    with open("/proc/sys/kernel/core_pattern") as f:
        return f.read().strip() == "core"


def merged_stack(interp, dump):
    """The crashed thread of `crashcatch symbolize --json`, and the text output."""
    out = symbolize_in(interp, dump, "--json")
    assert out.returncode == 0, out.stderr
    text = symbolize_in(interp, dump)
    assert text.returncode == 0, text.stderr
    return json.loads(out.stdout)["threads"][0], text.stdout


def assert_merged_across_the_gap(crashed, python, innermost, outer_native):
    """A capped stack, merged: the unwind reached the thread's start across the gap, the
    Python frames (innermost first) lie outside it, under `outer_native` (the extension
    function below the deep part) when given."""
    assert crashed["stack"] == "merged", crashed["merge_problem"]
    unwind = crashed["native_unwind"]
    assert unwind["stopped"] is None, unwind
    gap = unwind["gap"]
    assert gap and gap["frames_left_out"] > 1000, unwind
    native = crashed["native_frames"]
    assert native[0]["trust"] == "context" and native[0]["function"] == innermost, native[:3]
    # Nothing invented: every frame is in a module, found by CFI (the JIT-free stack).
    assert all(f["module"] and f["trust"] in ("context", "cfi") for f in native), \
        [f for f in native if not f["module"] or f["trust"] not in ("context", "cfi")][:3]
    frames = crashed["frames"]
    kinds = [f["kind"] for f in frames]
    assert [f["function"] for f in frames if f["kind"] == "python"] == python, frames
    first_python = kinds.index("python")
    assert gap["frames_index"] <= first_python, (gap, first_python)
    if outer_native:
        below = [f["function"] for f in frames[gap["frames_index"]:first_python]]
        assert outer_native in below, below


@pytest.mark.parametrize("where", ["main", "thread"])
def test_overflow_dump_has_the_real_registers_and_a_merged_stack(interp, where):
    """C recursion until the stack overflows, in the main thread or a Python thread. The
    dump's context holds the thread's real registers (gdb reads the same ones from the kernel
    core), its stack memory starts at the faulting frame, and symbolize merges the Python
    frames with the native ones: the unwind goes on below the kept top from the frame the
    crash-time unwinder recorded."""
    code = {
        "main": """
            import crashcatch, buggyext
            crashcatch.enable()

            def dive():
                buggyext.stack_overflow()  # @call

            dive()  # @module
            """,
        "thread": """
            import threading, crashcatch, buggyext
            crashcatch.enable()

            def dive():
                buggyext.stack_overflow()  # @call

            t = threading.Thread(target=dive)
            t.start()
            t.join()
            """,
    }[where]
    core_wanted = plain_core_pattern() and gdb_available(interp)
    r = run_script(interp, code, core=core_wanted)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr[-3000:]
    core = os.path.dirname(r.script) + "/core"
    try:
        truth = core_registers(interp, core) if core_wanted else None
    finally:
        if os.path.exists(interp.host_path(core)):
            os.unlink(interp.host_path(core))
    info = check(r.dumps[0])
    regs = info["exception"]["context"]
    if truth:
        assert (regs["rip"], regs["rsp"], regs["rbp"]) == truth, (regs, [hex(v) for v in truth])
    stack = [t for t in info["threads"] if t["tid"] == info["exception"]["tid"]][0]
    # The stack memory starts at the faulting frame: at rsp, or at the first readable page
    # above it when rsp went into the guard page.
    assert stack["stack_start"] <= regs["rsp"] + 4096 and regs["rsp"] < stack["stack_start"] + stack["stack_size"]
    adjusted = info["metadata"].get("stack_pointer_adjusted")
    if adjusted:
        assert adjusted["from"] == regs["rsp"] and adjusted["to"] == stack["stack_start"], (adjusted, regs)
    capped = info["metadata"]["stack_capped"]
    assert capped["resume"] and capped["resume"]["rsp"] >= capped["bottom_start"], capped
    crashed, text = merged_stack(interp, r.dumps[0])
    python = [f["function"] for f in crashed["python_frames"]]
    if where == "main":
        assert python == ["dive", "<module>"], python
    else:
        assert python[0] == "dive" and len(python) > 1, python  # then threading's frames
    assert crashed["python_frames"][0]["line"] == script_line(code, "call")
    assert_merged_across_the_gap(crashed, python, "recurse", "stack_overflow")
    assert GAP_LINE in text and "not merged" not in text, text[:3000]
    assert f'line {script_line(code, "call")}, in dive' in text


def run_deep_repr(interp, via):
    code = """
    import sys, crashcatch
    if not crashcatch.is_enabled():
        crashcatch.enable()
    sys.setrecursionlimit(10 ** 8)
    nested = []
    for _ in range(10 ** 6):
        nested = [nested]
    repr(nested)  # @repr
    """
    if via == "script":
        return code, run_script(interp, code)
    p = prepare_script(interp, code)
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    r = interp.run([crashcatch, "run", p.script], cwd=p.cwd, env=p.env, timeout=300)
    r.dumps, r.script = p.dumps(interp), p.script
    return code, r


@pytest.mark.parametrize("via", ["script", "crashcatch run"])
def test_deep_repr_overflow_merges(interp, via):
    """repr() of deeply nested lists recurses in C until the stack overflows (3.12+ stop it
    with a RecursionError: their C recursion limit). The report's C stack is complete, and
    the dump's merged stack has the script's frame under the repr recursion, no made-up
    frame (before: `?? (0x1)` with trust cfi, from a moved stack pointer)."""
    if interp.minor >= 12:
        pytest.skip("3.12+ stop deep repr() recursion with a RecursionError (C recursion limit)")
    code, r = run_deep_repr(interp, via)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr[-3000:]
    # Under `crashcatch run`, its own frames (runpy) follow the script's.
    assert current_thread_frames(r.stderr)[0] == (r.script, str(script_line(code, "repr")), "<module>"), \
        r.stderr[:3000]
    frames = c_stack(r.stderr)
    assert frames[-1].get("raw") == "  <end of stack>", r.stderr[-3000:]
    assert all("path" in f or re.match(r"  <\d+ frames omitted>", f["raw"]) for f in frames[:-1]), r.stderr
    crashed, text = merged_stack(interp, r.dumps[0])
    python = crashed["python_frames"]
    assert (python[0]["file"], python[0]["function"]) == (r.script, "<module>"), python
    assert len(python) == (1 if via == "script" else len(current_thread_frames(r.stderr))), python
    names = [f["function"] for f in python]
    assert_merged_across_the_gap(crashed, names, crashed["native_frames"][0]["function"], None)
    assert GAP_LINE in text and f'line {script_line(code, "repr")}, in <module>' in text, text[:3000]


JIT = """
import ctypes, mmap, os, crashcatch
crashcatch.enable()
code = bytes.fromhex({hex!r})
buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
buf.write(code)
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
with open(os.environ["FILE_addr"], "w") as f:
    f.write(str(addr))
jitted = ctypes.CFUNCTYPE(ctypes.c_int)(addr)

def call():
    return jitted()  # @call

call()  # @module
"""

# Machine code without unwind information; each faults reading address 0 at `fault`.
JIT_CODE = {
    # A frame pointer (rbp) pointing at two stack addresses and a small number on top of
    # the stack: both old fallbacks read them as return addresses.
    "garbage": ("488d4424c0" "50" "50" "4889e5" "6a0b" "31c0" "8b00" "c3", 14),
    # A proper frame-pointer prologue: the frame pointer leads to the caller (libffi).
    "frame pointer": ("55" "4889e5" "31c0" "8b00" "5d" "c3", 6),
}


@pytest.mark.parametrize("kind", JIT_CODE)
def test_code_without_unwind_information(interp, kind):
    """A crash in bytes mapped executable and called through ctypes: no module, no CFI.
    With a frame pointer into the stack the unwind goes on through it (marked), to the
    thread's start; without one it stops and says why — never an invented caller (before:
    `<unknown module> [0xb]` and a stack address as a return address). The Python frames
    are kept either way."""
    hex_code, fault = JIT_CODE[kind]
    code = JIT.replace("{hex!r}", repr(hex_code))
    r = run_script(interp, code, files=("addr",))
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr[-3000:]
    pc = int(r.files["addr"]) + fault
    py_frames = [(r.script, str(script_line(code, "call")), "call"),
                 (r.script, str(script_line(code, "module")), "<module>")]
    assert current_thread_frames(r.stderr) == py_frames, r.stderr
    frames = c_stack(r.stderr)
    assert frames[0] == {"raw": f"  <unknown module> [0x{pc:x}]"}, r.stderr
    crashed, text = merged_stack(interp, r.dumps[0])
    native = crashed["native_frames"]
    assert (native[0]["address"], native[0]["module"], native[0]["trust"]) == (pc, None, "context"), native[:2]
    if kind == "garbage":
        assert len(frames) == 2 and frames[1]["raw"].startswith(
            "  <unwinding stopped: the caller's address found for the last frame is not executable code"), r.stderr
        assert len(native) == 1, native
        assert "not executable code" in crashed["native_unwind"]["stopped"], crashed["native_unwind"]
        assert crashed["stack"] == "separate" and "<native unwinding stopped: " in text, text
        assert [f["function"] for f in crashed["python_frames"]] == ["call", "<module>"]
    else:
        assert "libffi" in frames[1]["path"] and frames[1]["trust"] == " [frame pointer]", r.stderr
        assert frames[-1] == {"raw": "  <end of stack>"}, r.stderr
        assert native[1]["module"].startswith("libffi") and native[1]["trust"] == "frame pointer", native[:3]
        assert crashed["native_unwind"]["stopped"] is None, crashed["native_unwind"]
        assert crashed["stack"] == "merged", crashed["merge_problem"]
        assert [f["function"] for f in crashed["frames"] if f["kind"] == "python"] == ["call", "<module>"]
