"""Python processes crashcatch was not enabled in: a kernel core and a running process, read by
crashcatch, pystack, py-spy and gdb side by side. Run by hand, not a test.

    python3 bench/reach_bench.py [--runs 5] [--interp pyenv-3.12] [--threads 5,100]
                                 [--core-threads 5] [--only core|live] [--keep]

core: for each of --core-threads N (default 5; e.g. 5,100,500), one crash of a process that
  never imported crashcatch (N-1 Python threads waiting, the main thread Python ->
  buggyext.call_back (C) -> crashing_callback (Python) -> segfault(3) (C) -> deref_null),
  its kernel core (plain core_pattern, RLIMIT_CORE lifted) read by
  `crashcatch symbolize CORE` (the installed command users run, a native launcher that execs
  the package's program; and that bare program), `pystack core --native`,
  `py-spy dump --core` (Python frames only) and gdb `thread apply all bt`.
live: a running process (no crashcatch) with N Python threads each in buggyext.call_back (C)
  -> wait_in_c (Python) -> os.read on a pipe (C), the main thread reading stdin:
  `crashcatch symbolize --pid` (and `--nonblocking` where the build has it) vs
  `pystack remote --native` vs `py-spy dump --native`; `crashcatch dump PID` vs `gcore`.
  How long the target was stopped is measured the same way for every tool from inside it:
  a C thread (compiled here, loaded with ctypes, so no GIL is involved) sleeps 1 ms at a
  time and records the longest gap between its ticks in a shared file the bench reads.
  The idle gap (no tool running) is printed as the floor of that measurement.

Every command runs once untimed (page cache warm), then --runs times, offline
(DEBUGINFOD_URLS empty): median wall and CPU (user+sys, its waited-for children included),
largest ru_maxrss, frames printed, and whether the output shows the functions it should
(`ok`). The machine may be busy (shared CPUs): compare the CPU column too, and the loadavg
printed on top. Needs tests/prepare_envs.py's interpreters (build/envs.json); pip-installs
pystack and py-spy into build/bench-venv.
"""
import argparse
import contextlib
import json
import mmap
import os
import re
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, BENCH)

from crashlib import prepare_script  # noqa: E402
from core_bench import host_interpreter  # noqa: E402
from symbolize_bench import parse, sh  # noqa: E402

DUMPCHECK = os.path.join(REPO, "target", "release", "dumpcheck")
TOOL_ENV = dict(os.environ, DEBUGINFOD_URLS="", NO_COLOR="1")  # offline, plain text
TOOL_ENV.pop("CRASHCATCH_SID_ROOT", None)
SCRATCH = []  # directories to delete at the end

CRASH = """
import threading, buggyext
ready, stop = threading.Barrier({threads}), threading.Event()
for i in range({threads} - 1):
    threading.Thread(target=lambda: (ready.wait(), stop.wait()), name=f"idle-{{i}}").start()
ready.wait()
def crashing_callback():
    return buggyext.segfault(3)
def outer():
    return buggyext.call_back(crashing_callback)
outer()
"""

WAITING = """
import ctypes, os, sys, threading, buggyext
ticker = ctypes.CDLL(os.environ["TICKER_SO"]).ticker_start(os.environ["TICKER_FILE"].encode())
if ticker < 0:
    sys.exit("ticker_start failed")
print("SCHED_FIFO" if ticker == 0 else "normal priority (SCHED_FIFO refused)", flush=True)
r, w = os.pipe()
def wait_in_c():
    return os.read(r, 1)
def worker():
    buggyext.call_back(wait_in_c)
for i in range({threads}):
    threading.Thread(target=worker, name=f"worker-{{i}}", daemon=True).start()
sys.stdin.readline()
"""

