"""Reading one crash three ways: `crashcatch symbolize` on its minidump vs pystack and gdb on a
core file of the very same crash. Wall time, peak RSS, file sizes; run by hand, not a test.

    python3 bench/symbolize_bench.py [--runs 5] [--interp pyenv-3.13.0]
                                     [--core-method auto|kernel|gdb] [--no-build] [--keep]

The crash: the pyenv interpreter with the most DWARF (preferring --enable-shared builds, which
load libpython3.X.so) with crashcatch enabled and examples/buggyext (-g) loaded; 4 Python
threads wait on an Event while the main thread goes Python -> C -> Python -> C
(buggyext.call_back(callback), callback calls buggyext.segfault(3)) and faults in deref_null.
crashcatch writes its minidump; the same crash also leaves a core:
  kernel: plain core_pattern + RLIMIT_CORE unlimited: the kernel writes it when crashcatch's
          handler re-raises the signal (so the crashing thread's innermost frames are the
          handler's, as a production core of a crashcatch-enabled process would show);
  gdb:    (auto, when core_pattern pipes) gdb attaches, stops at the SIGSEGV, `gcore`s, then
          detaches passing the signal on to crashcatch (whose dump helper must ptrace it).
Each reader then runs N times after one untimed warm-up (page cache warm), offline
(DEBUGINFOD_URLS empty): median wall and CPU (user+sys) time, max RSS (wait4's ru_maxrss),
frames printed, and whether the crashing thread's innermost frames reach deref_null (exit 0
required). Project target: crashcatch <= 0.5x pystack in wall time and RSS. Wall time on a
busy 2-CPU machine is noisy: compare the CPU column too, and the loadavg printed on top.

Self-contained: builds target/release/crashcatch-symbolize (cargo; --no-build skips),
pip-installs pystack into build/bench-venv, and uses the interpreter's venv from
build/envs.json (tools/test.sh) or else prepares one (wheel + buggyext) in build/bench-target.
"""
import argparse, glob, itertools, json, os, re, resource, shlex, shutil, statistics, subprocess, sys, tempfile, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(REPO, "build")
SYMBOLIZER = os.path.join(REPO, "target", "release", "crashcatch-symbolize")
TOOL_ENV = dict(os.environ, DEBUGINFOD_URLS="", NO_COLOR="1")  # offline, plain text

CRASH = """
import os, threading, time, crashcatch, buggyext
crashcatch.enable()
stop, ready = threading.Event(), threading.Barrier(5)
for i in range(4):
    threading.Thread(target=lambda: (ready.wait(), stop.wait()), name=f"idle-{i}").start()
ready.wait()
if os.environ.get("WAIT_FOR_TRACER"):      # gdb method: crash only once gdb is attached
    print("ready", flush=True)
    while open("/proc/self/status").read().split("TracerPid:")[1].split()[0] == "0":
        time.sleep(0.01)
def callback(): return buggyext.segfault(3)
def outer(): return buggyext.call_back(callback)
outer()
"""


