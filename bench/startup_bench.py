"""What having crashcatch installed costs every Python start-up when CRASHCATCH is unset
(its crashcatch-autoenable.pth line runs in every process): `python -c pass` in two fresh
venvs of the same interpreter, made the same way, one with the crashcatch wheel installed.

    python bench/startup_bench.py --wheel WHEEL [--python PYTHON] [--runs N]

Prints the median and p90 of each (each round runs both, in random order), what
`-X importtime` shows crashcatch importing (nothing, when the variable is unset), and the
.pth line's own cost as site.py pays it (compiled and run once per site directory).
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


# Runs in the venv with crashcatch: the mean cost of site.py's handling of our .pth line.
_LINE_COST = """
import os, sysconfig, timeit
line = open(os.path.join(sysconfig.get_paths()["purelib"], "crashcatch-autoenable.pth")).read()
n = 2000
print(f"{timeit.timeit(lambda: exec(line), number=n) / n * 1e6:.1f} us")
"""


def make_venv(python, path, wheel=None):
    subprocess.run([python, "-m", "venv", path], check=True)
    venv_python = os.path.join(path, "bin", "python")
    if wheel:
        subprocess.run([venv_python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
                        "--no-deps", wheel], check=True)
    return venv_python


def start_once(python, env):
    start = time.perf_counter()
    subprocess.run([python, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - start


def summary(name, times):
    ms = sorted(t * 1000 for t in times)
    p90 = ms[int(len(ms) * 0.9) - 1]
    print(f"  {name:28} median {statistics.median(ms):7.2f} ms   p90 {p90:7.2f} ms")
    return statistics.median(ms)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", required=True, help="the crashcatch wheel to install")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to make both venvs with")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHCATCH") and k != "PYTHONPATH"}
    tmp = tempfile.mkdtemp(prefix="crashcatch-startup-")
    try:
        without = make_venv(args.python, os.path.join(tmp, "without"))
        with_cc = make_venv(args.python, os.path.join(tmp, "with"), os.path.abspath(args.wheel))
        for python in (without, with_cc):  # warm the page cache and the .pyc files
            start_once(python, env)
        times = {without: [], with_cc: []}
        for _ in range(args.runs):
            order = list(times)
            random.shuffle(order)
            for python in order:
                times[python].append(start_once(python, env))
        print(f"`python -c pass`, {args.runs} runs each, CRASHCATCH unset ({args.python}):")
        base = summary("without crashcatch", times[without])
        installed = summary("with crashcatch installed", times[with_cc])
        print(f"  difference of the medians: {installed - base:+.2f} ms")
        imported = subprocess.run([with_cc, "-X", "importtime", "-c", "pass"], env=env, capture_output=True,
                                  text=True).stderr
        ours = [line for line in imported.splitlines() if "crashcatch" in line]
        print("  crashcatch modules imported at start-up: " + (", ".join(ours) if ours else "none"))
        line_cost = subprocess.run(
            [with_cc, "-c", _LINE_COST], env=env, capture_output=True, text=True, check=True).stdout.strip()
        print(f"  the .pth line itself (compile + exec, as site.py runs it): {line_cost}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