# The ticker: a pthread Python never sees (SCHED_FIFO where allowed), sleeping 1 ms at a time; the longest gap between
# two ticks (ns) goes to a file both sides map. The bench writes `reset` = 1 to start a new
# window; the ticker takes it back to 0 and starts counting from there.
TICKER_C = r"""
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
struct shared { uint64_t max_gap_ns, ticks, reset; };
static struct shared *shared;
static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}
static void *tick(void *unused) {
    struct timespec ms = {0, 1000000};
    uint64_t last = now_ns();
    (void)unused;
    for (;;) {
        nanosleep(&ms, NULL);
        uint64_t t = now_ns();
        if (__atomic_exchange_n(&shared->reset, 0, __ATOMIC_ACQ_REL))
            __atomic_store_n(&shared->max_gap_ns, 0, __ATOMIC_RELEASE);
        else if (t - last > __atomic_load_n(&shared->max_gap_ns, __ATOMIC_ACQUIRE))
            __atomic_store_n(&shared->max_gap_ns, t - last, __ATOMIC_RELEASE);
        __atomic_add_fetch(&shared->ticks, 1, __ATOMIC_RELEASE);
        last = t;
    }
    return NULL;
}
int ticker_start(const char *path) {
    int fd = open(path, O_RDWR);
    if (fd < 0) return -1;
    shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (shared == MAP_FAILED) return -1;
    pthread_t thread;
    if (pthread_create(&thread, NULL, tick, NULL)) return -1;
    /* A real-time ticker wakes on time on a busy machine: the idle gap stays near 1 ms, so
       short stops show. Returns 1 where that is not allowed (the idle gap says how much worse). */
    struct sched_param fifo = {.sched_priority = 1};
    return pthread_setschedparam(thread, SCHED_FIFO, &fifo) ? 1 : 0;
}
"""


class Ticker:
    """The bench's side of the target's ticker file: max_gap_ns, ticks, reset (u64 each)."""

    def __init__(self, path):
        with open(path, "wb") as f:
            f.write(bytes(4096))
        with open(path, "r+b") as f:
            self.map = mmap.mmap(f.fileno(), 4096)

    def _field(self, i):
        return struct.unpack_from("<Q", self.map, 8 * i)[0]

    def ticks(self):
        return self._field(1)

    def wait_ticks(self, n, limit=5.0):
        """Until the ticker has ticked n more times (False if it did not within `limit` s)."""
        start, deadline = self.ticks(), time.monotonic() + limit
        while self.ticks() < start + n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def reset(self):
        struct.pack_into("<Q", self.map, 16, 1)
        deadline = time.monotonic() + 5
        while self._field(2) and time.monotonic() < deadline:
            time.sleep(0.0005)

    def max_gap_ms(self):
        self.wait_ticks(2)  # the gap a stop made ends at the first tick after it
        return self._field(0) / 1e6

    @contextlib.contextmanager
    def window(self, gaps):
        """Appends the longest tick gap seen while the body ran to `gaps`."""
        self.reset()
        yield
        gaps.append(self.max_gap_ms())


def tools_venv(target_python):
    """build/bench-venv with pystack and py-spy (made with the target interpreter, as
    symbolize_bench.py makes it); (pystack, py-spy, description)."""
    venv = os.path.join(REPO, "build", "bench-venv")
    for py in (target_python, sys.executable):
        if all(os.path.exists(f"{venv}/bin/{t}") for t in ("pystack", "py-spy")):
            break
        if not os.path.exists(venv + "/bin/python"):
            sh(py, "-m", "venv", venv)
        if sh(venv + "/bin/python", "-m", "pip", "install", "-q", "pystack", "py-spy").returncode:
            shutil.rmtree(venv, ignore_errors=True)
    versions = [sh(f"{venv}/bin/{t}", "--version").stdout.strip() or f"{t} NOT INSTALLED"
                for t in ("pystack", "py-spy")]
    return f"{venv}/bin/pystack", f"{venv}/bin/py-spy", f"pystack {versions[0]}, {versions[1]} (build/bench-venv)"


def measure(cmd, runs, out, around=None, after=None):
    """Runs cmd once untimed, then `runs` times: (exit status of the last run, [(wall ms,
    cpu ms, max RSS MiB)] per timed run). `around()`: a context manager each timed run is made
    in; `after()`: called after every run (e.g. to delete what it wrote)."""
    samples, rc = [], None
    for i in range(runs + 1):
        with open(out, "w") as f, open(out + ".err", "w") as e, (around() if i and around else
                                                                  contextlib.nullcontext()):
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=f, stderr=e, env=TOOL_ENV)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        if i:
            samples.append((wall * 1000, (ru.ru_utime + ru.ru_stime) * 1000, ru.ru_maxrss / 1024))
        if after and i < runs:
            after()
    return rc, samples


def med(samples, k):
    return statistics.median(s[k] for s in samples)


def count_frames(kind, text):
    """Stack lines printed over all threads."""
    if kind == "py-spy":  # "    NAME (FILE:LINE)" / "    NAME (MODULE)" under "Thread TID ..."
        return len(re.findall(r"^ {4}\S.*\(.*\)$", text, re.M))
    try:
        if kind == "json":  # the merged stacks, as the text shows them
            return sum(len(t["frames"]) for t in json.loads(text)["threads"])
        return parse(kind, text, 0)[1]
    except (ValueError, KeyError, IndexError):
        return 0


