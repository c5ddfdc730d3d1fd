"""crashcatch's lldb plugin (gdb-scripts/crashcatch_lldb.py), run by `crashcatch lldb` in batch
mode on every interpreter: live stops at a SIGSEGV in buggyext (`-k` commands) and at a
breakpoint in a callback chain, the kernel's core and crashcatch's minidump of one crash
opened directly (`crashcatch lldb -c FILE`). Truth: the script's own lines and values,
lldb's own thread list and unwind, `crashcatch symbolize` of the same dump.

The host's lldb (Debian's lldb-19) runs for host interpreters, the chroot's (lldb-22) inside
the chroot for sid ones, with the crashcatch package installed there. lldb stops a batch at
the first command that fails: commands expected to fail run through `soft()`."""
import glob
import json
import os
import re
import subprocess
import textwrap

import pytest

from crashlib import THREADED_CRASH, run_script, script_line
from test_gdb_cores import CODE as CORE_CODE
from test_gdb_cores import FRAMES as CORE_FRAMES
from test_gdb_cores import check_locals, crash
from test_gdb_cores import check_py_bt as check_core_py_bt
from test_gdb_scripts import (CALLBACK, CALLBACK_FRAMES, LOCALS, LOCALS_VALUES, NAMED_THREADS, TRACEBACKS,
                              check_cc_bt, check_py_bt, check_py_list, check_py_moves, old_pythons)

THREADS = THREADED_CRASH.format(call="buggyext.segfault(1)")
PLUGIN_FILES = [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gdb-scripts", name)
                for name in ("crashcatch_bridge.py", "crashcatch_lldb.py")]


def lldb_versions(interp):
    """The lldb versions installed with their Python module in the interpreter's world."""
    found = glob.glob(interp.host_path("/usr/lib/llvm-*/lib/python3*/*-packages/lldb/__init__.py"))
    return sorted({int(re.search(r"/llvm-(\d+)/", f)[1]) for f in found})


def soft(command):
    """`command` run so that its failure does not end lldb's batch: its output (the error
    included) is the section of `command`."""
    return f"script lldb.debugger.HandleCommand({command!r})"


def run_lldb(interp, code, commands, *, at_crash=(), program=None, core=None, loader=None, attach=False,
             timeout=240):
    """Runs `crashcatch lldb -b -o C… -k K… -- python target.py` (or `program`; with `core`,
    `-c CORE` and `program` if given) inside the interpreter's world; {command: its output}
    for each of `commands` and `at_crash` (the `-k` commands, run when the process crashes).
    A command given twice gets a `#n` suffix on its later outputs; a soft() one is keyed by
    the command it wraps. `loader="import"`: a plain lldb that imports the path
    `crashcatch debugger-scripts --lldb` prints. `attach`: the runner starts the target,
    waits for its first output line and attaches (`-p PID`); the target ends when its
    stdin closes."""
    if not lldb_versions(interp):
        pytest.skip(f"no lldb with its Python module for {interp.name}")
    runner = f"""
import glob, os, re, subprocess, sys
here = os.path.dirname(os.path.abspath(__file__))
target = os.path.join(here, "target.py")
with open(target, "w") as f:
    f.write({textwrap.dedent(code).lstrip()!r})
if {loader!r} == "import":
    script = subprocess.check_output([sys.executable, "-m", "crashcatch", "debugger-scripts", "--lldb"],
                                     universal_newlines=True).strip()
    lldb = max(glob.glob("/usr/lib/llvm-*/bin/lldb"), key=lambda p: int(re.search(r"llvm-(\\d+)", p).group(1)))
    argv = [lldb, "-b", "-O", "command script import " + script]
else:
    argv = [sys.executable, "-m", "crashcatch", "lldb", "-b"]
for c in {list(commands)!r}:
    argv += ["-o", c]
for c in {list(at_crash)!r}:
    argv += ["-k", c]
core = {core!r}
program = {program!r}
attached = None
if {attach!r}:
    attached = subprocess.Popen([sys.executable, target], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    attached.stdout.readline()
    argv += ["-p", str(attached.pid)]
elif core:
    argv += ["-c", core] + (program or [])
else:
    argv += ["--"] + (program or [sys.executable, target])
env = dict(os.environ, LC_ALL="C.UTF-8")
try:
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout={timeout}, env=env)
finally:
    if attached is not None:
        attached.stdin.close()
        attached.wait(timeout=60)
sys.stdout.buffer.write(r.stdout)
"""
    r = run_script(interp, runner, timeout=timeout + 60)
    out = r.stdout
    assert r.returncode == 0, (r.stdout, r.stderr)
    for bad in TRACEBACKS:
        assert bad not in out, out
    return sections(out, [*commands, *at_crash]), out


