"""What a thread start after enable() records for the dumps: the `threading.Thread`'s name,
read from the thread object itself without running any Python code, and nothing for a
function `_thread` starts that is no Thread's. Forked children of a threaded program keep
naming their threads and giving them alternate stacks. One dump per child process; names
are checked in the dump's metadata (tests/dumpcheck)."""
from crashlib import run_script
from test_altstack_pool import ALTSTACK
from test_minidump import check


def python_names(dump):
    """{OS thread id: Python name or None} as the dump's metadata records them."""
    return {t["tid"]: t["python_name"] for t in check(dump)["metadata"]["threads"]}


def test_thread_names_are_read_without_running_python_code(interp):
    """A Thread subclass whose `name` property counts its reads is named in the dump, its
    property never read by the thread start (it was, once per start: Python code run in
    every new thread); a name set before start() is the one recorded; a bound method of
    an object that is no Thread, started by `_thread`, gives its thread no name (its
    `name` attribute was taken for one)."""
    code = """
    import _thread, os, threading
    import crashcatch
    crashcatch.enable()

    class Counting(threading.Thread):
        reads = 0

        @property
        def name(self):
            Counting.reads += 1
            return threading.Thread.name.fget(self)

        @name.setter
        def name(self, value):
            threading.Thread.name.fset(self, value)

    release = threading.Event()
    tids = {}

    def idle(label):
        tids[label] = threading.get_native_id()
        release.wait()

    class Impostor:
        name = "impostor"

        def run(self):
            idle("impostor")

    counted = Counting(target=idle, args=("counted",), name="counted")
    renamed = threading.Thread(target=idle, args=("renamed",), name="before")
    renamed.name = "after"
    reads_before_start = Counting.reads
    for t in (counted, renamed):
        t.start()
    _thread.start_new_thread(Impostor().run, ())
    while len(tids) < 3:
        pass
    reads_at_start = Counting.reads - reads_before_start
    path = crashcatch.write_minidump()
    release.set()
    for t in (counted, renamed):
        t.join()
    print(path)
    print(reads_at_start, tids["counted"], tids["renamed"], tids["impostor"], threading.get_native_id())
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    path, numbers = r.stdout.splitlines()
    reads, counted, renamed, impostor, main = map(int, numbers.split())
    assert reads == 0, r.stdout
    names = python_names(interp.host_path(path))
    assert names[counted] == "counted", names
    assert names[renamed] == "after", names
    assert names[impostor] is None, names
    assert names[main] == "MainThread", names


def test_a_forked_childs_threads_get_stacks_and_names(interp):
    """Threads start and end without pause in the parent (naming themselves, taking and
    giving stacks) while it forks: every child starts threads of its own without hanging,
    each with an alternate stack, and the last child's dump names them. The children ask
    for the process id after the fork (the lock's cached id is forgotten there)."""
    code = ALTSTACK + """
import os, sys, threading, warnings
import crashcatch
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, 3.12+
crashcatch.enable()
stop = threading.Event()

def churn():
    while not stop.is_set():
        t = threading.Thread(target=altstack, name="churned")
        t.start()
        t.join()

churners = [threading.Thread(target=churn, name=f"churner-{i}") for i in range(2)]
for t in churners:
    t.start()

def child(last):
    release = threading.Event()
    seen = {}

    def work(label):
        seen[label] = (threading.get_native_id(), altstack())
        release.wait()

    workers = [threading.Thread(target=work, args=(f"child-{i}",), name=f"child-{i}") for i in range(3)]
    for t in workers:
        t.start()
    while len(seen) < 3:
        pass
    stacks = [stack for _, stack in seen.values()]
    if None in stacks or len(set(stacks)) != 3:
        print("stacks", stacks, file=sys.stderr, flush=True)
        os._exit(3)
    if last:
        path = crashcatch.write_minidump()
        print(path, " ".join(f"{label}={tid}" for label, (tid, _) in sorted(seen.items())), flush=True)
    release.set()
    for t in workers:
        t.join()
    os._exit(0)

statuses = []
for i in range(20):
    pid = os.fork()
    if pid == 0:
        child(last=(i == 19))
    statuses.append(os.waitpid(pid, 0)[1])
stop.set()
for t in churners:
    t.join()
print(" ".join(str(s) for s in statuses))
"""
    r = run_script(interp, code, timeout=180)
    assert r.returncode == 0, r.stderr
    dumped, statuses = r.stdout.splitlines()
    assert statuses.split() == ["0"] * 20, (r.stdout, r.stderr)
    path, *workers = dumped.split()
    names = python_names(interp.host_path(path))
    for worker in workers:
        label, tid = worker.split("=")
        assert names[int(tid)] == label, (worker, names)
