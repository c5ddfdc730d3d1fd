"""crashcatch's gdb commands (gdb-scripts/), run by `crashcatch gdb` in batch mode on live
processes of every interpreter: stopped at a SIGSEGV in buggyext and at a breakpoint on a
buggyext function called back from Python (Python → C → Python → C). Truth: the script's own
lines, gdb's own unwind, and (where the interpreter has DWARF) CPython's libpython.py.

For an interpreter in a chroot the chroot's gdb runs inside it, with the crashcatch package
installed there (so the helper is found at its chroot-side path)."""
import glob
import json
import os
import subprocess
import re
import textwrap

import pytest

from crashlib import THREADED_CRASH, run_script, script_line

# Python → C (call_back) → Python (callback, crash) → C (segfault → … → deref_null).
CALLBACK = """
import buggyext

def crash():
    return buggyext.segfault(2)  # @crash

def callback():
    return crash()  # @callback

def main():
    return buggyext.call_back(callback)  # @main

main()  # @module
"""
# The Python frames of that stack, innermost first.
CALLBACK_FRAMES = [("crash", "crash"), ("callback", "callback"), ("main", "main"), ("<module>", "module")]

# Three Python threads waiting, the main one crashing (crashcatch enabled: gdb stops first).
THREADS = THREADED_CRASH.format(call="buggyext.segfault(1)")

PY_BT_RE = re.compile(r'^  File "(?P<file>.*)", line (?P<line>\d+|\?\?\?),? in (?P<func>.*)$')
# Where gdb's embedded Python would show an uncaught exception of ours.
TRACEBACKS = ("Traceback (most recent call last)", "Python Exception", "Error occurred in Python")


def gdb_available(interp):
    return os.path.exists(interp.host_path("/usr/bin/gdb"))


def run_gdb(interp, code, commands, *, program=None, core=None, loader=None, timeout=240):
    """Runs `crashcatch gdb -nx -batch -ex C… --args python target.py` (or `program`; with
    `core`, `python CORE`) inside the interpreter's world; {command: its output} for each of
    `commands` (a command may be given twice: later outputs get a `#n` suffix). `loader`:
    gdb arguments loading other scripts instead of `crashcatch gdb`'s (for libpython.py), or
    "source": a plain gdb that sources the path `crashcatch debugger-scripts` prints."""
    if not gdb_available(interp):
        pytest.skip(f"gdb is not installed for {interp.name}")
    marked = []
    for i, c in enumerate(commands):
        marked += [f"echo @@{i}\\n", c]
    marked.append(f"echo @@{len(commands)}\\n")
    runner = f"""
import os, subprocess, sys
here = os.path.dirname(os.path.abspath(__file__))
target = os.path.join(here, "target.py")
with open(target, "w") as f:
    f.write({textwrap.dedent(code).lstrip()!r})
loader = {loader!r}
if loader is None:
    argv = [sys.executable, "-m", "crashcatch", "gdb", "-nx", "-batch"]
elif loader == "source":
    script = subprocess.check_output([sys.executable, "-m", "crashcatch", "debugger-scripts"],
                                     universal_newlines=True).strip()
    argv = ["gdb", "-nx", "-batch", "-ex", "source " + script]
else:
    argv = ["gdb", "-nx", "-batch"] + loader
argv += ["-ex", "set pagination off", "-ex", "set breakpoint pending on"]
for c in {marked!r}:
    argv += ["-ex", c]
core = {core!r}
argv += [sys.executable, core] if core else ["--args"] + ({program!r} or [sys.executable, target])
env = dict(os.environ, LC_ALL="C.UTF-8")
r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout={timeout}, env=env)
out = r.stdout.decode("utf-8", "backslashreplace")
sys.stdout.buffer.write(out.encode("utf-8"))
"""
    r = run_script(interp, runner, timeout=timeout + 60)
    out = r.stdout
    assert r.returncode == 0, (r.stdout, r.stderr)
    for bad in TRACEBACKS:
        assert bad not in out, out
    return marked_sections(out, commands), out


