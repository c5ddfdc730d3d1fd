"""`crashcatch dump PID` and `crashcatch symbolize --pid PID [--nonblocking]`: a running
Python process that never imported crashcatch, dumped (or read without stopping it) from
outside; the stacks it is in (its script's lines, the C functions it waits in), and it goes
on running afterwards."""
import contextlib
import json
import os
import subprocess
import sys
import time

import pytest

from crashlib import prepare_script, script_line
from interpreters import REPO

DUMPCHECK = os.path.join(REPO, "target", "release", "dumpcheck")
SYMBOLIZE = os.path.join(REPO, "target", "release", "crashcatch-symbolize")

# Python → C (buggyext.call_back) → Python → C (read on a pipe nobody writes yet) in two
# threads, the main thread reading stdin. A line on stdin lets everything finish.
CODE = """
import os, sys, threading, buggyext
r, w = os.pipe()

def wait_in_c():
    return os.read(r, 2)  # @read

def worker():
    buggyext.call_back(wait_in_c)  # @worker

workers = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(2)]
for t in workers:
    t.start()
line = sys.stdin.readline()  # @main
os.write(w, b"abcd")
for t in workers:
    t.join()
print("answered", line.strip(), flush=True)
"""
READ_SYSCALL = "0"


def blocked_in_read(pid):
    """Whether the main thread and both workers are in read(2) (x86-64 syscall 0)."""
    in_read = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                in_read += f.read().split()[0] == READ_SYSCALL
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return in_read >= 3


@contextlib.contextmanager
def started(interp, code, ready):
    """The script `code`, running until `ready(pid)`: (process, prepared script)."""
    prepared = prepare_script(interp, code)
    env = {k: v for k, v in prepared.env.items() if not k.startswith("CRASHCATCH")}
    proc = subprocess.Popen(interp.command(prepared.argv, prepared.cwd), env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not ready(proc.pid):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)  # a poll interval, not a limit
        yield proc, prepared
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture
def waiting(interp):
    """The script, running and blocked in its reads: (process, prepared script)."""
    with started(interp, CODE, blocked_in_read) as running:
        yield running


def still_answers(proc):
    out, err = proc.communicate("ping\n", timeout=60)
    assert proc.returncode == 0, err
    assert out == "answered ping\n"


def crashcatch_in(interp, *args):
    """The crashcatch command installed in the interpreter's venv, run in its own world."""
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    return interp.run([crashcatch, *args], timeout=120)


def check_threads(doc, prepared, pid):
    """Every thread's merged stack in symbolize's JSON is the one the script is waiting in."""
    script = prepared.script
    threads = {t["tid"]: t for t in doc["threads"]}
    assert set(threads) == {int(t) for t in os.listdir(f"/proc/{pid}/task")}
    main = threads[pid]
    # The main thread comes first; no thread asked for the dump.
    assert doc["threads"][0]["tid"] == pid and not any(t["requested_dump"] or t["crashed"] for t in doc["threads"])
    assert [(f["file"], f["line"], f["function"]) for f in main["python_frames"]] == \
        [(script, script_line(CODE, "main"), "<module>")]
    workers = [t for tid, t in threads.items() if tid != pid]
    assert sorted(t["python_name"] for t in workers) == ["worker-0", "worker-1"]
    for t in workers:
        mine = [(f["line"], f["function"]) for f in t["python_frames"] if f["file"] == script]
        assert mine == [(script_line(CODE, "read"), "wait_in_c"), (script_line(CODE, "worker"), "worker")], t
        # The merged stack, innermost first: the read it waits in, wait_in_c's line,
        # buggyext's call_back, worker's line.
        merged = [f.get("function") for f in t["frames"]]
        at = [merged.index(name) for name in ("wait_in_c", "call_back", "worker")]
        assert at == sorted(at), merged
        # Innermost: libc's read. sid's glibc enters the syscall through its cancellation
        # helpers, which a stripped libc.so.6 has no names for: the first named frame is it.
        libc = []
        for f in t["frames"]:
            if f["kind"] != "native" or not (f.get("module") or "").startswith("libc.so"):
                break
            libc.append(f.get("function"))
        named = [name for name in libc if name]
        assert libc and named and "read" in named[0], t["frames"]


