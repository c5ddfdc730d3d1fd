"""What enable() costs every thread started afterwards: `threading.Thread(target=noop)`
started and joined N times, with no crash handler, after faulthandler.enable(), and after
crashcatch.enable() for each crashcatch given (e.g. the build before and after a change).

    python bench/thread_start_bench.py [--python PYTHON] [--crashcatch LABEL=DIR ...]
                                       [--threads N] [--runs R] [--no-strace] [--no-callgrind]

`--crashcatch LABEL=DIR`: DIR is put first on PYTHONPATH (an unpacked wheel or a
site-packages holding crashcatch); without it, the crashcatch the interpreter imports.
Prints, per setup, the median over R runs of the wall and CPU (user+sys of the whole
process) time per thread start, their ratios to "no handler", the system calls per thread
start (strace -c -f, N threads minus 0 threads) and the instructions per thread start
(valgrind --tool=callgrind, likewise), which do not depend on the machine's load.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

# The measured program: argv = setup, thread count; prints wall and CPU seconds of the loop.
_CHILD = """
import sys, threading, time
setup, n = sys.argv[1], int(sys.argv[2])
if setup == "faulthandler":
    import faulthandler
    faulthandler.enable()
elif setup == "crashcatch":
    import crashcatch
    crashcatch.enable(minidump=False)

def noop():
    pass

for _ in range(20):  # warm up: first-use allocations, pools filled once
    t = threading.Thread(target=noop)
    t.start()
    t.join()
wall, cpu = time.perf_counter(), time.process_time()
for _ in range(n):
    t = threading.Thread(target=noop)
    t.start()
    t.join()
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def child_env(pythonpath):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHCATCH") and k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def run_child(python, script, setup, n, env, prefix=()):
    r = subprocess.run([*prefix, python, script, setup, str(n)], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{setup}: the child failed ({r.returncode}):\n{r.stderr}")
    return r


def syscalls(python, script, setup, n, env, tmp):
    """Total system calls of the child, and the per-name counts, as strace -c -f counts them."""
    out = os.path.join(tmp, "strace.txt")
    run_child(python, script, setup, n, env, ["strace", "-f", "-c", "-o", out])
    counts = {}
    for line in open(out):
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return counts


def instructions(python, script, setup, n, env, tmp):
    out = os.path.join(tmp, "callgrind.out")
    r = run_child(python, script, setup, n, env,
                  ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
    return int(re.search(r"Collected : (\d+)", r.stderr).group(1))


def per_thread(measure, python, script, setup, n, env, tmp):
    """(measure with n threads - measure with none) / n: the cost of one thread start."""
    with_threads, without = (measure(python, script, setup, k, env, tmp) for k in (n, 0))
    if isinstance(with_threads, dict):
        return {name: (count - without.get(name, 0)) / n for name, count in with_threads.items()
                if count != without.get(name, 0)}
    return (with_threads - without) / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--crashcatch", action="append", default=[], metavar="LABEL=DIR",
                        help="a crashcatch to measure (repeatable); default: the one the interpreter imports")
    parser.add_argument("--threads", type=int, default=2000, help="thread starts per timed run")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-strace", action="store_true")
    parser.add_argument("--no-callgrind", action="store_true")
    args = parser.parse_args()
    setups = [("no handler", "none", None), ("faulthandler.enable()", "faulthandler", None)]
    for spec in args.crashcatch or ["crashcatch=" + ""]:
        label, _, path = spec.partition("=")
        setups.append((f"crashcatch.enable() {label}".strip(), "crashcatch", os.path.abspath(path) if path else None))
    tmp = tempfile.mkdtemp(prefix="crashcatch-threadbench-")
    try:
        script = os.path.join(tmp, "child.py")
        with open(script, "w") as f:
            f.write(_CHILD)
        walls = {label: [] for label, _, _ in setups}
        cpus = {label: [] for label, _, _ in setups}
        for _ in range(args.runs):  # interleaved, so load changes hit every setup alike
            for label, setup, path in setups:
                wall, cpu = map(float, run_child(args.python, script, setup, args.threads,
                                                 child_env(path)).stdout.split())
                walls[label].append(wall / args.threads * 1e6)
                cpus[label].append(cpu / args.threads * 1e6)
        base_wall, base_cpu = statistics.median(walls["no handler"]), statistics.median(cpus["no handler"])
        print(f"Thread start+join, {args.threads} per run, median of {args.runs} runs ({args.python}):")
        print(f"  {'setup':34} {'wall us':>8} {'ratio':>6} {'CPU us':>8} {'ratio':>6} {'syscalls':>9} {'instr.':>9}")
        details = []
        for label, setup, path in setups:
            wall, cpu = statistics.median(walls[label]), statistics.median(cpus[label])
            calls = instr = "-"
            if not args.no_strace and shutil.which("strace"):
                counts = per_thread(syscalls, args.python, script, setup, 200, child_env(path), tmp)
                calls = f"{sum(counts.values()):.1f}"
                details.append((label, counts))
            if not args.no_callgrind and shutil.which("valgrind"):
                instr = f"{per_thread(instructions, args.python, script, setup, 100, child_env(path), tmp):.0f}"
            print(f"  {label:34} {wall:8.1f} {wall / base_wall:6.3f} {cpu:8.1f} {cpu / base_cpu:6.3f}"
                  f" {calls:>9} {instr:>9}")
        for label, counts in details:
            shown = ", ".join(f"{name} {count:.2f}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1])
                              if count >= 0.05)
            print(f"  syscalls per thread start, {label}: {shown}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
