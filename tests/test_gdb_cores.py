"""crashcatch's gdb commands on the two files one crash leaves: the kernel's core (written when
crashcatch re-raises the signal) and crashcatch's minidump converted with `crashcatch core`.
Truth: the script's own lines and values, `crashcatch symbolize` of the same dump, gdb's own
thread list. Also a frame chain scribbled over by the script itself: bounded output and a
message, never a hang or a Python traceback.

For an interpreter in a chroot the chroot's gdb runs inside it (tests/test_gdb_scripts.run_gdb)."""
import json
import os
import re
import signal

import pytest

from crashlib import run_script, script_line
from interpreters import REPO
from test_gdb_scripts import expected, gdb_available, py_bt, run_gdb

# Three named threads waiting, the main one (holding the GIL) crashing two C calls deep:
# Python → C (call_back) → Python (callback, crash) → C (segfault → … → deref_null).
CODE = """
import crashcatch, buggyext, threading
crashcatch.enable()
ready = threading.Event()
def idle():
    ready.wait()  # @idle
workers = [threading.Thread(target=idle, name="worker-%d" % i) for i in range(3)]
for w in workers:
    w.start()

def crash():
    return buggyext.segfault(2)  # @crash

def callback():
    return crash()  # @callback

def known(n):
    small = 42
    big = 2**100
    text = "héllo wörld ✓"
    items = [1, 2.5, None, True]
    nested = {"a": {"b": [1, 2]}, "c": 3}
    return buggyext.call_back(callback)  # @known

known(7)  # @module
"""
FRAMES = [("crash", "crash"), ("callback", "callback"), ("known", "known"), ("<module>", "module")]
LOCALS = [("n", 7), ("small", 42), ("big", 2**100), ("text", "héllo wörld ✓"),
          ("items", [1, 2.5, None, True]), ("nested", {"a": {"b": [1, 2]}, "c": 3})]
WORKERS = ["worker-0", "worker-1", "worker-2"]
COMMANDS = ["py-bt", "cc-bt", "cc-threads", "info threads", "py-up", "py-up", "py-locals", "bt"]
# A frame line as both cc-bt and `crashcatch symbolize` print it.
FRAME_LINE_RE = re.compile(r"^  (?!Stack \()(File \"|\S.* at |\S.* \(|\?\?|<)")


def kernel_core_pattern():
    """Why the kernel would not write a `core` file in the crash's directory, or None."""
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    if pattern.startswith("|"):
        return f"core_pattern pipes cores to {pattern[1:].split()[0]}: no kernel core file"
    if pattern != "core":
        return f"core_pattern is {pattern!r}, not a plain 'core' in the crash's directory"
    return None


def crashcatch_command(interp):
    return os.path.join(os.path.dirname(interp.venv_python), "crashcatch")


def inner(interp, host_path):
    return host_path[len(interp.root):] if interp.root else host_path