def sh(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def candidates():
    """Every pyenv CPython >= 3.9 (and the system python3): shared?, DWARF, prepared venv."""
    envs = os.path.join(BUILD, "envs.json")
    prepared = ({e["python"]: e for e in json.load(open(envs))["interpreters"] if not e["root"]}
                if os.path.exists(envs) else {})
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    exes = [e for e in glob.glob(pyenv + "/versions/3.*/bin/python3.*") if re.search(r"/python3\.\d+$", e)]
    out = []
    for exe in exes + [os.path.realpath("/usr/bin/python3")]:
        ver = sh(exe, "-c", "import platform; print(platform.python_version())").stdout.strip()
        if not ver or tuple(map(int, ver.split(".")[:2])) < (3, 9):
            continue
        m = re.search(r"(libpython3\S*\.so\S*) => (\S+)", sh("ldd", exe).stdout)
        elf = m.group(2) if m else exe  # where the interpreter's code (and DWARF) is
        d = re.search(r"\.debug_info\s+\S+\s+\S+\s+\S+\s+([0-9a-f]+)", sh("readelf", "-SW", elf).stdout)
        out.append(dict(python=exe, name=("pyenv-" if exe.startswith(pyenv) else "system-") + ver,
                        libpython=m and m.group(1), dwarf_file=elf, dwarf=int(d.group(1), 16) if d else 0,
                        prepared=prepared.get(exe)))
    return out


def target_env(c):
    """(venv python with crashcatch, dir with buggyext) for interpreter c, prepared if need be."""
    p = c["prepared"]
    if p and os.path.exists(p["venv_python"]) and glob.glob(p["ext_dir"] + "/buggyext*.so"):
        return p["venv_python"], p["ext_dir"]
    base = os.path.join(BUILD, "bench-target", c["name"])
    venv_py, ext = base + "/venv/bin/python", base + "/ext"
    if not os.path.exists(venv_py) or sh(venv_py, "-c", "import crashcatch").returncode != 0:
        if not glob.glob(BUILD + "/wheels/crashcatch-*.whl"):
            print("building the crashcatch wheel (tools/common.sh build_wheel)...", flush=True)
            sh("bash", "-c", f'source "{REPO}/tools/common.sh"; tools_venv; build_wheel', check=True)
        sh(c["python"], "-m", "venv", base + "/venv", check=True)
        sh(venv_py, "-m", "pip", "install", "-q", "--no-deps", glob.glob(BUILD + "/wheels/crashcatch-*.whl")[0],
           check=True)
    sh(venv_py, os.path.join(REPO, "examples", "build_ext.py"), ext, check=True)
    return venv_py, ext


def pystack_setup(target_python):
    venv = os.path.join(BUILD, "bench-venv")
    cfg = open(venv + "/pyvenv.cfg").read() if os.path.exists(venv + "/pyvenv.cfg") else ""
    if not os.path.exists(venv + "/bin/pystack") or f"home = {os.path.dirname(target_python)}\n" not in cfg:
        for py in (target_python, sys.executable):  # the crashed interpreter first
            shutil.rmtree(venv, ignore_errors=True)
            if (sh(py, "-m", "venv", venv).returncode == 0 and
                    sh(venv + "/bin/python", "-m", "pip", "install", "-q", "pystack").returncode == 0):
                break
    ver = sh(venv + "/bin/pystack", "--version").stdout.strip() or "NOT INSTALLED"
    return venv + "/bin/pystack", f"pystack {ver} (build/bench-venv, {os.path.realpath(venv + '/bin/python')})"


def crash(venv_py, ext, work, method):
    """Crash once; return (pid, minidump, core, how the core was made)."""
    dumps, script = os.path.join(work, "dumps"), os.path.join(work, "crash.py")
    os.makedirs(dumps)
    open(script, "w").write(CRASH)
    env = dict(os.environ, PYTHONPATH=ext, CRASHCATCH_DUMP_DIR=dumps)
    pattern = open("/proc/sys/kernel/core_pattern").read().strip()
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    why = ""
    if method in ("auto", "kernel") and not pattern.startswith("|"):
        start = time.time()
        p = subprocess.Popen([venv_py, script], cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (hard, hard)))
        p.wait()
        where = os.path.join(work, re.sub(r"%.", "*", pattern) + "*")
        cores = [f for f in glob.glob(where) if os.path.isfile(f) and os.path.getmtime(f) >= start - 1]
        if cores and p.returncode == -11:
            return p.pid, glob.glob(dumps + "/*.dmp"), cores[0], (
                f"kernel core (core_pattern {pattern!r}, RLIMIT_CORE {'unlimited' if hard < 0 else hard}), "
                "written when crashcatch's handler re-raised SIGSEGV")
        why = f" (no kernel core: core_pattern {pattern!r}, exit {p.returncode})"
        if method == "kernel":
            sys.exit("kernel core not possible" + why)
        [os.unlink(f) for f in glob.glob(dumps + "/*")]  # retry the crash under gdb
    elif pattern.startswith("|"):
        why = f" (core_pattern pipes: {pattern!r})"
    p = subprocess.Popen([venv_py, script], cwd=work, env=dict(env, WAIT_FOR_TRACER="1"), stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, hard)))
    assert p.stdout.readline().strip() == "ready"
    core = os.path.join(work, "core")
    g = sh("gdb", "-batch", "-nx", "-p", str(p.pid), "-ex", "continue", "-ex", f"gcore {core}", "-ex", "detach")
    if g.returncode:
        p.kill()
    if p.wait(timeout=60) != -11:
        sys.exit(f"gdb method failed (exit {p.returncode}): {g.stderr[-500:]}")
    return p.pid, glob.glob(dumps + "/*.dmp"), core, "gdb attach + gcore at the SIGSEGV, then detach" + why