def marked_sections(out, commands):
    """{command: its output}: what the debugger printed between the markers `@@i` and
    `@@i+1` written before and after command i (a command given twice: later outputs get a
    `#n` suffix)."""
    sections = {}
    for i, c in enumerate(commands):
        m = re.search(rf"^@@{i}\n(.*?)^@@{i + 1}\n", out, re.S | re.M)
        assert m, f"no output section for {c!r}:\n{out}"
        key = c
        n = 2
        while key in sections:
            key, n = f"{c}#{n}", n + 1
        sections[key] = m.group(1)
    return sections


def py_bt(text):
    """[(file, line, function)] of py-bt's output, innermost first."""
    lines = text.splitlines()
    assert lines and lines[0] == "Traceback (most recent call first):", text
    frames = [PY_BT_RE.match(line) for line in lines[1:]]
    assert all(frames), text
    return [(m["file"], m["line"], m["func"]) for m in frames]


def expected(code, frames):
    return [(name, str(script_line(code, marker))) for name, marker in frames]


def check_py_bt(text, code, frames):
    got = py_bt(text)
    assert all(f.endswith("/target.py") for f, _, _ in got), text
    assert [(func, line) for _, line, func in got] == expected(code, frames), text


def check_cc_bt(text):
    """cc-bt at CALLBACK's crash: most recent call last, Python and buggyext's frames in
    true order, the extension's with DWARF names, file:line and its inlined call."""
    cc = text.splitlines()
    assert cc[0].startswith("Thread ") and "holds the GIL" in cc[0], text

    def at(pattern):
        found = [i for i, line in enumerate(cc) if re.search(pattern, line)]
        assert found, (pattern, text)
        return found

    py = [at(rf'^  File ".*/target.py", line {line}, in {func}$')[0] for func, line in expected(CALLBACK, CALLBACK_FRAMES)]
    call_back = at(r"^  call_back at .*buggyext\.c:\d+ \(buggyext")[0]
    segfault = at(r"^  segfault at .*buggyext\.c:\d+ \(buggyext")[0]
    inlined = at(r"^  inlined_helper at .*buggyext\.c:\d+ \(buggyext.*\[inlined\]$")[0]
    deref = at(r"^  deref_null at .*buggyext\.c:\d+ \(buggyext")
    assert len(deref) == 3, text
    crash, callback, main, module = py
    assert module < main < call_back < callback < crash < segfault < inlined < deref[0], text
    assert deref[-1] == len(cc) - 1, text


def test_py_bt_cc_bt_and_bt_at_a_crash_in_a_callback(interp):
    commands = ["run", "py-bt", "cc-bt", "bt", "set crashcatch-hide-plumbing on", "bt",
                "disable frame-filter global crashcatch", "bt"]
    out, whole = run_gdb(interp, CALLBACK, commands)
    assert "SIGSEGV" in out["run"], whole
    check_py_bt(out["py-bt"], CALLBACK, CALLBACK_FRAMES)

    check_cc_bt(out["cc-bt"])

    # bt: the Python frames just inside the eval-loop frames that run them.
    def order(text, patterns):
        lines = text.splitlines()
        return [next((i for i, line in enumerate(lines) if re.search(p, line)), None) for p in patterns]

    names = [r"in deref_null ", r"\[Python\] crash \(", r"\[Python\] callback \(", r" call_back \(",
             r"\[Python\] main \(", r"\[Python\] <module> \("]
    where = order(out["bt"], names)
    assert None not in where and where == sorted(where), out["bt"]
    assert re.search(rf"\[Python\] crash \(\) at .*target\.py:{script_line(CALLBACK, 'crash')}$", out["bt"], re.M)
    # Without the interpreter's plumbing: the same frames in the same order, no eval loop.
    where = order(out["bt#2"], names)
    assert None not in where and where == sorted(where), out["bt#2"]
    # The eval-loop frames (named or not) are the frames bt#2 leaves out after their Python lines.
    eval_lines = [lines[i + 1] for lines in [out["bt"].splitlines()] for i, line in enumerate(lines[:-1])
                  if "[Python]" in line and "[Python]" not in lines[i + 1]]
    assert len(eval_lines) >= 2, out["bt"]
    assert all(e not in out["bt#2"] for e in eval_lines), (eval_lines, out["bt#2"])
    assert len(out["bt#2"].splitlines()) < len(out["bt"].splitlines()), out["bt#2"]
    assert "[Python]" not in out["bt#3"], out["bt#3"]
    assert re.search(r" call_back \(", out["bt#3"]), out["bt#3"]