def sections(out, commands):
    """Each command's output: the lines after lldb's echo of it (`(lldb) CMD`) up to the next echo."""
    lines = out.splitlines(keepends=True)
    echoes = [i for i, line in enumerate(lines) if line.startswith("(lldb) ")]
    found, at = {}, 0
    for c in commands:
        i = next((k for k, e in enumerate(echoes) if k >= at and lines[e].rstrip("\n") == "(lldb) " + c), None)
        assert i is not None, f"no output for {c!r}:\n{out}"
        end = echoes[i + 1] if i + 1 < len(echoes) else len(lines)
        key = c
        m = re.fullmatch(r"script lldb\.debugger\.HandleCommand\('(.*)'\)", c)
        if m:
            key = m[1]
        n = 2
        while key in found:
            key, n = f"{m[1] if m else c}#{n}", n + 1
        found[key] = "".join(lines[echoes[i] + 1:end])
        at = i + 1
    return found


def bt_levels(bt):
    """{function: lldb frame number} of the first frame of each function in lldb's `bt`."""
    levels = {}
    for m in re.finditer(r"frame #(\d+): 0x[0-9a-f]+ [^`]*`(?:\S+ \[inlined\] )?([A-Za-z_][\w.]*)", bt):
        levels.setdefault(m[2], int(m[1]))
    return levels


def frame_number(frame_info):
    m = re.match(r"frame #(\d+): ", frame_info)
    assert m, frame_info
    return int(m[1])


def test_py_bt_cc_bt_and_cc_threads_at_a_crash_in_a_callback(interp):
    out, whole = run_lldb(interp, CALLBACK, ["run"], at_crash=["py-bt", "cc-bt", "cc-threads"])
    assert "SIGSEGV" in whole, whole
    check_py_bt(out["py-bt"], CALLBACK, CALLBACK_FRAMES)
    check_cc_bt(out["cc-bt"])
    assert re.match(r"^\* Thread 1 \(LWP \d+\) .*\[holds the GIL\] in crash \(", out["cc-threads"]), out["cc-threads"]


def test_py_up_down_list_at_a_breakpoint_in_a_callback(interp):
    commands = ["breakpoint set -n buggy_entry", "run", "py-bt", "bt", "py-up", "frame info", "py-list", "py-up",
                "frame info", "py-up", soft("py-up"), "py-down", "py-down", "py-down", "frame info", soft("py-down"),
                "py-list"]
    out, whole = run_lldb(interp, CALLBACK, commands)
    assert "buggy_entry" in out["run"], whole
    check_py_bt(out["py-bt"], CALLBACK, CALLBACK_FRAMES)
    check_py_moves(out, error="error: ")
    # lldb's selected frame went to the eval-loop frame running the Python frame: between
    # the C frames the Python call sits between (lldb's own unwind is the truth). Where
    # lldb's unwind stops before call_back, no level is known and the selection stays.
    levels = bt_levels(out["bt"])
    callback_at, main_at = frame_number(out["frame info"]), frame_number(out["frame info#2"])
    if "call_back" in levels:
        assert levels["segfault"] < callback_at < levels["call_back"] < main_at, (out["frame info"], out["bt"])
    else:
        # main's eval loop is past lldb's frames: py-up to it leaves the selection as it was.
        assert callback_at == 0 or levels["segfault"] < callback_at, (out["frame info"], out["bt"])
        assert main_at == callback_at, (out["frame info"], out["frame info#2"], out["bt"])
    for text in (out["frame info"], out["frame info#2"]):
        assert frame_number(text) == 0 or "buggyext" not in text, text
    # py-down back to the innermost Python frame: its eval loop's frame, called by the same
    # or an inner eval-loop frame than callback's (3.11+ runs both in one).
    crash_at = frame_number(out["frame info#3"])
    assert crash_at <= callback_at and (crash_at == 0 or levels["segfault"] < crash_at), out["frame info#3"]
    check_py_list(out)