def measure(cmd, runs, out):
    samples, rc = [], None
    for i in range(runs + 1):  # run 0: warm-up
        with open(out, "w") as f, open(out + ".err", "w") as e:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=f, stderr=e, env=TOOL_ENV)
            _, status, ru = os.wait4(p.pid, 0)
            dt = time.perf_counter() - t0
        p.returncode = rc = os.waitstatus_to_exitcode(status)
        if i:
            samples.append((dt * 1000, (ru.ru_utime + ru.ru_stime) * 1000, ru.ru_maxrss / 1024))
    return (rc, statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples),
            max(s[2] for s in samples))


def parse(kind, text, tid):
    """(crashing thread's function names innermost first, frames printed over all threads)."""
    if kind == "json":
        d = json.loads(text)
        t = [t for t in d["threads"] if t["tid"] == tid and t["crashed"]]
        return ([f["function"] or "??" for f in t[0]["native_frames"]] if t else [],
                sum(len(t["native_frames"]) + len(t.get("python_frames", t["frames"])) for t in d["threads"]))
    if kind == "text":  # native: "  [0xADDR ]NAME[ at FILE:LINE] (MODULE+0xOFF)[ [inlined]]"; Python: '  File "'
        b = [b for b in re.split(r"\n(?=Thread \d+ )", text) if re.match(rf"Thread {tid} .*\(crashed", b)]
        native = r"^  (?:0x[0-9a-f]+ )?(.+?)(?: at .+?)? \([^()\s]+\+0x[0-9a-f]+\)(?: \[inlined\])?$"
        names = re.findall(native, b[0], re.M)[::-1] if b else []
        return names, len(re.findall(native, text, re.M)) + len(re.findall(r'^  File "', text, re.M))
    if kind == "pystack":
        b = [b for b in re.split(r"\n(?=Traceback for thread )", text) if b.startswith(f"Traceback for thread {tid} ")]
        frame = r'^\s+\((?:C|Python)\) File ".*?", line \d+, in (.+?)(?: \(inlined\))?(?: \([^()]*\))?$'
        return (re.findall(frame, b[0], re.M)[::-1] if b else []), len(re.findall(frame, text, re.M))
    # gdb prints the stop location (a "#0" line) on loading the core: skip it
    text = text[text.find("\nThread "):] if kind == "gdb-all" else text[max(0, text.rfind("\n#0 ")):]
    blocks = [b for b in re.split(r"\n(?=Thread \d+ \()", text) if f"(LWP {tid})" in b.split("\n")[0]]
    b = blocks[0] if blocks else text if kind == "gdb-bt" else ""
    frame = r"^#\d+\s+(?:0x[0-9a-f]+ in )?(<signal handler called>|[^\s(]+)"
    return re.findall(frame, b, re.M), len(re.findall(frame, text, re.M))


def short(name):
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    return name if name.startswith("<") else name.split("::")[-1]


