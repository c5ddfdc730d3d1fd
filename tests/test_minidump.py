"""Minidumps: every crash kind on every interpreter leaves a dump that the independent
`minidump` crate parses (tests/dumpcheck), with the right exception, threads, modules and
build ids, and the memory to decode every Python frame from the dump alone."""
import json
import os
import signal
import stat
import subprocess

import pytest

from crashlib import FATAL_CALLS, THREADED_CRASH, run_script, script_line
from interpreters import REPO

DUMPCHECK = os.path.join(REPO, "target", "release", "dumpcheck")


def check(dump):
    r = subprocess.run([DUMPCHECK, dump], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def python_frames(info):
    """(file, line, name) of the Python thread that crashed or asked for the dump
    (matched by OS thread id, or by pthread_t where Python ≤3.10 records no OS id)."""
    meta = info["metadata"]
    threads = [t for t in info["python"]["threads"]
               if t["native_thread_id"] == meta["requesting_tid"]
               or (t["native_thread_id"] is None and t["thread_id"] == meta["requesting_thread_id"])]
    assert len(threads) == 1, info["python"]
    return [(f["file"], str(f["line"]), f["name"]) for f in threads[0]["frames"]]


# A fault at a known address: the dump's exception record must say it.
FAULT_ADDRESSES = {"segfault_at": 0xDEAD0000}


@pytest.mark.parametrize("kind", FATAL_CALLS)
def test_fatal_crash_leaves_a_complete_minidump(interp, kind):
    call, signo, _ = FATAL_CALLS[kind]
    address = FAULT_ADDRESSES.get(kind)
    code = THREADED_CRASH.format(call=call)
    r = run_script(interp, code)
    assert r.returncode == -signo, r.stderr
    assert len(r.dumps) == 1, r.stderr
    last = r.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("crashcatch: minidump written to "), r.stderr
    assert last.endswith(os.path.basename(r.dumps[0])), r.stderr
    assert stat.S_IMODE(os.stat(r.dumps[0]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(r.dumps[0])).st_mode) == 0o700

    info = check(r.dumps[0])
    meta = info["metadata"]
    assert info["exception"]["code"] == signo
    if address is not None:
        assert info["exception"]["address"] == address
    crashed = info["exception"]["tid"]
    assert crashed == meta["requesting_tid"]
    # All threads: the main thread and the 3 workers at least.
    tids = {t["tid"] for t in info["threads"]}
    assert crashed in tids and len(tids) >= 4, info["threads"]
    assert {t["tid"] for t in meta["threads"]} == tids
    # Modules with build ids: the extension and the interpreter.
    names = {os.path.basename(m["name"]): m for m in info["modules"]}
    ext = [m for n, m in names.items() if n.startswith("buggyext")]
    assert ext and ext[0]["build_id"], names.keys()
    # Every Python frame of every thread decodes from the dump's memory alone.
    expected = [(r.script, str(script_line(code, m)), f) for m, f in
                [("inner", "inner"), ("outer", "outer"), ("module", "<module>")]]
    assert python_frames(info) == expected, info["python"]
    workers = [t for t in info["python"]["threads"] if t["frames"] and t["frames"][-1]["name"] == "_bootstrap"]
    assert len(workers) == 3, info["python"]
    for t in workers:
        assert (r.script, script_line(code, "idle"), "idle") in [(f["file"], f["line"], f["name"]) for f in t["frames"]]
    # Metadata: versions, the report itself, annotations, source lines.
    assert meta["python"]["version"].startswith(f"3.{interp.minor}.")
    assert meta["kind"] == "fatal-signal" and meta["signal"] == signo
    assert meta["report"].startswith("Fatal Python error:") and "Current thread" in meta["report"]
    # The whole report, up to the dump's own line: the helper starts before the report is
    # written (finding the threads meanwhile) and reads it once it is complete.
    assert meta["report"] == r.stderr[:r.stderr.rindex("crashcatch: minidump written")], meta["report"]
    assert meta["annotations"] == {"release": "1.2.3"}
    # Python thread names, by OS thread id.
    names = sorted(t["python_name"] for t in meta["threads"] if t["python_name"])
    assert names == ["MainThread", "worker-0", "worker-1", "worker-2"], meta["threads"]
    # The crashing thread held the GIL (the call is made with it held).
    holder = [t for t in meta["threads"] if t["python"] and t["python"]["holds_gil"]]
    assert [t["tid"] for t in holder] == [crashed], meta["threads"]
    src = meta["source"][0]
    assert src["function"] == "inner" and src["line"] == script_line(code, "inner")
    assert any("# @inner" in line for line in src["lines"]), src
    assert info["size"] < 1024 * 1024, info["size"]


def test_write_minidump_of_a_live_process(interp):
    code = """
    import os, crashcatch

    def take():
        return crashcatch.write_minidump()  # @take

    path = take()  # @call
    print(path)
    print("alive", os.getpid())
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    path, alive = r.stdout.splitlines()
    assert alive.startswith("alive")
    host = interp.host_path(path)
    assert os.path.exists(host) and host in r.dumps
    info = check(host)
    assert info["metadata"]["kind"] == "requested"
    assert python_frames(info)[:2] == [
        (r.script, str(script_line(code, "take")), "take"), (r.script, str(script_line(code, "call")), "<module>")]


def test_registered_signal_writes_a_dump_then_rate_limits(interp):
    """With the defaults, the first signal dumps and the next one within the live-dump
    interval (60 s) says why it did not (every-time dumps: test_hardening.py)."""
    code = """
    import os, signal, crashcatch
    crashcatch.register(signal.SIGUSR1, minidump=True)
    for _ in range(2):
        os.kill(os.getpid(), signal.SIGUSR1)
    print("done")
    """
    r = run_script(interp, code)
    assert r.returncode == 0 and r.stdout == "done\n", r.stderr
    assert r.stderr.count("crashcatch: minidump written to") == 1, r.stderr
    assert "crashcatch: no minidump: at most one live dump every 60 s" in r.stderr, r.stderr
    assert len(r.dumps) == 1
    info = check(r.dumps[0])
    # A snapshot taken by the dump thread after the handler returned (livedump.rs): no
    # signal context, the signal in the metadata.
    assert info["metadata"]["kind"] == "registered-signal"
    # minidump-writer's "dump requested" record (as for write_minidump()), on the dump thread.
    meta = info["metadata"]
    assert meta["signal"] == signal.SIGUSR1 and info["exception"]["code"] == 0xFFFFFFFF, info["exception"]
    assert info["exception"]["tid"] == meta["requesting_tid"], (info["exception"], meta["requesting_tid"])
    assert [t["name"] for t in meta["threads"] if t["tid"] == meta["requesting_tid"]] == ["crashcatch-dump"]


LIVE_WORKERS = 20
SIGNALLED = """
import inspect, os, signal, sys, threading, time, crashcatch
out = open(os.environ["FILE_out"], "w")
crashcatch.register(signal.SIGUSR1, file=out, minidump=True)
ready, done = threading.Barrier({workers} + 1), threading.Event()
def idle():
    ready.wait()
    done.wait()  # @idle
workers = [threading.Thread(target=idle, name=f"worker-{{i}}", daemon=True) for i in range({workers})]
for w in workers:
    w.start()
ready.wait()
# The dump is taken while Python threads run: let every worker reach the blocking acquire
# in Condition.wait() first, so none is caught between two frames.
lines, first = inspect.getsourcelines(threading.Condition.wait)
blocking = first + max(i for i, line in enumerate(lines) if line.strip() == "waiter.acquire()")
def blocked(frame):
    return frame is not None and frame.f_code is threading.Condition.wait.__code__ and frame.f_lineno == blocking
while not all(blocked(sys._current_frames().get(w.ident)) for w in workers):
    time.sleep(0.001)
os.kill(os.getpid(), signal.SIGUSR1)  # @signal
{after}
"""


def check_complete_live_dump(interp, r, code):
    """The one dump of a registered signal is whole: every thread (the workers, the main
    one, crashcatch's dump thread), every worker's Python stack, the signalled thread's line
    in the report it keeps, modules with build ids; found with a few reads per thread
    (procmem.rs's page cache; one read per field made ~150 per thread)."""
    assert len(r.dumps) == 1, r.files["out"]
    assert r.files["out"].count("crashcatch: minidump written to") == 1, r.files["out"]
    info = check(r.dumps[0])
    meta = info["metadata"]
    assert info["streams_ok"], info
    tids = {t["tid"] for t in info["threads"]}
    assert len(tids) == LIVE_WORKERS + 2 and {t["tid"] for t in meta["threads"]} == tids, info["threads"]
    assert [t["name"] for t in meta["threads"]].count("crashcatch-dump") == 1, meta["threads"]
    signalled = f'File "{r.script}", line {script_line(code, "signal")} in <module>'
    assert signalled in meta["report"].split("Current thread", 1)[1], meta["report"]
    # In idle(): at the barrier still, or past it (the signal may come before all wake).
    idle = {(r.script, script_line(code, "idle") - n, "idle") for n in (0, 1)}
    frames = [{(f["file"], f["line"], f["name"]) for f in t["frames"]} for t in info["python"]["threads"]]
    assert len([f for f in frames if f & idle]) == LIVE_WORKERS, frames
    names = {os.path.basename(m["name"]) for m in info["modules"] if m["build_id"]}
    assert any(n.startswith(("python3", "libpython3")) for n in names), names
    assert meta["kind"] == "registered-signal"
    assert meta["process_reads"] <= 30 * len(tids) + 300, meta["process_reads"]


def test_a_registered_signal_dump_is_whole_while_the_process_goes_on(interp):
    code = SIGNALLED.format(workers=LIVE_WORKERS, after="""
total = sum(range(100000))
while "minidump" not in open(out.name).read():  # the dump thread's line
    time.sleep(0.01)
done.set()
for w in workers:
    w.join()
print("went on", total)""")
    r = run_script(interp, code, files=["out"])
    assert r.returncode == 0 and r.stdout == "went on 4999950000\n", r.stderr
    check_complete_live_dump(interp, r, code)


@pytest.mark.parametrize("end, status", [("sys.exit(3)", 3), ("", 0)], ids=["sys.exit", "script-end"])
def test_a_registered_signal_dump_is_whole_when_the_process_exits_right_after(interp, end, status):
    """The process ends at once after the signal, its (daemon) workers still running: the
    exit waits for the dump thread (crashcatch's atexit hook), the dump is whole. (os._exit
    runs no hook: its dump is lost, docs/minidump.md.)"""
    code = SIGNALLED.format(workers=LIVE_WORKERS, after=end)
    r = run_script(interp, code, files=["out"])
    assert r.returncode == status, r.stderr
    check_complete_live_dump(interp, r, code)


def mover_frames(interp, code):
    """Runs a script whose thread `mover` moves on while the helper waits 1 s between its
    walk and the stop, and prints the mover's native and Python ids: (the run, the mover's
    frames in the one dump as (file, line, name)). The look while stopped walked a thread
    again."""
    r = run_script(interp, code, files=["out"], env={"CRASHCATCH_TEST_HELPER_WALKED_DELAY_MS": "1000"})
    assert r.returncode == 0, r.stderr
    assert len(r.dumps) == 1, r.files["out"]
    info = check(r.dumps[0])
    again = info["metadata"].get("python_looked_again")
    assert again and again["walked"] >= 1, again
    tid, ident = map(int, r.stdout.split())
    thread = [t for t in info["python"]["threads"] if t["native_thread_id"] == tid or t["thread_id"] == ident]
    assert len(thread) == 1, info["python"]
    return r, [(f["file"], f["line"], f["name"]) for f in thread[0]["frames"]]


def test_a_thread_that_moved_on_since_the_walk_is_dumped_where_it_was_stopped(interp):
    """The helper walks the Python stacks while the process runs and stops the threads
    afterwards (here 1 s later): a thread that moved on meanwhile is walked again while
    stopped (dumper/src/again.rs), so the dump decodes it where it was stopped. Before, its
    new frames were not in the dump: no Python stack for it at all."""
    code = """
    import os, signal, threading, time, crashcatch
    out = open(os.environ["FILE_out"], "w")
    crashcatch.register(signal.SIGUSR1, file=out, minidump=True)
    sleeping, done = threading.Event(), threading.Event()
    def second():
        done.wait()  # @second
    def first():
        sleeping.set()
        time.sleep(0.3)  # @first
        second()  # @call
    mover = threading.Thread(target=first, name="mover")
    mover.start()
    sleeping.wait()
    os.kill(os.getpid(), signal.SIGUSR1)
    while "minidump" not in open(out.name).read():
        time.sleep(0.01)
    done.set()
    mover.join()
    print(mover.native_id, mover.ident)
    """
    r, frames = mover_frames(interp, code)
    assert (r.script, script_line(code, "second"), "second") in frames, frames
    assert (r.script, script_line(code, "call"), "first") in frames, frames


def test_a_thread_back_in_the_same_innermost_frame_under_another_caller_is_walked_again(interp):
    """The thread waits in Event.wait() called from a(), then (after the walk, before the
    stop) in Event.wait() again, called from b(): the same innermost frame address and code
    (≤3.10 reuses a code's "zombie" frame; 3.11+ frames sit at the same depth of the data
    stack), a different caller. Comparing only the innermost frame called it unchanged and
    the dump had no b() (a worker of the registered-signal test above decoded to a lone
    `wait` frame, once in a CI run); the look while stopped compares the walk's frames
    level by level."""
    code = """
    import os, signal, threading, time, crashcatch
    out = open(os.environ["FILE_out"], "w")
    crashcatch.register(signal.SIGUSR1, file=out, minidump=True)
    started, never, done = threading.Event(), threading.Event(), threading.Event()
    def inner(event, timeout):
        event.wait(timeout)
    def a():
        inner(never, 0.3)  # @a
    def b():
        inner(done, None)  # @b
    def first():
        started.set()
        a()
        b()
    mover = threading.Thread(target=first, name="mover")
    mover.start()
    started.wait()
    time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGUSR1)
    while "minidump" not in open(out.name).read():
        time.sleep(0.01)
    done.set()
    mover.join()
    print(mover.native_id, mover.ident)
    """
    r, frames = mover_frames(interp, code)
    assert (r.script, script_line(code, "b"), "b") in frames, frames
    assert not any(name == "a" for _, _, name in frames), frames


def test_other_threads_run_while_a_registered_signal_dump_is_written(interp):
    """The signalled thread holds the GIL; its handler writes the text and returns, the dump
    thread writes the dump (the helper held 1 s here). A Python ticker reads the report at
    each tick: it sees the text without the dump line at several ticks (before, it could not
    run until the dump was done: at most one read in flight). The helper is reaped: no
    zombie, no child left for the program's os.waitpid(-1)."""
    code = """
    import json, os, signal, threading, time, crashcatch
    out = open(os.environ["FILE_out"], "w")
    crashcatch.register(signal.SIGUSR1, file=out, minidump=True)
    states = []
    def waitpid_any():
        try:
            return os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return None
    def ticker():
        while True:
            report = open(out.name).read()
            state = "dumped" if "minidump" in report else "text" if "hread 0x" in report else "none"
            states.append(state)
            if state == "dumped":
                return
            time.sleep(0.001)
    t = threading.Thread(target=ticker, name="ticker")
    t.start()
    while not states:
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGUSR1)
    t.join()
    print(json.dumps({"text_ticks": states.count("text"), "child_left": waitpid_any()}))
    """
    r = run_script(interp, code, files=["out"], env={"CRASHCATCH_TEST_HELPER_DELAY_MS": "1000"})
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["text_ticks"] >= 2, (seen, r.files["out"])
    assert seen["child_left"] is None, seen
    assert r.files["out"].count("crashcatch: minidump written to") == 1, r.files["out"]
    assert len(r.dumps) == 1
    info = check(r.dumps[0])
    assert info["streams_ok"] and info["metadata"]["kind"] == "registered-signal", info
    # The main thread, the ticker and crashcatch's dump thread, the Python ones in Python.
    assert len(info["threads"]) == 3 and len(info["python"]["threads"]) == 2, info["threads"]


def test_a_registered_signal_dump_line_never_lands_in_a_file_that_reused_the_reports_fd(interp):
    """The dump thread writes its result line after the handler returned. The program may
    unregister, close the report's file and open another that gets the same descriptor
    number meanwhile (the helper held 1 s here): the line still goes to the report's file,
    never into the program's new one."""
    code = """
    import os, signal, time, crashcatch
    out = open(os.environ["FILE_out"], "w")
    crashcatch.register(signal.SIGUSR1, file=out, minidump=True)
    os.kill(os.getpid(), signal.SIGUSR1)
    def helper_running():
        tasks = f"/proc/{os.getpid()}/task"
        return any(open(f"{tasks}/{t}/children").read().strip() for t in os.listdir(tasks))
    deadline = time.monotonic() + 30
    while not helper_running() and time.monotonic() < deadline:  # its pipes are made by then
        time.sleep(0.01)
    crashcatch.unregister(signal.SIGUSR1)
    number = out.fileno()
    out.close()
    mine = os.open(os.environ["FILE_mine"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    assert mine == number, (mine, number)
    os.write(mine, b"the program's own data\\n")
    time.sleep(2)  # the dump (helper held 1 s) is written meanwhile
    os.close(mine)
    """
    r = run_script(interp, code, files=["out", "mine"], env={"CRASHCATCH_TEST_HELPER_DELAY_MS": "1000"})
    assert r.returncode == 0, r.stderr
    assert r.files["mine"] == "the program's own data\n", r.files["mine"]
    assert r.files["out"].count("crashcatch: minidump written to") == 1, r.files["out"]
    assert len(r.dumps) == 1


def test_explicit_path_never_follows_a_symlink_or_overwrites(interp):
    code = """
    import os, crashcatch
    d = os.path.dirname(os.path.abspath(__file__))
    target = os.path.join(d, "precious")
    open(target, "w").write("keep me")
    os.symlink(target, os.path.join(d, "planted.dmp"))
    for name in ("planted.dmp", "precious"):
        try:
            crashcatch.write_minidump(os.path.join(d, name))
            print(name, "written")
        except RuntimeError as e:
            print(name, "refused", e)
    print(open(target).read())
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("planted.dmp refused") and lines[1].startswith("precious refused"), r.stdout
    assert lines[2] == "keep me"


def test_unwritable_dump_dir_still_gives_the_full_report(interp):
    code = """
    import crashcatch, buggyext
    crashcatch.enable(dump_dir="/proc/crashcatch-cannot-be-here")
    buggyext.segfault()
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert "Current thread's C stack trace" in r.stderr
    last = r.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("crashcatch: no minidump: cannot create the dump directory /proc/crashcatch-cannot-be-here"), last


@pytest.mark.parametrize("stage", ["early", "late"])
def test_hanging_helper_is_killed_at_the_deadline(interp, stage):
    """Killed at the start, or once the dump is built but not yet written: either way the
    crash report goes on and no file (partial, or without metadata) is left behind."""
    code = """
    import crashcatch, buggyext
    crashcatch.enable(dump_timeout=2.0)
    buggyext.segfault()
    """
    hook = {"early": "CRASHCATCH_TEST_HELPER_DELAY_MS", "late": "CRASHCATCH_TEST_HELPER_LATE_DELAY_MS"}[stage]
    r = run_script(interp, code, env={hook: "30000"}, timeout=60)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert "crashcatch: no minidump: the dump helper did not finish within 2000 ms and was killed" in r.stderr
    assert r.dumps == []


def test_minidump_false_writes_none(interp):
    code = """
    import crashcatch, buggyext
    crashcatch.enable(minidump=False)
    buggyext.segfault()
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV
    assert "minidump" not in r.stderr and r.dumps == []


def test_a_crash_dies_without_waiting_for_the_helper_to_exit(interp):
    """The crash's signal had the default disposition, so the process dies as soon as it has
    read the helper's line, without waiting for the helper to exit (it only frees its memory
    by then). Here the helper lingers 5 s after its answer (test hook): once the crashed
    child is gone, its helper is still there, the dump complete. Before, the crash reaped
    the helper first, and no helper was left."""
    code = """
    import os, subprocess, sys, uuid
    crash = "import crashcatch, buggyext; crashcatch.enable(); buggyext.segfault()"
    mark = str(uuid.uuid4())
    env = dict(os.environ, CRASHCATCH_TEST_HELPER_LINGER_MS="5000", CRASHCATCH_TEST_MARK=mark)
    with open(os.environ["FILE_err"], "w") as err:
        status = subprocess.call([sys.executable, "-c", crash], stderr=err, env=env)
    def lingering(pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f, open(f"/proc/{pid}/environ", "rb") as e:
                return b"crashcatch-dump" in f.read() and ("CRASHCATCH_TEST_MARK=" + mark).encode() in e.read()
        except OSError:
            return False
    print(status, sum(lingering(p) for p in os.listdir("/proc") if p.isdigit()))
    """
    r = run_script(interp, code, files=["err"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(-signal.SIGSEGV), "1"], (r.stdout, r.files["err"])
    last = r.files["err"].rstrip("\n").splitlines()[-1]
    assert last.startswith("crashcatch: minidump written to "), r.files["err"]
    check(interp.host_path(last.removeprefix("crashcatch: minidump written to ")))


@pytest.mark.parametrize("case", ["heap_scribble", "concurrent_16", "overflow_in_thread", "overflow_in_main"])
def test_hard_crashes_still_leave_a_parseable_dump(interp, case):
    code = {
        "heap_scribble": """
            import crashcatch, buggyext
            crashcatch.enable()
            buggyext.heap_scribble()  # @call
            """,
        "concurrent_16": """
            import threading, crashcatch, buggyext
            crashcatch.enable()
            barrier = threading.Barrier(16)
            def crasher():
                barrier.wait()
                buggyext.segfault_without_gil()  # @call
            threads = [threading.Thread(target=crasher) for _ in range(16)]
            for t in threads: t.start()
            for t in threads: t.join()
            """,
        "overflow_in_main": """
            import crashcatch, buggyext
            crashcatch.enable()
            buggyext.stack_overflow()  # @call
            """,
        "overflow_in_thread": """
            import threading, crashcatch, buggyext
            crashcatch.enable()
            def worker():
                buggyext.stack_overflow()  # @call
            t = threading.Thread(target=worker)
            t.start(); t.join()
            """,
    }[case]
    r = run_script(interp, code, timeout=120)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert len(r.dumps) == 1, r.stderr
    info = check(r.dumps[0])
    assert info["exception"]["code"] == signal.SIGSEGV
    assert info["exception"]["tid"] == info["metadata"]["requesting_tid"]
    frames = python_frames(info)
    assert frames[0][:2] == (r.script, str(script_line(code, "call"))), frames
    if case == "concurrent_16":
        assert len([t for t in info["threads"]]) >= 17
    # Every dump is small; an overflowed stack is capped to its top and bottom, and the
    # file offsets moved by the cut still lead to the right module names and memory.
    assert info["size"] < 1024 * 1024, info["size"]
    assert any(os.path.basename(m["name"]).startswith("buggyext") and m["build_id"] for m in info["modules"])
    assert all(info["streams_ok"].values()), info["streams_ok"]
    assert {tid for tid, _ in info["thread_names"]} == {t["tid"] for t in info["threads"]}
    if case.startswith("overflow"):
        capped = info["metadata"]["stack_capped"]
        assert capped["original_size"] > 4 * 1024 * 1024 and capped["kept_size"] == 256 * 1024, capped
        crashed = [t for t in info["threads"] if t["tid"] == info["exception"]["tid"]][0]
        assert crashed["stack_size"] == capped["kept_size"]
        ranges = info["memory"]
        assert [capped["start"], capped["kept_size"]] in ranges
        # The bottom of the stack (the thread's start, from the frame an unwind of the dump
        # goes on from, at least 64 KiB) is kept as its own range.
        assert capped["bottom_start"] > capped["start"] + capped["kept_size"] and capped["bottom_kept"] >= 64 * 1024
        assert [capped["bottom_start"], capped["bottom_kept"]] in ranges, (capped, ranges)


def test_full_dump_directory_still_gives_the_full_report(interp, tmp_path):
    """A dump directory on a one-page tmpfs: no room for the dump."""
    code = """
    import os, crashcatch, buggyext
    crashcatch.enable(dump_dir=os.environ["FULL_DIR"])
    buggyext.segfault()
    """
    inner = interp.work_dir + f"/full-{os.getpid()}-{tmp_path.name}"
    host = interp.host_path(inner)
    os.makedirs(host, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k,mode=0700", "tmpfs", host]).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        r = run_script(interp, code, env={"FULL_DIR": inner})
    finally:
        subprocess.run(["umount", host])
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert "Current thread's C stack trace" in r.stderr
    last = r.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("crashcatch: no minidump: "), last
    assert "No space left on device" in last or "minidump-writer failed" in last, last


def test_dropped_privileges_still_give_the_report_and_say_why(interp, tmp_path):
    """A process that dropped root becomes non-dumpable: crashcatch leaves it so (a dump
    would hand its user what it may not read) and the report says what happened."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    code = """
    import os, crashcatch, buggyext
    crashcatch.enable(dump_dir=os.environ["WW"] + "/dumps")
    os.setgid(65534)
    os.setuid(65534)
    buggyext.segfault()
    """
    ww = interp.work_dir + f"/ww-{tmp_path.name}"
    os.makedirs(interp.host_path(ww), exist_ok=True)
    os.chmod(interp.host_path(ww), 0o1777)
    r = run_script(interp, code, env={"WW": ww})
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert "Current thread's C stack trace" in r.stderr
    last = r.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("crashcatch: no minidump: the process is not dumpable"), last
    assert "set-uid" in last and "ptrace_scope" not in last, last


def test_timeout_writes_a_dump_and_goes_on(interp):
    code = """
    import time, crashcatch
    crashcatch.dump_traceback_later(0.2, minidump=True)
    time.sleep(1.0)  # @sleep
    print("went on")
    """
    r = run_script(interp, code, timeout=60)
    assert r.returncode == 0 and r.stdout == "went on\n", r.stderr
    assert "crashcatch: minidump written to" in r.stderr and len(r.dumps) == 1, r.stderr
    info = check(r.dumps[0])
    assert info["metadata"]["kind"] == "timeout"
    main = [t for t in info["python"]["threads"] if t["frames"] and t["frames"][-1]["name"] == "<module>"]
    assert [(f["file"], f["line"]) for f in main[0]["frames"]] == [(r.script, script_line(code, "sleep"))]


def test_helper_is_found_in_a_target_install(interp, tmp_path):
    """pip install --target DIR: the helper is found next to the package, wherever it is."""
    import tempfile
    target = interp.work_dir + "/" + os.path.basename(
        tempfile.mkdtemp(prefix="target-", dir=interp.host_path(interp.work_dir)))
    wheel = [n for n in os.listdir(interp.host_path(os.path.dirname(os.path.dirname(interp.venv_python))) + "/..")
             if n.endswith(".whl")]
    assert wheel, "the prepared wheel is missing"
    wheel = os.path.dirname(os.path.dirname(os.path.dirname(interp.venv_python))) + "/" + wheel[0]
    r = interp.run([interp.venv_python, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--target", target, wheel])
    assert r.returncode == 0, r.stderr
    code = """
    import sys, os
    sys.path.insert(0, os.environ["TARGET"])
    import crashcatch
    assert crashcatch.__file__.startswith(os.environ["TARGET"]), crashcatch.__file__
    print(crashcatch.write_minidump())
    """
    r = run_script(interp, code, env={"TARGET": target})
    assert r.returncode == 0, r.stderr
    assert os.path.exists(interp.host_path(r.stdout.strip()))


def test_a_forked_child_writes_its_registered_signal_dump_with_its_own_thread(interp):
    """The parent's dump thread is not copied by fork(): os.fork()'s after-in-child hook
    starts the child's, which writes the child's dump (its eventfd is not the parent's)."""
    code = """
    import os, signal, sys, time, crashcatch
    crashcatch.enable(live_dump_interval=0)
    out = open(os.environ["FILE_out"], "w")
    crashcatch.register(signal.SIGUSR1, file=out, minidump=True)
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGUSR1)
        sys.exit(0)  # the exit waits for the child's dump thread
    _, status = os.waitpid(pid, 0)
    print(pid, status)
    """
    r = run_script(interp, code, files=["out"])
    assert r.returncode == 0, r.stderr
    child, status = map(int, r.stdout.split())
    assert status == 0, r.stdout
    assert r.files["out"].count("crashcatch: minidump written to") == 1 and len(r.dumps) == 1, r.files["out"]
    assert f"-{child}-" in os.path.basename(r.dumps[0]), r.dumps  # PROGRAM-PID-TIME.dmp
    meta = check(r.dumps[0])["metadata"]
    assert [t["name"] for t in meta["threads"] if t["tid"] == meta["requesting_tid"]] == ["crashcatch-dump"]