def thread_ids(thread_list):
    """{lldb thread number: OS thread id} of `thread list`."""
    return {int(n): int(tid) for n, tid in re.findall(r"^\*?\s*thread #(\d+): tid = (\d+)", thread_list, re.M)}


def test_cc_threads_lists_every_thread_and_the_gil_holder(interp):
    out, whole = run_lldb(interp, THREADS, ["run"], at_crash=["cc-threads", "thread list", "py-bt"])
    rows = re.findall(r"^([* ]) Thread (\d+) \(LWP (\d+)\)(.*)$", out["cc-threads"], re.M)
    lldb_threads = thread_ids(out["thread list"])
    assert len(lldb_threads) == 4, out["thread list"]
    assert {int(n): int(tid) for _, n, tid, _ in rows} == lldb_threads, whole
    holders = [r for r in rows if "holds the GIL" in r[3]]
    assert len(holders) == 1 and holders[0][0] == "*", out["cc-threads"]
    assert "in inner (" in holders[0][3] and f":{script_line(THREADS, 'inner')})" in holders[0][3], holders[0]
    workers = [r for r in rows if r[0] != "*"]
    assert len(workers) == 3 and all(" in " in r[3] and "no Python" not in r[3] for r in workers), out["cc-threads"]
    check_py_bt(out["py-bt"], THREADS, [("inner", "inner"), ("outer", "outer"), ("<module>", "module")])


def test_cc_threads_shows_python_thread_names(interp):
    out, whole = run_lldb(interp, NAMED_THREADS, ["run"], at_crash=["cc-threads", "thread list", "py-locals"])
    truth = json.loads(re.search(r"^TRUTH (.*)$", whole, re.M).group(1))
    shown = dict(re.findall(r'^[* ] Thread \d+ \(LWP (\d+)\) "(.*?)"', out["cc-threads"], re.M))
    os_names = dict(re.findall(r"^\*?\s*thread #\d+: tid = (\d+),.*?name = '(.*?)'", out["thread list"], re.M))
    assert len(shown) == 4 == len(thread_ids(out["thread list"])), (out["cc-threads"], out["thread list"])
    for tid, name in truth.items():
        assert shown.get(tid) == (name or os_names.get(tid)), (tid, name, out["cc-threads"])
    assert "attrs = {'b': 'é', 'a': 1}" in out["py-locals"].splitlines(), whole
    assert "kept = {'a': 1, 'b': 'é'}" in out["py-locals"].splitlines(), whole


def test_py_locals_and_py_print_show_a_known_frames_values(interp):
    at_crash = ["py-up", "py-locals", "py-print text", "py-print G", "py-print len", "py-bt-full",
                soft("py-print no_such_name")]
    out, whole = run_lldb(interp, LOCALS, ["run"], at_crash=at_crash)
    assert out["py-up"].startswith('#1 File "') and " in known" in out["py-up"], whole
    expected_lines = [f"{name} = {value!r}" for name, value in LOCALS_VALUES]
    assert out["py-locals"].splitlines() == expected_lines, whole
    assert out["py-print text"] == f"local 'text' = {'héllo wörld ✓'!r}\n", whole
    assert out["py-print G"] == "global 'G' = 'global-é'\n", whole
    assert re.fullmatch(r"builtin 'len' = <builtin_function_or_method object at 0x[0-9a-f]+>\n", out["py-print len"])
    assert re.fullmatch(r"error: crashcatch: .*no_such_name.*\n", out["py-print no_such_name"]), whole
    full = out["py-bt-full"].splitlines()
    at = full.index(next(line for line in full if line.endswith(" in known")))
    assert full[at + 1:at + 1 + len(expected_lines)] == ["    " + line for line in expected_lines], whole


