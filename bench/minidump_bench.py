"""Minidump size and cost, side by side with a kernel-style core of the same process.

    python bench/minidump_bench.py [--python VENV_PYTHON] [--ext-dir DIR]

1. A typical crash: 4 threads, ~50 Python frames on the crashing thread. Reports the
   minidump's size and the core `gcore` writes of the same process (paused just before the
   crash), and the ratio.
2. A live dump (write_minidump()) with 10 threads: its wall time and the longest stall
   seen by a ticker thread (an upper bound of the pause).
"""
import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

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
import threading, time, crashcatch
stop = threading.Event()
gaps = []
def ticker():
    last = time.perf_counter()
    while not stop.is_set():
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        time.sleep(0.0002)
threads = [threading.Thread(target=ticker)] + [threading.Thread(target=stop.wait) for _ in range(8)]
for t in threads: t.start()
time.sleep(0.2)
gaps.clear()
t0 = time.perf_counter()
path = crashcatch.write_minidump()
took = time.perf_counter() - t0
time.sleep(0.05)
stop.set()
for t in threads: t.join()
print(f"{took * 1000:.1f} {max(gaps) * 1000:.1f} {__import__('os').path.getsize(path)}")
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=os.path.join(REPO, "build", "demo-venv", "bin", "python"))
    ap.add_argument("--ext-dir", default=os.path.join(REPO, "build", "demo-ext"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="crashcatch-bench-")
    env = dict(os.environ, PYTHONPATH=args.ext_dir, CRASHCATCH_DUMP_DIR=os.path.join(work, "dumps"))
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

    live = os.path.join(work, "live.py")
    open(live, "w").write(LIVE)
    runs = [subprocess.run([args.python, live], capture_output=True, text=True, env=env, timeout=120).stdout.split()
            for _ in range(5)]
    runs = sorted((float(a), float(b), int(c)) for a, b, c in runs)
    took, gap, size = runs[len(runs) // 2]
    print("live dump, 10 threads (median of 5)")
    print(f"  {'write_minidump() wall':<24}{took:10.1f} ms")
    print(f"  {'longest ticker stall':<24}{gap:10.1f} ms")
    print(f"  {'dump size':<24}{size / 1024:10.1f} KiB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