def shows(text, names):
    """(which of `names` the output mentions, as "a b" with missing ones as "-a"; all?)"""
    found = [n for n in names if re.search(rf"\b{n}\b", text)]
    return " ".join(n if n in found else "-" + n for n in names), len(found) == len(names)


HEADER = (f"{'tool':<42}{'ok':<5}{'wall ms':>9}{'cpu ms':>8}{'RSS MiB':>9}{'stop ms':>9}{'max':>7}"
          f"{'frames':>8}  shows / file")


def row(label, ok, samples, gaps=None, frames="", extra=""):
    stop = f"{statistics.median(gaps):>9.1f}{max(gaps):>7.1f}" if gaps else f"{'':>9}{'':>7}"
    print(f"{label:<42}{'yes' if ok else 'FAIL':<5}{med(samples, 0):>9.1f}{med(samples, 1):>8.1f}"
          f"{max(s[2] for s in samples):>9.1f}{stop}{frames:>8}  {extra}", flush=True)


def verdict(name, ratio, limit):
    return f"{name} {ratio:.2f}x {'PASS' if ratio <= limit else 'MISS'}"


# --- core ---------------------------------------------------------------------------------

def crash_core(interp, work, threads):
    """One crash of CRASH (`threads` threads) with cores allowed: the core's path."""
    pattern = open("/proc/sys/kernel/core_pattern").read().strip()
    if pattern.startswith("|") or "/" in pattern:
        sys.exit(f"core_pattern is {pattern!r}: this bench needs a core file in the crash's directory")
    prepared = prepare_script(interp, CRASH.format(threads=threads), core=True)
    env = {k: v for k, v in prepared.env.items() if not k.startswith("CRASHCATCH")}
    p = subprocess.Popen(interp.command(prepared.argv, prepared.cwd), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.wait()
    d = prepared.host_dir(interp)
    cores = [os.path.join(d, f) for f in os.listdir(d) if f.startswith("core")]
    if p.returncode != -11 or not cores:
        sys.exit(f"no kernel core from the crash (exit {p.returncode}, core_pattern {pattern!r}, in {d})")
    core = os.path.join(work, f"core-{threads}")
    shutil.move(cores[0], core)
    SCRATCH.append(d)  # the script stays: the readers show its source lines
    return core


def bench_core(interp, args, work, pystack, pyspy, threads):
    core = crash_core(interp, work, threads)
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    native = sh(interp.venv_python, "-c", "import crashcatch.__main__ as m; print(m._SYMBOLIZER)").stdout.strip()
    tools = [  # label, parser kind, names the output must show, command
        ("crashcatch symbolize CORE", "text", ["deref_null", "crashing_callback"],
         [crashcatch, "symbolize", core]),
        ("  bare crashcatch-symbolize", "text", ["deref_null", "crashing_callback"],
         [native, "symbolize", core]),
        ("crashcatch symbolize --json CORE", "json", ["deref_null", "crashing_callback"],
         [crashcatch, "symbolize", "--json", core]),
        ("pystack core --native", "pystack", ["deref_null", "crashing_callback"],
         [pystack, "core", core, interp.python, "--native"]),
        ("py-spy dump --core (Python only)", "py-spy", ["crashing_callback"],
         [pyspy, "dump", "--core", core]),
        ("gdb thread apply all bt", "gdb-all", ["deref_null"],
         ["gdb", "-nx", "-batch", "-ex", "thread apply all bt", interp.python, core]),
    ]
    size = os.path.getsize(core)
    print(f"\n== core: kernel core of a crash in {interp.name} that never imported crashcatch "
          f"({threads} threads), {size / 2**20:.1f} MiB ({os.stat(core).st_blocks * 512 / 2**20:.1f} MiB on disk); "
          f"loadavg {os.getloadavg()[0]:.2f}")
    print(HEADER)
    res = {}
    for label, kind, names, cmd in tools:
        out = os.path.join(work, f"core-{threads}.out")
        rc, samples = measure(cmd, args.runs, out)
        text = open(out, errors="replace").read()
        shown, all_shown = shows(text, names)
        res[label] = samples
        row(label, rc == 0 and all_shown, samples, frames=str(count_frames(kind, text)), extra=shown
            + ("" if rc == 0 else f"  exit {rc}: {open(out + '.err').read().strip()[-200:]}"))
    ps, spy = res["pystack core --native"], res["py-spy dump --core (Python only)"]
    print("(frames: stack lines printed over all threads; the JSON has every frame, also the interpreter's "
          "the text hides)")
    # Issue 12: <= 0.5x pystack; issue 14: <= 0.1x at 100 threads and more.
    wall_limit = 0.1 if threads >= 100 else 0.5
    print(f"targets: crashcatch <= {wall_limit}x pystack in wall, <= 0.5x in RSS; no slower than py-spy (wall)")
    for label in ("crashcatch symbolize CORE", "  bare crashcatch-symbolize", "crashcatch symbolize --json CORE"):
        s = res[label]
        print(f"  {label.strip():<40} " + ", ".join([
            verdict("wall/pystack", med(s, 0) / med(ps, 0), wall_limit),
            verdict("RSS/pystack", max(x[2] for x in s) / max(x[2] for x in ps), 0.5),
            verdict("wall/py-spy", med(s, 0) / med(spy, 0), 1.0)]) + f" (cpu/pystack {med(s, 1) / med(ps, 1):.2f}x)")
    return [shlex.join(t[3]).replace(work, "$WORK") for t in tools]


# --- live ---------------------------------------------------------------------------------

def blocked_in_read(pid, n):
    """Whether n threads of pid are in read(2) (x86-64 syscall 0)."""
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                count += f.read().split()[0] == "0"
        except (OSError, IndexError):
            pass
    return count >= n


@contextlib.contextmanager
def waiting_process(interp, threads, work):
    """The WAITING script with `threads` workers, all blocked: (pid, Ticker)."""
    so = os.path.join(work, "ticker.so")
    if not os.path.exists(so):
        src = os.path.join(work, "ticker.c")
        open(src, "w").write(TICKER_C)
        sh("cc", "-O2", "-shared", "-fPIC", "-pthread", "-o", so, src, check=True)
    ticker_file = os.path.join(work, f"ticker-{threads}")
    ticker = Ticker(ticker_file)
    prepared = prepare_script(interp, WAITING.format(threads=threads))
    env = {k: v for k, v in prepared.env.items() if not k.startswith("CRASHCATCH")}
    env.update(TICKER_SO=so, TICKER_FILE=ticker_file)
    proc = subprocess.Popen(interp.command(prepared.argv, prepared.cwd), env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ticker.priority = proc.stdout.readline().strip()
        while not blocked_in_read(proc.pid, threads + 1):
            if proc.poll() is not None:
                sys.exit(f"the waiting process exited {proc.returncode}: {proc.stderr.read()[-500:]}")
            time.sleep(0.01)
        if not ticker.wait_ticks(10):
            sys.exit("the target's ticker thread does not tick")
        yield proc.pid, ticker
        if proc.poll() is not None:
            print(f"!! the target died during the runs (exit {proc.returncode})")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(prepared.host_dir(interp), ignore_errors=True)


def still_waiting(pid, n):
    """Whether the target is back in its reads (a detach may interrupt them for a moment)."""
    for _ in range(200):
        if not os.path.exists(f"/proc/{pid}"):
            return False
        if blocked_in_read(pid, n):
            return True
        time.sleep(0.01)
    return False


def stopped_ms_from_dump(path, stdout):
    """threads_stopped_max_ms from the dump's metadata (dumpcheck), else from the dump line."""
    if os.path.exists(DUMPCHECK):
        r = sh(DUMPCHECK, path)
        if r.returncode == 0:
            return json.loads(r.stdout)["metadata"].get("threads_stopped_max_ms")
    m = re.search(r"stopped for at most ([\d.]+) ms", stdout)
    return float(m.group(1)) if m else None


def has_nonblocking(crashcatch):
    """Whether this build's `crashcatch symbolize --pid` takes --nonblocking (another branch
    adds it): its wrapper or the dump helper mention the option."""
    main = sh(os.path.join(os.path.dirname(crashcatch), "python"), "-c",
              "import crashcatch.__main__ as m, inspect; print(inspect.getsource(m))").stdout
    return "--nonblocking" in main


def bench_live(interp, args, work, pystack, pyspy, threads):
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    with waiting_process(interp, threads, work) as (pid, ticker):
        idle = []
        for _ in range(args.runs):
            with ticker.window(idle):
                time.sleep(0.3)
        dump, gcore = os.path.join(work, "live.dmp"), os.path.join(work, "gcore")
        tools = [  # label, parser kind (or "file"), names the output must show, command
            ("crashcatch symbolize --pid", "text", ["wait_in_c", "call_back"],
             [crashcatch, "symbolize", "--pid", str(pid)]),
            ("crashcatch symbolize --pid --nonblocking", "text", ["wait_in_c", "call_back"],
             [crashcatch, "symbolize", "--pid", str(pid), "--nonblocking"]),
            ("pystack remote --native", "pystack", ["wait_in_c", "call_back"],
             [pystack, "remote", str(pid), "--native"]),
            ("py-spy dump --native", "py-spy", ["wait_in_c", "call_back"],
             [pyspy, "dump", "--pid", str(pid), "--native"]),
            ("crashcatch dump PID", "file", [], [crashcatch, "dump", str(pid), "-o", dump]),
            ("gcore", "file", [], ["gcore", "-o", gcore, str(pid)]),
        ]
        print(f"\n== live: {interp.name}, {threads} Python threads in call_back -> wait_in_c -> read, main "
              f"in readline, + the ticker thread; loadavg {os.getloadavg()[0]:.2f}")
        print(f"stop ms = longest gap between the target's 1 ms ticks ({ticker.priority}) while the tool ran "
              f"(median, max); idle 0.3 s: {statistics.median(idle):.1f}, {max(idle):.1f}")
        print(HEADER)
        res = {}
        for label, kind, names, cmd in tools:
            if "--nonblocking" in cmd and not has_nonblocking(crashcatch):
                print(f"{label:<42}n/a  (not in this build)")
                continue
            out, gaps, files = os.path.join(work, "live.out"), [], []

            def remove_outputs():
                """Notes the size (and the dump's own pause) of what the run wrote, deletes it."""
                for f in [dump] + [os.path.join(work, g) for g in os.listdir(work) if g.startswith("gcore")]:
                    if os.path.exists(f):
                        files.append((os.path.getsize(f), os.stat(f).st_blocks * 512,
                                      stopped_ms_from_dump(f, open(out).read()) if f == dump else None))
                        os.unlink(f)

            rc, samples = measure(cmd, args.runs, out, around=lambda: ticker.window(gaps), after=remove_outputs)
            text = open(out, errors="replace").read()
            remove_outputs()
            alive = still_waiting(pid, threads + 1)
            if kind == "file":
                size, disk, _ = files[-1] if files else (0, 0, None)
                extra = f"{size / 2**20:.2f} MiB ({disk / 2**20:.2f} on disk)"
                own = [f[2] for f in files[1:] if f[2] is not None]  # the timed runs'
                if own:
                    extra += f"; its threads_stopped_max_ms {statistics.median(own):.1f}, {max(own):.1f}"
                ok, frames = rc == 0 and bool(files), ""
            else:
                (extra, all_shown), frames = shows(text, names), str(count_frames(kind, text))
                ok = rc == 0 and all_shown
            if rc:
                extra += f"  exit {rc}: {open(out + '.err').read().strip()[-200:]}"
            row(label, ok and alive, samples, gaps, frames, extra + ("" if alive else "  TARGET NOT WAITING AFTER"))
            res[label] = (med(samples, 0), statistics.median(gaps))
        cc = res["crashcatch symbolize --pid"]
        print("crashcatch symbolize --pid: " + ", ".join(
            f"wall {cc[0] / res[other][0]:.2f}x and stop {cc[1] / res[other][1]:.2f}x {other.split()[0]}'s"
            for other in ("pystack remote --native", "py-spy dump --native")))
        return [shlex.join(t[3]).replace(work, "$WORK").replace(str(pid), "PID") for t in tools]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--interp", default="pyenv-3.12", help="prefix of a prepared host interpreter's name")
    ap.add_argument("--threads", default="5,100", help="Python thread counts of the live process")
    ap.add_argument("--core-threads", default="5", help="thread counts of the crashed process (core)")
    ap.add_argument("--only", choices=("core", "live"))
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    interp = host_interpreter(args.interp)
    pystack, pyspy, versions = tools_venv(interp.python)
    work = tempfile.mkdtemp(prefix="crashcatch-reach-")
    git = sh("git", "-C", REPO, "rev-parse", "--short", "HEAD").stdout.strip()
    print(f"{args.runs} timed runs per tool after 1 warm-up (medians; RSS: largest), tree {git}, "
          f"loadavg {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"  interpreter {interp.name} {interp.python}; readers: crashcatch in {interp.venv_python}'s venv, "
          f"{versions}, {sh('gdb', '--version').stdout.splitlines()[0]}")
    commands = []
    try:
        if args.only != "live":
            for n in map(int, args.core_threads.split(",")):
                commands += bench_core(interp, args, work, pystack, pyspy, n)
        if args.only != "core":
            for n in map(int, args.threads.split(",")):
                commands += bench_live(interp, args, work, pystack, pyspy, n)
    finally:
        print("\ncommands:\n  " + "\n  ".join(dict.fromkeys(commands)))
        print(f"  WORK={work} (and the crash script in {' '.join(SCRATCH)})" if args.keep else "", end="")
        if not args.keep:
            for d in [work] + SCRATCH:
                shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
