"""Alternate stacks of threads started after enable() come from a pool: a thread that ends
gives its stack back and the next one takes it. Overflows in such threads are still caught;
threads alive at the same time never share a stack; fork children neither deadlock nor hand
out the stacks of threads that do not exist in them. One crash per child process."""
import re
import shutil
import signal

import pytest

from crashlib import c_stack, current_thread_frames, prepare_script, run_script, script_line, strace_script

# What each script uses to see its thread's alternate stack (None when it has none).
ALTSTACK = """
import ctypes
class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]
_libc = ctypes.CDLL(None, use_errno=True)
def altstack():
    st = _StackT()
    assert _libc.sigaltstack(None, ctypes.byref(st)) == 0
    return None if st.ss_flags & 2 else st.ss_sp  # SS_DISABLE
"""

# Starts `n` threads that are all alive at once, each recording its alternate stack.
BATCH = """
import threading
def batch(n):
    barrier = threading.Barrier(n)
    seen = []
    def hold():
        seen.append(altstack())
        barrier.wait()
    threads = [threading.Thread(target=hold) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert None not in seen and len(set(seen)) == n, seen
    return seen
"""

# A thread named "overflower" whose `worker` overflows the C stack (after calling `before`).
OVERFLOWER = """
import threading
import buggyext
def overflow_in_a_thread(before=lambda: None):
    def worker():
        before()
        buggyext.stack_overflow()  # @call
    t = threading.Thread(target=worker, name="overflower")
    t.start()
    t.join()
"""


def assert_overflow_report(r, code):
    """The report of a thread named "overflower" whose `worker` overflowed the C stack."""
    frames = current_thread_frames(r.stderr)
    assert frames and frames[0] == (r.script, str(script_line(code, "call")), "worker"), r.stderr
    stack = c_stack(r.stderr)
    assert stack and stack[-1].get("raw") == "  <end of stack>", r.stderr
    assert stack[0].get("sym") == "recurse", r.stderr
    assert any(f.get("sym") == "stack_overflow" for f in stack), r.stderr
    assert len(r.dumps) == 1, r.stderr


def test_overflow_in_a_thread_on_a_reused_stack(interp):
    code = ALTSTACK + OVERFLOWER + """
import crashcatch
crashcatch.enable()
ended = []
for _ in range(5):
    t = threading.Thread(target=lambda: ended.append(altstack()))
    t.start()
    t.join()
overflow_in_a_thread(lambda: print("reused", altstack() in ended, flush=True))
"""
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert r.stdout == "reused True\n", (r.stdout, r.stderr)
    assert_overflow_report(r, code)


def test_overflow_after_many_threads_some_at_once(interp):
    """Batches larger than the pool (the surplus is unmapped) and single threads in turn,
    then a thread overflows its stack."""
    code = ALTSTACK + BATCH + OVERFLOWER + """
import crashcatch
crashcatch.enable()
for n in (50, 1, 40, 2, 60, 1):
    for _ in range(3):
        batch(n)
overflow_in_a_thread()
"""
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert_overflow_report(r, code)


def test_fork_from_a_threaded_program_then_overflow_in_the_child(interp):
    """Threads start and end without pause while the parent forks: no child deadlocks, no
    child's thread gets a stack still held by a parent thread (which the child lacks),
    and a child's thread overflowing its stack is reported."""
    code = ALTSTACK + BATCH + OVERFLOWER + """
import os, sys, warnings
import crashcatch
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, 3.12+
crashcatch.enable()
release = threading.Event()
held = []

def hold():
    held.append(altstack())
    release.wait()

holders = [threading.Thread(target=hold) for _ in range(8)]
for t in holders:
    t.start()
stop = threading.Event()

def churn():
    while not stop.is_set():
        t = threading.Thread(target=altstack)
        t.start()
        t.join()

churners = [threading.Thread(target=churn) for _ in range(2)]
for t in churners:
    t.start()
while len(held) < 8:
    pass

def child(crash):
    stacks = batch(12)
    if set(stacks) & set(held):
        print("shared", file=sys.stderr, flush=True)
        os._exit(3)
    if crash:
        overflow_in_a_thread()
    os._exit(0)

statuses = []
for i in range(20):
    pid = os.fork()
    if pid == 0:
        child(crash=(i == 19))
    statuses.append(os.waitpid(pid, 0)[1])
stop.set()
release.set()
for t in holders + churners:
    t.join()
print(" ".join(str(s) for s in statuses))
"""
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    statuses = [int(s) for s in r.stdout.split()]
    assert statuses[:19] == [0] * 19 and len(statuses) == 20, (r.stdout, r.stderr)
    assert statuses[19] & 0x7F == signal.SIGSEGV, (r.stdout, r.stderr)
    assert r.stderr.count("Fatal Python error: Segmentation fault") == 1, r.stderr
    assert_overflow_report(r, code)


STACK_MAPPING = 256 * 1024 + 4096  # an alternate stack's mapping: the stack and its guard page


def test_thread_starts_reuse_stacks_instead_of_mapping_them(interp, tmp_path):
    """A hundred threads one after the other: the first maps a stack, the others reuse it
    (one sigaltstack call at the start, one at the end); none is unmapped. Before the pool,
    each thread mapped, protected and unmapped its own."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    code = """
    import threading
    import crashcatch
    crashcatch.enable()
    for _ in range(100):
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
    """
    p = prepare_script(interp, code)
    r, calls = strace_script(interp, p, "mmap,munmap,sigaltstack", tmp_path / "altstack.trace")
    assert r.returncode == 0, r.stderr
    maps = re.findall(rf"mmap\(NULL, {STACK_MAPPING}, [^)]*MAP_STACK", calls)
    unmaps = re.findall(rf"munmap\(0x[0-9a-f]+, {STACK_MAPPING}\)", calls)
    altstacks = re.findall(r"sigaltstack\(", calls)
    assert 1 <= len(maps) <= 2, calls  # the main thread's at enable(), the first thread's
    assert unmaps == [], calls
    assert 200 <= len(altstacks) <= 210, calls  # installed and disabled per thread, enable()'s