def python_levels(bt):
    """{Python function: the number of the gdb frame whose line carries it} in a filtered
    bt: the Python frames of one eval-loop call are printed under that frame's number."""
    levels, level = {}, None
    for line in bt.splitlines():
        m = re.match(r"^#(\d+)\s", line)
        if m:
            level = int(m[1])
        m = re.search(r"\[Python\] (\S+) \(", line)
        if m and level is not None:
            levels.setdefault(m[1], level)
    return levels


def test_source_the_path_crashcatch_debugger_scripts_prints(interp):
    out, whole = run_gdb(interp, CALLBACK, ["run", "py-bt"], loader="source")
    check_py_bt(out["py-bt"], CALLBACK, CALLBACK_FRAMES)


def test_py_bt_and_cc_bt_on_a_core_of_the_crash(interp):
    """A core written at the crash (gdb's gcore) opened with the program: the same stacks."""
    core = f"{interp.work_dir}/gcore-{os.getpid()}-{interp.name}"
    try:
        made, whole = run_gdb(interp, CALLBACK, ["run", f"gcore {core}"], loader=[])
        assert os.path.exists(interp.host_path(core)), whole
        out, whole = run_gdb(interp, CALLBACK, ["py-bt", "cc-bt", "py-up", "cc-threads"], core=core)
    finally:
        if os.path.exists(interp.host_path(core)):
            os.unlink(interp.host_path(core))
    check_py_bt(out["py-bt"], CALLBACK, CALLBACK_FRAMES)
    check_cc_bt(out["cc-bt"])
    assert re.fullmatch(rf'#1 File ".*/target\.py", line {script_line(CALLBACK, "callback")} in callback\n', out["py-up"])
    assert re.match(r"^\* Thread 1 \(LWP \d+\) .*\[holds the GIL\] in crash \(", out["cc-threads"]), out["cc-threads"]


def test_py_up_down_list_at_a_breakpoint_in_a_callback(interp):
    commands = ["break buggy_entry", "run", "py-bt", "bt", "py-up", "frame", "py-list", "py-up", "frame",
                "py-up", "py-up", "py-down", "py-down", "py-down", "py-down", "py-list", "bt 1"]
    out, whole = run_gdb(interp, CALLBACK, commands)
    assert "buggy_entry" in out["run"], whole
    check_py_bt(out["py-bt"], CALLBACK, CALLBACK_FRAMES)
    check_py_moves(out)
    # gdb's selected frame went to the eval-loop frame running the Python frame: the frame
    # whose number bt's [Python] lines carry (stripped interpreters do not name it).
    levels = python_levels(out["bt"])
    for f, func in (("frame", "callback"), ("frame#2", "main")):
        assert out[f].startswith(f"#{levels[func]} "), (out[f], out["bt"])
        assert "[Python]" not in out[f] and "buggyext.c" not in out[f], out[f]
    check_py_list(out)


def check_py_moves(out, error=""):
    """py-up three times from `crash` in CALLBACK, a fourth that finds no older frame, then
    py-down back the same way: each names the frame it selected. `error`: what the debugger
    puts before a command's error message."""
    line = {marker: script_line(CALLBACK, marker) for _, marker in CALLBACK_FRAMES}

    def moved(text, index, func, marker):
        assert re.fullmatch(rf'#{index} File ".*/target\.py", line {line[marker]} in {func}\n', text), text

    moved(out["py-up"], 1, "callback", "callback")
    moved(out["py-up#2"], 2, "main", "main")
    moved(out["py-up#3"], 3, "<module>", "module")
    assert out["py-up#4"].startswith(error + "crashcatch: unable to find an older Python frame"), out["py-up#4"]
    moved(out["py-down"], 2, "main", "main")
    moved(out["py-down#2"], 1, "callback", "callback")
    moved(out["py-down#3"], 0, "crash", "crash")
    assert out["py-down#4"].startswith(error + "crashcatch: unable to find a newer Python frame"), out["py-down#4"]