def symbolize_text(interp, dump):
    r = interp.run([crashcatch_command(interp), "symbolize", dump, "--color", "never"], timeout=120)
    if r.returncode != 0 and "--color" in r.stderr:
        r = interp.run([crashcatch_command(interp), "symbolize", dump], timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def crashing_thread_block(text):
    """The frame lines of the first thread block of a merged stack (cc-bt's or symbolize's)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Thread "))
    block = []
    for line in lines[start + 1:]:
        if line.startswith("Thread ") or not line.strip():
            break
        block.append(line)
    return lines[start], [line for line in block if FRAME_LINE_RE.match(line)]


def check_py_bt(text, script, code, frames):
    """py-bt is the script's own stack: its file, the functions and lines of its text."""
    got = py_bt(text)
    assert all(f == script for f, _, _ in got), text
    assert [(func, line) for _, line, func in got] == expected(code, frames), text


def check_locals(text):
    assert text.splitlines() == [f"{name} = {value!r}" for name, value in LOCALS], text


def check_threads(cc_threads, info_threads):
    """Every thread of gdb's list has a row; the crashing one is selected and holds the GIL."""
    rows = [r for r in cc_threads.splitlines() if re.match(r"^[* ] Thread \d+ \(LWP \d+\)", r)]
    # "Thread 0x… (LWP n)" with libthread_db (the kernel core), "LWP n" without (converted).
    lwps = re.findall(r"^\*?\s+\d+\s+.*?\bLWP (\d+)", info_threads, re.M)
    assert len(lwps) == 4, info_threads
    assert sorted(re.findall(r"\(LWP (\d+)\)", "\n".join(rows))) == sorted(lwps), cc_threads
    holders = [r for r in rows if "holds the GIL" in r]
    assert len(holders) == 1 and holders[0].startswith("*"), cc_threads
    assert f"in crash (" in holders[0] and f":{script_line(CODE, 'crash')})" in holders[0], holders[0]
    workers = [r for r in rows if not r.startswith("*")]
    assert all("no Python" not in r and " in " in r for r in workers), cc_threads
    return rows


def gdb_on(interp, core, *, locals_in_core=True):
    script = os.path.dirname(core) + "/crash_script.py"
    out, whole = run_gdb(interp, CODE, COMMANDS, core=core)
    check_py_bt(out["py-bt"], script, CODE, FRAMES)
    assert re.fullmatch(rf'#2 File ".*/crash_script\.py", line {script_line(CODE, "known")} in known\n', out["py-up#2"]), whole
    if locals_in_core:
        check_locals(out["py-locals"])
    else:
        # A default dump keeps what tracebacks need, not the values of local variables
        # (they may be secrets): a one-line message, not a traceback or garbage.
        assert out["py-locals"].startswith("crashcatch: ") and len(out["py-locals"].splitlines()) == 1, whole
    rows = check_threads(out["cc-threads"], out["info threads"])
    # bt: the frame filter puts each Python frame just inside its eval-loop frame.
    lines = out["bt"].splitlines()
    where = [next((i for i, line in enumerate(lines) if re.search(p, line)), None)
             for p in (r" deref_null ", r"\[Python\] crash \(", r"\[Python\] callback \(", r" call_back \(",
                       r"\[Python\] known \(", r"\[Python\] <module> \(")]
    assert None not in where and where == sorted(where), out["bt"]
    assert re.search(rf"\[Python\] crash \(\) at .*crash_script\.py:{script_line(CODE, 'crash')}$", out["bt"], re.M)
    return out, rows


def crash(interp):
    """Runs CODE with cores allowed: (run directory inside the world, dump inside the world,
    kernel core inside the world or None with the reason)."""
    r = run_script(interp, CODE, core=True)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    run_dir = os.path.dirname(r.script)
    why = kernel_core_pattern()
    core = run_dir + "/core"
    if why is None and not os.path.exists(interp.host_path(core)):
        why = "the kernel wrote no core (RLIMIT_CORE, a non-dumpable process?)"
    return run_dir, inner(interp, r.dumps[0]), (None if why else core), why


def test_kernel_core_and_converted_dump_in_gdb(interp):
    """py-bt, py-up, cc-threads and bt on both files, py-locals on the kernel's (a default
    dump holds no local variables); cc-bt of each core is
    `crashcatch symbolize`'s crashing thread of the dump, frame line for frame line
    (symbolize's source-text lines and the header's count of hidden interpreter frames
    aside: cc-bt prints no source text, and gdb's unwinder, not the symbolizer's, gives
    cc-bt the native frames it hides)."""
    if not gdb_available(interp):
        pytest.skip(f"gdb is not installed for {interp.name}")
    run_dir, dump, kernel, why = crash(interp)
    converted = run_dir + "/converted.core"
    r = interp.run([crashcatch_command(interp), "core", dump, "-o", converted], timeout=120)
    assert r.returncode == 0, r.stderr
    truth_header, truth = crashing_thread_block(symbolize_text(interp, dump))
    assert any("deref_null" in line for line in truth) and any("File " in line for line in truth), truth

    out, rows = gdb_on(interp, converted, locals_in_core=False)
    header, frames = crashing_thread_block(out["cc-bt"])
    # The same frames in the same order: the same stack (the dump's memory, now the core's),
    # the same unwinder input (registers of the dump's context = the core's NT_PRSTATUS),
    # the same symbolizer and merge (symbolizer::merge) on both sides.
    assert frames == truth, (out["cc-bt"], truth)
    assert "holds the GIL" in header, header
    if kernel is not None:
        check_kernel_core(interp, kernel, out, truth)
    if kernel is None:
        pytest.skip(f"the converted core passed; no kernel core to compare: {why}")


def check_kernel_core(interp, kernel, converted, truth):
    """The kernel core's answers are the converted core's. For a fault (SIGSEGV with a
    kernel si_code) crashcatch's handler restores the default action and returns: the
    faulting instruction runs again and the kernel writes the core at the very context the
    dump recorded, so even the crashing thread's native frames are the same lines."""
    out, _ = gdb_on(interp, kernel)
    for c in ("py-bt", "py-up", "py-up#2"):
        assert out[c] == converted[c], (c, out[c], converted[c])
    header, frames = crashing_thread_block(out["cc-bt"])
    assert "holds the GIL" in header, header
    assert frames == truth, (out["cc-bt"], truth)


def test_cc_threads_names_the_python_threads(interp):
    """The Python names of the waiting threads (threading.Thread.name) on the converted core
    (the dump records them; the ELF core has none of its own)."""
    if not gdb_available(interp):
        pytest.skip(f"gdb is not installed for {interp.name}")
    run_dir, dump, _, _ = crash(interp)
    converted = run_dir + "/converted.core"
    r = interp.run([crashcatch_command(interp), "core", dump, "-o", converted], timeout=120)
    assert r.returncode == 0, r.stderr
    out, whole = run_gdb(interp, CODE, ["cc-threads", "info threads"], core=converted)
    rows = check_threads(out["cc-threads"], out["info threads"])
    names = sorted(n for r in rows for n in re.findall(r'"(worker-\d)"', r))
    assert names == WORKERS, out["cc-threads"]


# The script makes its own innermost frame's link to its caller point at itself (a cycle) or
# at unmapped memory, then crashes (no crashcatch: gdb sees the SIGSEGV first).
SCRIBBLE = """
import ctypes, json, sys, buggyext
OFF = json.loads({offsets!r})
WHAT = {what!r}

def word(addr):
    return ctypes.c_uint64.from_address(addr)

def current_frame():
    if "tstate.frame" in OFF:  # ≤3.10: the PyFrameObject, whose f_back links the chain
        return id(sys._getframe(1)), OFF["frame.back"]
    ctypes.pythonapi.PyThreadState_Get.restype = ctypes.c_void_p
    tstate = ctypes.pythonapi.PyThreadState_Get()
    if "tstate.current_frame" in OFF:  # 3.13+
        frame = word(tstate + OFF["tstate.current_frame"]).value
    else:  # 3.11, 3.12: through the C frame
        frame = word(word(tstate + OFF["tstate.cframe"]).value + OFF["cframe.current_frame"]).value
    # That is this function's frame: its caller's is the one before.
    return word(frame + OFF["iframe.previous"]).value, OFF["iframe.previous"]

def scribble():
    frame, link = current_frame()
    word(frame + link).value = frame if WHAT == "cycle" else 0xdead0000
    buggyext.segfault(0)  # @scribble

def outer():
    scribble()  # @outer

outer()
"""
# The most Python frames a reader shows (the helper's cap, as `crashcatch symbolize`'s).
MAX_SHOWN = 10_000
LINK_FIELDS = ("tstate.frame", "frame.back", "tstate.current_frame", "tstate.cframe",
               "cframe.current_frame", "iframe.previous")


def link_offsets(interp):
    with open(os.path.join(REPO, "pylayout", "data", "layouts.json")) as f:
        layout = json.load(f)[f"3.{interp.minor}"]
    if layout.get("free_threaded"):
        pytest.skip("free-threaded layout")
    if interp.minor <= 10:
        # sys._getframe(1) from current_frame() is scribble's frame object.
        return {k: layout[k] for k in ("tstate.frame", "frame.back")}
    return {k: layout[k] for k in LINK_FIELDS if k in layout and not k.startswith(("tstate.frame", "frame."))}


@pytest.mark.parametrize("what", ["cycle", "garbage"])
def test_scribbled_frame_chain_ends_with_a_message(interp, what):
    code = SCRIBBLE.format(offsets=json.dumps(link_offsets(interp)), what=what)
    out, whole = run_gdb(interp, code, ["run", "py-bt", "cc-bt", "cc-threads"], timeout=180)
    assert "SIGSEGV" in out["run"], whole
    lines = out["py-bt"].splitlines()
    assert lines[0] == "Traceback (most recent call first):", whole
    assert re.fullmatch(rf'  File ".*/target\.py", line {script_line(code, "scribble")} in scribble', lines[1]), whole
    # Bounded, and it says why it stopped: the last line is a message, not a frame.
    assert len(lines) <= MAX_SHOWN + 2, whole
    assert re.fullmatch(r"  <.+>", lines[-1]) or lines[-1].startswith("crashcatch: "), whole
    if what == "cycle":
        # The loop is recognised: scribble's frame once, then the message naming it.
        assert len(lines) == 3 and "loops back" in lines[-1], whole
    # The caller is lost (the link no longer leads to it) in the garbage case.
    if what == "garbage":
        assert not any(" in outer" in line for line in lines), whole
    assert len(out["cc-bt"].splitlines()) < MAX_SHOWN and "deref_null" in out["cc-bt"], whole
    assert "holds the GIL" in out["cc-threads"], whole


def test_cc_bt_full_is_symbolize_native_all(interp):
    """With the interpreter's own frames shown too (`cc-bt full`, `symbolize --native-all`),
    the converted core's merged stack is still the dump's, frame line for frame line."""
    if not gdb_available(interp):
        pytest.skip(f"gdb is not installed for {interp.name}")
    run_dir, dump, _, _ = crash(interp)
    converted = run_dir + "/converted.core"
    r = interp.run([crashcatch_command(interp), "core", dump, "-o", converted], timeout=120)
    assert r.returncode == 0, r.stderr
    sym = interp.run([crashcatch_command(interp), "symbolize", "--native-all", dump], timeout=120)
    assert sym.returncode == 0, sym.stderr
    _, truth = crashing_thread_block(sym.stdout)
    out, whole = run_gdb(interp, CODE, ["cc-bt full"], core=converted)
    _, frames = crashing_thread_block(out["cc-bt full"])
    assert len(truth) > 20 and frames == truth, (out["cc-bt full"], truth)
