"""Minidump size and cost, side by side with a kernel-style core of the same process.

    python bench/minidump_bench.py [--python VENV_PYTHON] [--ext-dir DIR]

1. A typical crash: 4 threads, ~50 Python frames on the crashing thread. Reports the
   minidump's size and the core `gcore` writes of the same process (paused just before the
   crash), and the ratio.
2. Live dumps with 10 and 100 threads, taken three ways: `write_minidump()`, a
   `register()`ed signal the process sends itself (wall: until the report names the dump),
   and `crashcatch-dump --pid` from outside. Each prints the caller's wall time, the helper's
   CPU time (user+sys) and the longest stall seen by two tickers in the process: a C thread
   (bench/reach_bench.py's, loaded with ctypes: no GIL involved, it shows the ptrace stop)
   and a Python thread (it also waits for the GIL). Medians of --runs runs; the idle
   tickers' longest gap is the floor of the measurement.
3. With --strace: the helper's process_vm_readv calls per dump at 10 and 100 threads.
"""
import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import statistics
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

CRASH = """
import os, sys, threading, signal
import crashcatch, buggyext
crashcatch.enable()
ready = threading.Event()
def idle(): ready.wait()
for _ in range(3):
    threading.Thread(target=idle, daemon=True).start()
def deep(n):
    if n == 0:
        print("ready", flush=True)
        sys.stdin.readline()        # paused here while gcore runs
        return buggyext.segfault()
    return deep(n - 1)
deep(48)
"""

LIVE = """
import ctypes, mmap, os, resource, signal, struct, sys, threading, time, crashcatch
threads, how = int(sys.argv[1]), sys.argv[2]
ctypes.CDLL(os.environ["TICKER_SO"]).ticker_start(os.environ["TICKER_FILE"].encode())
with open(os.environ["TICKER_FILE"], "r+b") as f:
    shared = mmap.mmap(f.fileno(), 4096)
crashcatch.enable(live_dump_interval=0)
if how == "signal":
    report = open(os.environ["TICKER_FILE"] + ".report", "w+")
    crashcatch.register(signal.SIGUSR1, file=report, minidump=True)
stop = threading.Event()
gaps = []
def ticker():
    last = time.perf_counter()
    while not stop.is_set():
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        time.sleep(0.0002)
workers = [threading.Thread(target=ticker)] + [threading.Thread(target=stop.wait) for _ in range(threads - 3)]
for t in workers: t.start()
def c_gap_reset():
    struct.pack_into("<Q", shared, 16, 1)
    while struct.unpack_from("<Q", shared, 16)[0]: time.sleep(0.0005)
def c_gap():
    ticks = struct.unpack_from("<Q", shared, 8)[0]
    while struct.unpack_from("<Q", shared, 8)[0] < ticks + 2: time.sleep(0.0005)
    return struct.unpack_from("<Q", shared, 0)[0] / 1e6
time.sleep(0.2)
def window(take):
    c_gap_reset()
    gaps.clear()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    take()
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(0.03)
    cpu_ms = (after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime) * 1000
    return took * 1000, cpu_ms, c_gap(), max(gaps) * 1000
idle = window(lambda: time.sleep(0.03))
if how == "external":
    print("ready", flush=True)
    sys.stdin.readline()
    result = (0.0, 0.0, c_gap(), max(gaps) * 1000)
elif how == "signal":
    def signal_and_wait():
        # Until the report's last line names the dump (the handler may write it later).
        os.kill(os.getpid(), signal.SIGUSR1)
        while "minidump" not in open(report.name).read(): time.sleep(0.0002)
    result = window(signal_and_wait)
else:
    result = window(crashcatch.write_minidump)
stop.set()
for t in workers: t.join()
print(" ".join(f"{v:.2f}" for v in result + idle[2:]))
"""

LIVE_HOW = {"requested": "write_minidump()", "signal": "register()ed signal to self",
            "external": "crashcatch-dump --pid"}