def chain(names, k=7):
    runs = [(n, len(list(g))) for n, g in itertools.groupby(map(short, names))]
    return " <- ".join(n + (f" x{c}" if c > 1 else "") for n, c in runs[:k])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--interp", help="e.g. pyenv-3.12.1 (default: most DWARF, --enable-shared first)")
    ap.add_argument("--core-method", choices=("auto", "kernel", "gdb"), default="auto")
    ap.add_argument("--no-build", action="store_true", help="do not cargo build the symbolizer")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (core, minidump, outputs)")
    args = ap.parse_args()
    build = "not rebuilt: --no-build"
    if not args.no_build:
        b = sh("cargo", "build", "--release", "-q", "-p", "crashcatch-symbolizer", cwd=REPO)
        build = "rebuilt" if b.returncode == 0 else "BUILD FAILED, using the existing binary"
        print(f"warning: cargo build failed:\n{b.stderr[-600:]}" if b.returncode else "", file=sys.stderr, end="")
    if not os.path.exists(SYMBOLIZER):
        sys.exit(f"{SYMBOLIZER} missing: cargo build --release -p crashcatch-symbolizer")
    build += time.strftime(", built %H:%M:%S", time.localtime(os.path.getmtime(SYMBOLIZER)))
    cands = [c for c in candidates() if not args.interp or c["name"] == args.interp]
    if not cands:
        sys.exit(f"no interpreter {args.interp or ''} found")
    c = max(cands, key=lambda c: (bool(c["libpython"]), c["dwarf"]))  # shared libpython first, then DWARF
    shared = f"{sum(bool(x['libpython']) for x in cands)} of {len(cands)} candidates load libpython"
    venv_py, ext = target_env(c)
    pystack, pystack_desc = pystack_setup(c["python"])
    work = tempfile.mkdtemp(prefix="crashcatch-symbench-")
    pid, dumps, core, how = crash(venv_py, ext, work, args.core_method)
    if not dumps:
        sys.exit(f"crashcatch wrote no minidump (see {work})")
    dump = dumps[0]
    tools = [  # (label, input, parser kind, command)
        ("crashcatch symbolize", "minidump", "text", [SYMBOLIZER, "symbolize", dump]),
        # The command users run: the venv's `crashcatch` (it execs the installed package's program).
        ("  the installed command", "minidump", "text", [os.path.join(os.path.dirname(venv_py), "crashcatch"),
                                                          "symbolize", dump]),
        ("crashcatch symbolize --json", "minidump", "json", [SYMBOLIZER, "symbolize", "--json", dump]),
        ("pystack core --native", "core", "pystack", [pystack, "core", core, "--native"]),
        ("gdb thread apply all bt", "core", "gdb-all", ["gdb", "-batch", "-ex", "thread apply all bt", c["python"], core]),
        ("gdb bt", "core", "gdb-bt", ["gdb", "-batch", "-ex", "bt", c["python"], core]),
    ]
    linkage = (f"--enable-shared: {c['libpython']} loaded" if c["libpython"] else
               "libpython is statically linked into the executable")
    git = sh("git", "-C", REPO, "rev-parse", "--short", "HEAD").stdout.strip()
    dirty = " + uncommitted changes" if sh("git", "-C", REPO, "status", "--porcelain", "-uno").stdout else ""
    print(f"one crash read {args.runs}x per tool (after 1 warm-up; medians, max RSS), tree {git}{dirty}, "
          f"loadavg {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"  interpreter  {c['name']} {c['python']} ({linkage}; .debug_info {c['dwarf'] / 2**20:.1f} MiB in "
          f"{os.path.basename(c['dwarf_file'])}; "
          f"{shared})")
    print("  crash        5 threads; Python -> call_back (C) -> callback (Python) -> segfault(3) (C) -> deref_null")
    print(f"  core method  {how}")
    print(f"  readers      {os.path.relpath(SYMBOLIZER, REPO)} ({build}); {pystack_desc}; "
          f"{sh('gdb', '--version').stdout.splitlines()[0]}")
    ds, cs = os.path.getsize(dump), os.path.getsize(core)
    print(f"  files        minidump {ds / 1024:.1f} KiB, core {cs / 2**20:.1f} MiB "
          f"(minidump = {100 * ds / cs:.2f}% of core)\n")
    print(f"{'tool':<29}{'input':<10}{'ok':<5}{'wall ms':>9}{'cpu ms':>8}{'max RSS MiB':>13}{'frames':>8}")
    res, failures = {}, []
    for label, inp, kind, cmd in tools:
        out = os.path.join(work, kind + ".out")
        rc, ms, cpu, rss = measure(cmd, args.runs, out)
        try:
            names, nframes = parse(kind, open(out).read(), pid)
        except (ValueError, KeyError, IndexError):
            names, nframes = [], 0
        ok = rc == 0 and "deref_null" in map(short, names[:8])
        res[label] = (ms, cpu, rss, names, ok)
        if not ok:
            failures.append(f"{label} (exit {rc}): {open(out + '.err').read().strip()[-400:] or 'no deref_null frame'}")
        print(f"{label:<29}{inp:<10}{'yes' if ok else 'FAIL':<5}{ms:>9.1f}{cpu:>8.1f}{rss:>13.1f}{nframes:>8}")
    print("(cpu = user + sys; frames = stack lines printed over all threads, native + Python, inlined too)")
    ps = res["pystack core --native"]
    print("\ncrashcatch / pystack (target <= 0.5x in wall time and RSS):")
    for label in ("crashcatch symbolize", "  the installed command", "crashcatch symbolize --json"):
        t, cpu, r = (res[label][i] / ps[i] for i in range(3))
        verdict = "meets" if t <= 0.5 and r <= 0.5 else "MISSES"
        print(f"  {label.strip():<29} wall {t:.2f}x  cpu {cpu:.2f}x  RSS {r:.2f}x  -> {verdict} the target"
              + ("" if ps[4] else " (pystack failed)"))
    print(f"\ncrashing thread ({pid}), innermost frames as each tool printed them:")
    for label, (*_, names, _) in res.items():
        print(f"  {label:<29} {chain(names) or '(not found)'}")
    if failures:
        print("\nfailures:\n  " + "\n  ".join(failures))
    print("\ncommands:\n  " + "\n  ".join(shlex.join(cmd).replace(work, "$WORK") for _, _, _, cmd in tools))
    if args.keep:
        print(f"  WORK={work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