def test_dump_pid_parses_symbolizes_and_the_process_goes_on(interp, waiting, tmp_path):
    proc, prepared = waiting
    out = interp.host_path(prepared.cwd + "/live.dmp")
    r = crashcatch_in(interp, "dump", str(proc.pid), "-o", prepared.cwd + "/live.dmp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"crashcatch: minidump written to {prepared.cwd}/live.dmp"), r.stdout
    assert "threads stopped for at most" in r.stdout
    # The independent minidump reader: every thread, the metadata, the Python threads.
    check = subprocess.run([DUMPCHECK, out], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    info = json.loads(check.stdout)
    meta = info["metadata"]
    assert meta["kind"] == "external" and meta["exits_after_dump"] is False
    assert meta["python"]["version"] == ".".join(map(str, interp.version)) or interp.version[2] == 0
    assert meta["threads_stopped_max_ms"] > 0
    assert {t["tid"] for t in info["threads"]} == {int(t) for t in os.listdir(f"/proc/{proc.pid}/task")}
    assert len(info["python"]["threads"]) == 3 and info["python"]["thread_list_complete"]
    sym = crashcatch_in(interp, "symbolize", prepared.cwd + "/live.dmp", "--json")
    assert sym.returncode == 0, sym.stderr
    check_threads(json.loads(sym.stdout), prepared, proc.pid)
    still_answers(proc)


def test_symbolize_pid_gives_every_threads_stack_and_the_process_goes_on(interp, waiting):
    proc, prepared = waiting
    r = crashcatch_in(interp, "symbolize", "--pid", str(proc.pid), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["event"]["kind"] == "external"
    check_threads(doc, prepared, proc.pid)
    text = crashcatch_in(interp, "symbolize", "--pid", str(proc.pid))
    assert text.returncode == 0, text.stderr
    assert "Process dumped from outside by `crashcatch dump`, kept running" in text.stdout
    still_answers(proc)


TORN = "read while running, not stopped (--nonblocking): stacks may be torn"


def test_symbolize_pid_nonblocking_gives_every_threads_stack_and_the_process_goes_on(interp, waiting):
    proc, prepared = waiting
    r = crashcatch_in(interp, "symbolize", "--pid", str(proc.pid), "--nonblocking", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["source"] == "process" and doc["event"]["kind"] == "live", doc["event"]
    assert doc["python"]["version"] == ".".join(map(str, interp.version)) or interp.version[2] == 0, doc["python"]
    # Every thread is blocked in read(2): each has its native stack, down through
    # buggyext's call_back for the workers.
    check_threads(doc, prepared, proc.pid)
    text = crashcatch_in(interp, "symbolize", "--pid", str(proc.pid), "--nonblocking")
    assert text.returncode == 0, text.stderr
    assert TORN in text.stdout, text.stdout
    assert text.stdout.count("call_back") >= 2 and text.stdout.count("wait_in_c") >= 2, text.stdout
    if interp.root:
        # From outside the process's chroot (another root): its files are found all the same.
        host = subprocess.run([SYMBOLIZE, "symbolize", "--pid", str(proc.pid), "--nonblocking", "--json"],
                              capture_output=True, text=True, timeout=120)
        assert host.returncode == 0, host.stderr
        check_threads(json.loads(host.stdout), prepared, proc.pid)
    still_answers(proc)


# A thread that never blocks (it holds the GIL, nobody asks for it) while the main thread
# reads stdin.
SPINNING = """
import sys, threading

def spin():
    while True:  # @spin
        pass  # @spin-body

threading.Thread(target=spin, name="spinner", daemon=True).start()
line = sys.stdin.readline()  # @main
print("answered", line.strip(), flush=True)
"""


def main_reads_and_another_runs(pid):
    """Whether the main thread is in read(2) and another thread is running (x86-64)."""
    states = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                states[int(tid)] = f.read().split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return states.get(pid) == READ_SYSCALL and "running" in [s for t, s in states.items() if t != pid]


def test_nonblocking_a_running_thread_gets_its_python_stack_and_a_note(interp):
    with started(interp, SPINNING, main_reads_and_another_runs) as (proc, prepared):
        r = crashcatch_in(interp, "symbolize", "--pid", str(proc.pid), "--nonblocking", "--json")
        assert r.returncode == 0, r.stderr
        threads = {t["python_name"]: t for t in json.loads(r.stdout)["threads"]}
        spinner, main = threads["spinner"], threads["MainThread"]
        # Running: at either line of its loop.
        innermost = spinner["python_frames"][0]
        assert innermost["file"] == prepared.script and innermost["function"] == "spin", spinner
        assert innermost["line"] in (script_line(SPINNING, "spin"), script_line(SPINNING, "spin-body")), spinner
        assert not spinner["native_frames"] and "the thread was running" in spinner["native_unwind"]["stopped"]
        # The main thread, in read(2), has both stacks.
        assert [f["line"] for f in main["python_frames"]] == [script_line(SPINNING, "main")]
        assert any((f.get("module") or "").startswith("libc.so") for f in main["native_frames"]), main
        text = crashcatch_in(interp, "symbolize", "--pid", str(proc.pid), "--nonblocking")
        assert text.returncode == 0, text.stderr
        assert "<no native stack: the thread was running (not blocked in a system call)" in text.stdout, text.stdout
        still_answers(proc)


# Holds PID (argv[1]) as its tracer, without stopping it, until its stdin closes.
TRACER = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(0x4206, int(sys.argv[1]), None, None) != 0:  # PTRACE_SEIZE
    sys.exit("PTRACE_SEIZE failed: errno %d" % ctypes.get_errno())
print("seized", flush=True)
sys.stdin.read()
"""


def test_nonblocking_reads_a_process_a_debugger_holds(interp, waiting):
    proc, prepared = waiting
    tracer = subprocess.Popen([sys.executable, "-c", TRACER, str(proc.pid)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert tracer.stdout.readline() == "seized\n", tracer.communicate()
        # A dump needs ptrace, which only one tracer may have...
        blocking = crashcatch_in(interp, "symbolize", "--pid", str(proc.pid))
        assert blocking.returncode == 2, blocking
        assert f"process {proc.pid} is already traced by process {tracer.pid}" in blocking.stderr, blocking.stderr
        # ...reading without stopping does not.
        r = crashcatch_in(interp, "symbolize", "--pid", str(proc.pid), "--nonblocking", "--json")
        assert r.returncode == 0, r.stderr
        check_threads(json.loads(r.stdout), prepared, proc.pid)
    finally:
        tracer.communicate("")  # the tracer exits: the process is detached
    still_answers(proc)


def test_a_process_that_is_not_python_gets_a_clear_message(interp):
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        for args in (["dump", str(sleeper.pid), "-o", "/nonexistent/x.dmp"], ["symbolize", "--pid", str(sleeper.pid)],
                     ["symbolize", "--pid", str(sleeper.pid), "--nonblocking"]):
            r = crashcatch_in(interp, *args)
            assert r.returncode == 2, r
            assert f"process {sleeper.pid} (sleep) is not a Python process" in r.stderr, r.stderr
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_pid_that_does_not_exist_exits_2(interp):
    gone = subprocess.Popen(["true"])
    gone.wait()
    for args in (["dump", str(gone.pid)], ["symbolize", "--pid", str(gone.pid)],
                 ["symbolize", "--pid", str(gone.pid), "--nonblocking", "--json"]):
        r = crashcatch_in(interp, *args)
        assert r.returncode == 2, r
        assert f"no process {gone.pid}" in r.stderr, r.stderr


def test_a_process_another_tracer_holds_gets_a_clear_message(interp):
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ptrace_seize = 0x4206
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        # This test process becomes its tracer (PTRACE_SEIZE: it is not even stopped).
        assert libc.ptrace(ptrace_seize, sleeper.pid, None, None) == 0, ctypes.get_errno()
        r = crashcatch_in(interp, "dump", str(sleeper.pid))
        assert r.returncode == 2, r
        assert f"process {sleeper.pid} is already traced by process {os.getpid()}" in r.stderr, r.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