def live_run(python, script, threads, how, env, helper, strace=None):
    """One live dump: (wall ms, helper cpu ms, C ticker stall ms, Python ticker stall ms, C idle
    gap, Python idle gap); with `strace` (a file), the helper's process_vm_readv calls too."""
    cmd = [python, script, str(threads), how]
    if strace and how != "external":
        cmd = ["strace", "-f", "-qq", "-e", "trace=process_vm_readv", "-o", strace] + cmd
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, text=True)
    ext = None
    if how == "external":
        assert p.stdout.readline().strip() == "ready"
        pid = p.pid
        wrap = ["strace", "-f", "-qq", "-e", "trace=process_vm_readv", "-o", strace] if strace else []
        t0 = time.perf_counter()
        q = subprocess.Popen(wrap + [helper, "--pid", str(pid), "-o", os.path.join(env["CRASHCATCH_DUMP_DIR"],
                             f"ext-{pid}.dmp")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, _, ru = os.wait4(q.pid, 0)
        ext = ((time.perf_counter() - t0) * 1000, (ru.ru_utime + ru.ru_stime) * 1000)
        p.stdin.write("\n")
        p.stdin.flush()
    out, err = p.communicate(timeout=120)
    values = [float(v) for v in out.split()[-6:]]
    if len(values) != 6:
        sys.exit(f"the live-dump script failed: {err}")
    if ext:
        values[:2] = ext
    if strace:
        values.append(helper_reads(strace))
    return values


def helper_reads(trace):
    """process_vm_readv calls in an strace -f log made by processes reading another one."""
    n = 0
    for line in open(trace):
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].startswith("process_vm_readv("):
            if parts[1][len("process_vm_readv("):].split(",", 1)[0] != parts[0]:
                n += 1
    return n


def ticker_so(work):
    """bench/reach_bench.py's C ticker, compiled here."""
    from reach_bench import TICKER_C
    src, so = os.path.join(work, "ticker.c"), os.path.join(work, "ticker.so")
    open(src, "w").write(TICKER_C)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so, src, "-lpthread"], check=True)
    return so


def bench_live(args, work, env):
    live = os.path.join(work, "live.py")
    open(live, "w").write(LIVE)
    env = dict(env, TICKER_SO=ticker_so(work), TICKER_FILE=os.path.join(work, "ticker"))
    with open(env["TICKER_FILE"], "wb") as f:
        f.write(bytes(4096))
    helper = os.path.join(os.path.dirname(subprocess.run(
        [args.python, "-c", "import crashcatch; print(crashcatch.__file__)"], capture_output=True, text=True,
        env=env).stdout.strip()), "_bin", "crashcatch-dump")
    print(f"live dumps, median of {args.runs} (ms; stall = longest gap between a ticker's ticks, "
          "idle = the same with no dump)")
    print(f"  {'threads / how':<40}{'wall':>8}{'cpu':>8}{'C stall':>9}{'Py stall':>10}{'C idle':>8}{'Py idle':>9}")
    for threads in args.threads:
        for how in args.how:
            runs = [live_run(args.python, live, threads, how, env, helper) for _ in range(args.runs)]
            cols = [statistics.median(r[i] for r in runs) for i in range(6)]
            print(f"  {f'{threads:>4}  {LIVE_HOW[how]}':<40}" + "".join(
                f"{v:>{w}.1f}" for v, w in zip(cols, (8, 8, 9, 10, 8, 9))), flush=True)
    if args.strace:
        print("the helper's process_vm_readv calls per dump (strace -f)")
        for threads in args.threads:
            for how in ("requested", "external"):
                n = live_run(args.python, live, threads, how, env, helper, os.path.join(work, "trace"))[-1]
                print(f"  {f'{threads:>4}  {LIVE_HOW[how]}':<40}{n:>8}", flush=True)


def bench_crash(args, work, env):
    script = os.path.join(work, "crash.py")
    open(script, "w").write(CRASH)
    p = subprocess.Popen([args.python, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=env, text=True)
    assert p.stdout.readline().strip() == "ready"
    core = os.path.join(work, "core")
    have_gcore = shutil.which("gcore") is not None
    if have_gcore:
        subprocess.run(["gcore", "-o", core, str(p.pid)], capture_output=True, timeout=120)
    p.stdin.write("\n")
    p.stdin.flush()
    p.wait()
    dumps = glob.glob(os.path.join(work, "dumps", "*.dmp"))
    dump_size = os.path.getsize(dumps[0]) if dumps else 0
    cores = glob.glob(core + "*")
    core_size = os.path.getsize(cores[0]) if cores else 0
    print(f"typical crash (4 threads, 50 Python frames), {args.python}")
    print(f"  {'minidump':<24}{dump_size / 1024:10.1f} KiB")
    if core_size:
        print(f"  {'gcore core':<24}{core_size / 1024:10.1f} KiB")
        print(f"  {'minidump / core':<24}{100 * dump_size / core_size:10.2f} %")
    else:
        print("  gcore core: not measured (gdb's gcore is not installed)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=os.path.join(REPO, "build", "demo-venv", "bin", "python"))
    ap.add_argument("--ext-dir", default=os.path.join(REPO, "build", "demo-ext"))
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=lambda v: [int(t) for t in v.split(",")], default=[10, 100])
    ap.add_argument("--strace", action="store_true", help="count the helper's reads (needs strace)")
    ap.add_argument("--only-live", action="store_true")
    ap.add_argument("--how", type=lambda v: v.split(","), default=list(LIVE_HOW),
                    help="live dumps to take: " + ",".join(LIVE_HOW))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="crashcatch-bench-")
    env = dict(os.environ, PYTHONPATH=args.ext_dir, CRASHCATCH_DUMP_DIR=os.path.join(work, "dumps"))
    os.makedirs(env["CRASHCATCH_DUMP_DIR"])
    if not args.only_live:
        bench_crash(args, work, env)
    bench_live(args, work, env)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