def check_py_list(out):
    """The two py-lists of those moves (at `callback`, then back at `crash`): the lines around
    the selected frame's, from the script, the current one marked."""
    line = {marker: script_line(CALLBACK, marker) for _, marker in CALLBACK_FRAMES}
    source = textwrap.dedent(CALLBACK).lstrip().splitlines()
    for text, marker in ((out["py-list"], "callback"), (out["py-list#2"], "crash")):
        rows = [re.match(r"^([> ])\s*(\d+)    (.*)$", r) for r in text.splitlines()]
        assert rows and all(rows), text
        shown = {int(m[2]): (m[1], m[3]) for m in rows}
        assert shown[line[marker]][0] == ">" and [n for n, (mark, _) in shown.items() if mark == ">"] == [line[marker]]
        assert all(source[n - 1] == text_ for n, (_, text_) in shown.items()), text
        assert line[marker] - 5 in shown or 1 in shown, text


def test_cc_threads_lists_every_thread_and_the_gil_holder(interp):
    out, whole = run_gdb(interp, THREADS, ["run", "cc-threads", "info threads", "py-bt"])
    rows = [r for r in out["cc-threads"].splitlines() if re.match(r"^[* ] Thread \d+ \(LWP \d+\)", r)]
    gdb_threads = re.findall(r"^\*?\s+(\d+)\s+Thread 0x[0-9a-f]+ \(LWP (\d+)\)", out["info threads"], re.M)
    assert len(gdb_threads) == 4, out["info threads"]
    assert sorted(re.findall(r"\(LWP (\d+)\)", "\n".join(rows))) == sorted(lwp for _, lwp in gdb_threads), whole
    holders = [r for r in rows if "holds the GIL" in r]
    assert len(holders) == 1 and holders[0].startswith("*"), out["cc-threads"]
    assert "in inner (" in holders[0] and f":{script_line(THREADS, 'inner')})" in holders[0], holders[0]
    # The workers wait inside threading (Event.wait → Condition.wait): Python frames all.
    workers = [r for r in rows if not r.startswith("*")]
    assert len(workers) == 3 and all(" in " in r and "no Python" not in r for r in workers), out["cc-threads"]
    check_py_bt(out["py-bt"], THREADS, [("inner", "inner"), ("outer", "outer"), ("<module>", "module")])


# Python threads with names the OS cannot hold (non-ASCII, over 15 bytes), crashcatch NOT
# enabled (the names come from the threading module's memory). Each thread's OS id and
# Python name are printed first, as the truth; the crashing frame has an instance's
# __dict__ (a split-table dict) as a local.
NAMED_THREADS = """
import _thread, buggyext, json, threading
NAMES = ["worker-é-1", "a-python-thread-name-longer-than-the-os-allows"]
ready = threading.Barrier(len(NAMES) + 2)
stop = threading.Event()
truth = {}

def work():
    truth[threading.get_native_id()] = threading.current_thread().name
    ready.wait()
    stop.wait()

def unnamed():  # a thread threading does not know: no Python name
    truth[threading.get_native_id()] = None
    ready.wait()
    stop.wait()

workers = [threading.Thread(target=work, name=n) for n in NAMES]
for w in workers:
    w.start()
_thread.start_new_thread(unnamed, ())
ready.wait()
truth[threading.get_native_id()] = threading.current_thread().name
print("TRUTH " + json.dumps(truth), flush=True)

class Box:
    def __init__(self, a_first):
        if a_first:
            self.a, self.b = 1, "é"
        else:  # the other order than the type's shared keys
            self.b, self.a = "é", 1

first = Box(True)

def crash():
    box = Box(False)
    attrs = vars(box)
    kept = vars(first)  # split on every version (3.9/3.10 too: the keys' own order)
    print("ATTRS " + ascii(attrs), flush=True)
    return buggyext.segfault(1)  # @crash

crash()
"""


