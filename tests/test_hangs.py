"""Hangs in C: a dump_traceback_later() timeout firing while threads sleep in native code.

Truth: the threads' own ids (threading.get_ident / get_native_id, written by the script) and
the libc function each one is blocked in; the default output stays faulthandler's (CPython's
test_faulthandler checks that)."""
import json

from crashlib import peer_c_stacks, run_script, script_line, thread_blocks

HANG = """
import ctypes, json, os, threading
import crashcatch
libc = ctypes.CDLL(None)

def worker(ready):
    ids["worker"] = [threading.get_ident(), threading.get_native_id()]
    ready.set()
    libc.usleep(30_000_000)  # @worker

ids = {"main": [threading.get_ident(), threading.get_native_id()]}
ready = threading.Event()
threading.Thread(target=worker, args=(ready,), daemon=True).start()
ready.wait()
json.dump(ids, open(os.environ["FILE_ids"], "w"))
crashcatch.dump_traceback_later(0.5, exit=True, c_stack=True, minidump=True)
libc.sleep(30)  # @main
"""

SLEEPS = {"sleep", "usleep", "nanosleep", "__nanosleep", "clock_nanosleep", "__clock_nanosleep"}


def test_timeout_shows_where_each_thread_hangs_in_c(interp):
    r = run_script(interp, HANG, files=["ids"], timeout=60)
    assert r.returncode == 1, r.stderr
    ids = {name: tuple(v) for name, v in json.loads(r.files["ids"]).items()}
    # faulthandler's part first, unchanged: both threads' Python frames.
    assert r.stderr.startswith("Timeout (0:00:00.500000)!\n"), r.stderr
    blocks = thread_blocks(r.stderr)
    assert blocks[f"Thread 0x{ids['main'][0]:016x} (most recent call first):"][0] == \
        (r.script, str(script_line(HANG, "main")), "<module>"), r.stderr
    assert blocks[f"Thread 0x{ids['worker'][0]:016x} (most recent call first):"][0] == \
        (r.script, str(script_line(HANG, "worker")), "worker"), r.stderr
    # Then each thread's C stack, named by its ids, from libc's sleep to the thread's start.
    stacks = peer_c_stacks(r.stderr)
    assert set(ids.values()) <= set(stacks), r.stderr
    for name in ids:
        frames = stacks[ids[name]]
        assert frames and frames[-1].get("raw") == "  <end of stack>", (name, r.stderr)
        syms = [f.get("sym") for f in frames[:-1]]
        assert SLEEPS & set(syms[:4]), (name, r.stderr)
        # The main thread started at _start; the worker in libc (start_thread, clone3: no
        # dynamic symbols in Debian's libc).
        assert syms[-1] == "_start" if name == "main" else frames[-2]["module"].startswith("libc.so"), \
            (name, r.stderr)
    # The watchdog does not list itself: only the script's threads (and none of ours) appear.
    assert all(tid in {i[1] for i in ids.values()} for _, tid in stacks), stacks.keys()
    # The dump says the process exited after it.
    assert len(r.dumps) == 1, r.stderr
    from test_symbolize import symbolize_in
    out = symbolize_in(interp, r.dumps[0])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Process dumped by dump_traceback_later(exit=True), then exited\n"), out.stdout
    doc = json.loads(symbolize_in(interp, r.dumps[0], "--json").stdout)
    assert doc["event"]["kind"] == "timeout" and doc["event"]["exits_after_dump"] is True
    requester = [t for t in doc["threads"] if t["tid"] == doc["event"]["thread"]]
    assert requester and requester[0]["requested_dump"] and not requester[0]["crashed"]


def test_timeout_c_stacks_are_opt_in(interp):
    code = HANG.replace("c_stack=True, minidump=True", "minidump=False")
    r = run_script(interp, code, files=["ids"], timeout=60)
    assert r.returncode == 1, r.stderr
    assert "C stack" not in r.stderr and "crashcatch:" not in r.stderr, r.stderr
    assert len(thread_blocks(r.stderr)) == 2, r.stderr


BLOCKER = """
import os, signal, threading, time
import crashcatch

def blocker():
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    tids.append(threading.get_native_id())
    ready.set()
    go.wait()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signal.valid_signals())
    time.sleep(0.2)  # a late delivery of the borrowed signal would kill us here

tids, ready, go = [], threading.Event(), threading.Event()
t = threading.Thread(target=blocker)
t.start()
ready.wait()
report = open(os.environ["FILE_report"], "w")
crashcatch.dump_traceback_later(0.2, file=report, c_stack=True)
time.sleep(1)
go.set()
t.join()
print(tids[0], "survived")
"""


def test_a_thread_that_blocks_signals_is_reported_and_never_harmed(interp):
    r = run_script(interp, BLOCKER, files=["report"], timeout=60)
    assert r.returncode == 0, r.stderr
    tid, word = r.stdout.split()
    assert word == "survived", r.stdout
    report = r.files["report"]
    assert f"C stack of thread LWP {tid}:\n  <no answer within 100 ms: the thread blocks signals or is stopped>\n" \
        in report, report
    # The main thread (sleeping in Python) answered.
    assert len(peer_c_stacks(report)) == 1, report
