"""`crashcatch dump PID` of a process with a few hundred threads: the dump helper reads the
thread list and the `threading` module's names once and looks them up by id (issue 14); each
OS thread still gets its own Python name and thread state, and the dump lists the same
threads as /proc and as the independent `minidump` crate (tests/dumpcheck)."""
import json
import os
import subprocess

from test_live import DUMPCHECK, crashcatch_in, started

THREADS = 300

# Every worker waits in Event.wait() under a name of its own; the main thread writes
# {native_id: name} of every thread once all are running, then waits on stdin.
CODE = """
import json, os, sys, threading
stop = threading.Event()
running = threading.Barrier({threads} + 1)

def work():
    running.wait()
    stop.wait()

workers = [threading.Thread(target=work, name=f"w{{i:03d}}-" + "x" * (i % 7)) for i in range({threads})]
# The same name twice: names are looked up by thread, not by text.
workers[-1].name = workers[0].name
for t in workers:
    t.start()
running.wait()
names = {{t.native_id: t.name for t in threading.enumerate()}}
with open("names.tmp", "w") as f:
    json.dump(names, f)
os.replace("names.tmp", "names.json")
sys.stdin.readline()
stop.set()
"""


def names_written(pid):
    """Whether the script has written its threads' names (so all of them are running)."""
    return os.path.exists(f"/proc/{pid}/cwd/names.json")


def test_many_threads_keep_their_names_and_states(interp):
    with started(interp, CODE.format(threads=THREADS), names_written) as (proc, prepared):
        with open(f"/proc/{proc.pid}/cwd/names.json") as f:
            expected = {int(tid): name for tid, name in json.load(f).items()}
        r = crashcatch_in(interp, "dump", str(proc.pid), "-o", prepared.cwd + "/many.dmp")
        assert r.returncode == 0, r.stderr
        tasks = {int(t) for t in os.listdir(f"/proc/{proc.pid}/task")}
        proc.communicate("go\n", timeout=60)
        assert proc.returncode == 0
    c = subprocess.run([DUMPCHECK, interp.host_path(prepared.cwd + "/many.dmp")],
                       capture_output=True, text=True, timeout=120)
    assert c.returncode == 0, c.stderr
    info = json.loads(c.stdout)
    meta = info["metadata"]
    assert len(expected) == THREADS + 1 and set(expected) == tasks
    # The same threads in /proc, the minidump's thread list and the metadata.
    assert {t["tid"] for t in info["threads"]} == tasks
    assert [t["tid"] for t in meta["threads"]] == sorted(tasks)
    # Each thread its own name (two workers share one), found by its OS thread id.
    assert {t["tid"]: t["python_name"] for t in meta["threads"]} == expected
    # Each thread's own thread state, where the interpreter records OS thread ids (3.11+).
    states = {t["native_thread_id"]: t["tstate"] for t in meta["python_threads"]}
    if interp.minor >= 11:
        assert len(states) == len(tasks) and set(states) == tasks
        assert {t["tid"]: t["python"]["tstate"] for t in meta["threads"]} == states
    # The helper walked the Python stacks before stopping the threads and looked again once
    # they were stopped (dumper/src/again.rs): every thread state accounted for, and when
    # none had moved, a few gathered words for all 301, not a page per thread: the lists
    # and frame slots, then one read per level of the frames compared (at most 16).
    again = meta["python_looked_again"]
    assert again["walked"] + again["unchanged"] == THREADS + 1, again
    assert again["walked"] > 0 or again["reads"] <= 4 + 16, again