def test_cc_threads_shows_python_thread_names(interp):
    out, whole = run_gdb(interp, NAMED_THREADS, ["run", "cc-threads", "info threads", "py-locals"])
    truth = json.loads(re.search(r"^TRUTH (.*)$", whole, re.M).group(1))
    named = sorted(n for n in truth.values() if n)
    assert named == sorted(["MainThread", "worker-é-1", "a-python-thread-name-longer-than-the-os-allows"]), truth
    rows = re.findall(r'^[* ] Thread \d+ \(LWP (\d+)\) "(.*?)"', out["cc-threads"], re.M)
    shown = dict(rows)
    # Without a Python name, the OS's (as gdb shows it).
    os_names = dict(re.findall(r'^\*?\s+\d+\s+Thread 0x[0-9a-f]+ \(LWP (\d+)\) "(.*?)"', out["info threads"], re.M))
    assert len(rows) == 4 == len(os_names), (out["cc-threads"], out["info threads"])
    for tid, name in truth.items():
        assert shown.get(tid) == (name or os_names[tid]), (tid, name, out["cc-threads"])
    # py-locals: the instance's __dict__ (a split-table dict from 3.11 on, in its own
    # insertion order) shows as the script's repr() of it.
    assert re.search(r"^ATTRS \{'b': '\\xe9', 'a': 1\}$", whole, re.M), whole
    assert "attrs = {'b': 'é', 'a': 1}" in out["py-locals"].splitlines(), whole
    assert "kept = {'a': 1, 'b': 'é'}" in out["py-locals"].splitlines(), whole


def test_bad_input_gets_a_message(interp):
    # Not a Python process.
    out, whole = run_gdb(interp, "", ["starti", "py-bt", "cc-bt", "cc-threads", "py-list"], program=["/bin/sleep", "1"])
    for c in ("py-bt", "cc-bt", "cc-threads", "py-list"):
        assert out[c].startswith("crashcatch: not a Python process"), (c, whole)
    # Python stopped before it initialised.
    out, whole = run_gdb(interp, CALLBACK, ["break Py_BytesMain", "run", "py-bt", "cc-threads", "bt 3"])
    assert "Py_BytesMain" in out["run"], whole
    for c in ("py-bt", "cc-threads"):
        assert out[c].startswith("crashcatch: ") and "not initialised yet" in out[c], (c, whole)
    # Python stopped after it finalised.
    out, whole = run_gdb(interp, CALLBACK.replace("main()  # @module", "print(1)"), ["break _exit", "run", "py-bt"])
    assert "_exit" in out["run"] and "already finalised" in out["py-bt"], whole
    # No process at all, and a name that is nowhere.
    out, whole = run_gdb(interp, CALLBACK, ["py-bt", "run", "py-print no_such_name_anywhere", "py-locals"])
    assert out["py-bt"].startswith("crashcatch: no process"), whole
    assert out["py-print no_such_name_anywhere"].startswith("crashcatch: "), whole


def test_py_bt_agrees_with_cpythons_libpython(interp):
    """Where the interpreter has DWARF and its own gdb helpers (pyenv builds install
    libpython.py as bin/python3.X-gdb.py), both py-bt agree on the same stop."""
    libpython = os.path.join(os.path.dirname(interp.python), f"python3.{interp.minor}-gdb.py")
    if interp.root or not os.path.exists(libpython):
        pytest.skip(f"{interp.name}: no CPython gdb helpers (python3.{interp.minor}-gdb.py) beside {interp.python}, "
                    "and no DWARF for them to read: nothing to compare with")
    ours, _ = run_gdb(interp, CALLBACK, ["run", "py-bt"])
    theirs, whole = run_gdb(interp, CALLBACK, ["run", "py-bt"], loader=["-x", libpython])
    frames = [PY_BT_RE.match(line) for line in theirs["py-bt"].splitlines()]
    # Each run has its own directory: compare file names.
    theirs_frames = [(os.path.basename(m["file"]), m["line"], m["func"]) for m in frames if m]
    assert theirs_frames, whole
    assert [(os.path.basename(f), line, func) for f, line, func in py_bt(ours["py-bt"])] == theirs_frames