CORE_COMMANDS = ["py-bt", "cc-bt", "cc-threads", "thread list", "py-up", "py-up", "py-locals"]


def check_core(interp, run_dir, out, whole):
    """What lldb shows of CORE_CODE's crash, the same from the kernel's core and the dump."""
    check_core_py_bt(out["py-bt"], run_dir + "/crash_script.py", CORE_CODE, CORE_FRAMES)
    assert re.fullmatch(rf'#2 File ".*/crash_script\.py", line {script_line(CORE_CODE, "known")} in known\n',
                        out["py-up#2"]), whole
    rows = re.findall(r"^([* ]) Thread \d+ \(LWP (\d+)\)(.*)$", out["cc-threads"], re.M)
    assert len(rows) == 4, whole
    assert sorted(int(tid) for _, tid, _ in rows) == sorted(thread_ids(out["thread list"]).values()), whole
    holders = [r for r in rows if "holds the GIL" in r[2]]
    assert len(holders) == 1 and holders[0][0] == "*" and "in crash (" in holders[0][2], whole
    # cc-bt: the crashing thread's merged stack, Python and buggyext's frames in true order.
    lines = out["cc-bt"].splitlines()

    def at(pattern):
        found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert found, (pattern, out["cc-bt"])
        return found[0]

    order = [at(rf'^  File ".*/crash_script\.py", line {script_line(CORE_CODE, marker)}, in {func}$')
             for func, marker in reversed(CORE_FRAMES)]
    call_back, segfault = at(r"^  call_back at .*buggyext\.c:\d+ \(buggyext"), at(r"^  segfault at .*buggyext\.c:\d+")
    deref = at(r"^  deref_null at .*buggyext\.c:\d+ \(buggyext")
    module, known, callback, crash_ = order
    assert module < known < call_back < callback < crash_ < segfault < deref, out["cc-bt"]


def test_kernel_core(interp):
    """The kernel's core of a crash, opened with its program (`crashcatch lldb -c core python`)."""
    if not lldb_versions(interp):
        pytest.skip(f"no lldb with its Python module for {interp.name}")
    run_dir, _, core, why = crash(interp)
    if core is None:
        pytest.skip(why)
    out, whole = run_lldb(interp, "", CORE_COMMANDS, core=core, program=[interp.venv_python])
    check_core(interp, run_dir, out, whole)
    check_locals(out["py-locals"])


def test_minidump_opened_directly(interp):
    """crashcatch's minidump of a crash, alone (`crashcatch lldb -c app.dmp`): lldb reads the
    dump's threads, modules and memory itself."""
    if not lldb_versions(interp):
        pytest.skip(f"no lldb with its Python module for {interp.name}")
    run_dir, dump, _, _ = crash(interp)
    out, whole = run_lldb(interp, "", [soft(c) for c in CORE_COMMANDS], core=dump)
    check_core(interp, run_dir, out, whole)
    # A default dump holds no local variables: a message, not garbage.
    assert re.fullmatch(r"error: crashcatch: .*crashcatch\.enable\(dump_locals=True\).*\n", out["py-locals"]), whole


# A process waiting in a C call (reading its stdin) under two Python frames.
WAITING = """
import sys

def wait_for_input():
    print("ready", flush=True)
    return sys.stdin.read()  # @read

def main():
    return wait_for_input()  # @main

main()  # @module
"""


def test_attach_to_a_running_process(interp):
    """`crashcatch lldb -p PID`: the commands on a process lldb attached to, and detaching
    leaves it running (it then ends normally when its input closes)."""
    out, whole = run_lldb(interp, WAITING, ["py-bt", "cc-bt", "py-locals", "detach"], attach=True)
    check_py_bt(out["py-bt"], WAITING, [("wait_for_input", "read"), ("main", "main"), ("<module>", "module")])
    lines = out["cc-bt"].splitlines()
    python = [i for i, line in enumerate(lines) if re.match(r'^  File ".*/target\.py", line \d+, in ', line)]
    assert len(python) == 3 and re.search(rf"line {script_line(WAITING, 'read')}, in wait_for_input$",
                                          lines[python[-1]]), out["cc-bt"]
    # Below the innermost Python frame: the C read the process waits in (libc's).
    assert any("libc.so" in line for line in lines[python[-1] + 1:]), out["cc-bt"]
    assert out["py-locals"] == "", whole