def test_py_locals_agrees_with_cpythons_libpython(interp):
    """libpython.py's py-locals on the same frame (selected with its own py-up: from the
    crash's C frame, the first py-up reaches the innermost Python frame) prints the same
    name = value lines as ours."""
    libpython = os.path.join(os.path.dirname(interp.python), f"python3.{interp.minor}-gdb.py")
    if interp.root or not os.path.exists(libpython):
        pytest.skip(f"{interp.name}: no CPython gdb helpers (python3.{interp.minor}-gdb.py) beside {interp.python}, "
                    "and no DWARF for them to read: nothing to compare with")
    ours, whole_ours = run_gdb(interp, LOCALS, ["run", "py-up", "py-locals"])
    # libpython's py-up also stops at C functions (`<built-in method call_back …>`): go up
    # until it reaches `known`.
    steps = ["py-up", "py-locals"] * 4
    theirs, whole = run_gdb(interp, LOCALS, ["run", *steps], loader=["-x", libpython])
    keys = ["py-up", "py-up#2", "py-up#3", "py-up#4"]
    at = next((i for i, k in enumerate(keys) if " in known (" in theirs[k]), None)
    assert at is not None, whole
    their_locals = theirs["py-locals" if at == 0 else f"py-locals#{at + 1}"]
    pairs = lambda text: sorted(line for line in text.splitlines() if " = " in line)
    assert pairs(their_locals), whole
    assert len(pairs(ours["py-locals"])) == len(pairs(their_locals)), (whole_ours, whole)
    for mine, their in zip(pairs(ours["py-locals"]), pairs(their_locals)):
        # libpython.py cannot print a float without the float type's DWARF (it says
        # `<float at remote 0x…>`); there, ours must show a float literal.
        pattern = re.sub(r"<float\\ at\\ remote\\ 0x[0-9a-f]+>", r"-?[0-9][0-9.e+-]*", re.escape(their))
        assert re.fullmatch(pattern, mine), (mine, their)


# A frame with known values, called back from C (known → call_back → crash).
LOCALS = """
import buggyext
G = "global-é"

def crash():
    return buggyext.segfault(1)  # @crash

def known(n):
    small = 42
    big = 2**100
    text = "héllo wörld ✓"
    items = [1, 2.5, None, True]
    nested = {"a": {"b": [1, 2]}, "c": 3}
    return buggyext.call_back(crash)  # @known

known(7)  # @module
"""
LOCALS_VALUES = [("n", 7), ("small", 42), ("big", 2**100), ("text", "héllo wörld ✓"),
                 ("items", [1, 2.5, None, True]), ("nested", {"a": {"b": [1, 2]}, "c": 3})]


def test_py_locals_and_py_print_show_a_known_frames_values(interp):
    commands = ["run", "py-up", "py-locals", "py-print text", "py-print G", "py-print len",
                "py-print no_such_name", "py-bt-full"]
    out, whole = run_gdb(interp, LOCALS, commands)
    assert out["py-up"].startswith(f'#1 File "') and " in known" in out["py-up"], whole
    expected_lines = [f"{name} = {value!r}" for name, value in LOCALS_VALUES]
    assert out["py-locals"].splitlines() == expected_lines, whole
    assert out["py-print text"] == f"local 'text' = {'héllo wörld ✓'!r}\n", whole
    assert out["py-print G"] == "global 'G' = 'global-é'\n", whole
    assert re.fullmatch(r"builtin 'len' = <builtin_function_or_method object at 0x[0-9a-f]+>\n", out["py-print len"])
    assert out["py-print no_such_name"].startswith("crashcatch: ") and "no_such_name" in out["py-print no_such_name"]
    # py-bt-full: each frame, then its locals indented.
    full = out["py-bt-full"].splitlines()
    at = full.index(next(line for line in full if line.endswith(" in known")))
    assert full[at + 1:at + 1 + len(expected_lines)] == ["    " + line for line in expected_lines], whole


def old_pythons():
    """Pythons older than crashcatch supports, as older distributions' gdb embeds them."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(root, "versions", "3.[678].*", "bin", "python3.[678]")))
    return found or [None]


@pytest.mark.parametrize("python", old_pythons())
def test_gdb_side_is_valid_python_3_6(python):
    """gdb's side runs in gdb's own Python, which may be 3.6: it must at least compile there
    (the commands' behaviour is tested above with gdb 13's and sid's gdb's Pythons)."""
    if python is None:
        pytest.skip("no Python 3.6-3.8 here to compile gdb-scripts/crashcatch_gdb.py with")
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gdb-scripts", "crashcatch_gdb.py")
    r = subprocess.run([python, "-c", "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')", script],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