def test_command_script_import_of_the_path_debugger_scripts_prints(interp):
    out, whole = run_lldb(interp, CALLBACK, ["run"], at_crash=["py-bt"], loader="import")
    check_py_bt(out["py-bt"], CALLBACK, CALLBACK_FRAMES)


def test_crashcatch_lldb_picks_the_newest_lldb_or_says_why(interp):
    versions = lldb_versions(interp)
    if not versions:
        pytest.skip(f"no lldb with its Python module for {interp.name}")
    python = interp.venv_python
    r = interp.run([python, "-m", "crashcatch", "lldb", "--version"], timeout=120)
    assert r.returncode == 0 and re.search(rf"\blldb version {versions[-1]}\.", r.stdout), (r.stdout, r.stderr)
    # $CRASHCATCH_LLDB: a program that is no lldb, and an lldb without its Python module.
    fake = interp.work_dir + "/fake-lldb"
    with open(interp.host_path(fake), "w") as f:
        f.write("#!/bin/sh\necho /nonexistent-lldb-python\n")
    os.chmod(interp.host_path(fake), 0o755)
    for lldb, says in (("/nonexistent/lldb", "cannot run it"), (fake, "Python module is not installed")):
        r = interp.run([python, "-m", "crashcatch", "lldb", "--version"], env=dict(os.environ, CRASHCATCH_LLDB=lldb))
        assert r.returncode == 2 and f"{lldb}: " in r.stderr and says in r.stderr, r.stderr
        assert "CRASHCATCH_LLDB" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = interp.run([python, "-m", "crashcatch", "debugger-scripts", "--lldb"])
    assert r.returncode == 0 and r.stdout.strip().endswith("/crashcatch/_debugger/crashcatch_lldb.py"), r
    assert os.path.exists(interp.host_path(r.stdout.strip())), r.stdout


def test_bad_input_gets_a_message(interp):
    # No process, then a process that is not Python.
    commands = [soft("py-bt"), "process launch --stop-at-entry", soft("py-bt"), soft("cc-bt"), soft("cc-threads"),
                soft("py-list"), soft("cc-bt nonsense")]
    out, whole = run_lldb(interp, "", commands, program=["/bin/sleep", "1"])
    assert re.fullmatch(r"error: crashcatch: no process: .*\n", out["py-bt"]), whole
    for c in ("py-bt#2", "cc-bt", "cc-threads", "py-list"):
        assert re.fullmatch(r"error: crashcatch: not a Python process.*\n", out[c]), (c, whole)
    assert out["cc-bt nonsense"] == "error: crashcatch: usage: cc-bt [all] [full]\n", whole
    # Python stopped before it initialised.
    out, whole = run_lldb(interp, CALLBACK, ["breakpoint set -n Py_BytesMain", "run", soft("py-bt"),
                                             soft("cc-threads")])
    assert "Py_BytesMain" in out["run"], whole
    for c in ("py-bt", "cc-threads"):
        assert re.fullmatch(r"error: crashcatch: .*not initialised yet.*\n", out[c]), (c, whole)


@pytest.mark.parametrize("python", old_pythons())
def test_plugin_is_valid_python_3_6(python):
    """lldb's embedded Python may be older than any crashcatch supports: the plugin and the
    bridge must at least compile there (their behaviour is tested above with lldb-19's
    Python 3.11 and lldb-22's 3.14)."""
    if python is None:
        pytest.skip("no Python 3.6-3.8 here to compile the lldb plugin with")
    for script in PLUGIN_FILES:
        r = subprocess.run([python, "-c", "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')", script],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (script, r.stderr)
