"""Running one crash per child process and reading the reports."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass

FRAME_RE = re.compile(r'^  File "(?P<file>.*)", line (?P<line>\d+|\?\?\?) in (?P<func>.*)$')
C_HEADER = "Current thread's C stack trace (most recent call first):"
# crashcatch's addition after a crash in a subinterpreter: the frames that called into it.
OUTER_HEADER = "Current thread's frames in the calling interpreter (most recent call first):"
C_FRAME_RE = re.compile(
    r'^  Binary file "(?P<path>[^"]+)"(?:, at (?P<sym>.+?)\+0x(?P<off>[0-9a-f]+))? '
    r'\[0x(?P<addr>[0-9a-f]+)\] \((?P<module>[^)]+)\+0x(?P<modoff>[0-9a-f]+)\)(?P<trust> \[[a-z ]+\])?$')
SIGNAL_NAMES = {
    signal.SIGSEGV: "Segmentation fault", signal.SIGFPE: "Floating point exception",
    signal.SIGABRT: "Aborted", signal.SIGBUS: "Bus error", signal.SIGILL: "Illegal instruction",
}


def signal_name(signo, minor):
    """faulthandler's name for a fatal signal (3.13 hyphenated "Floating-point")."""
    if signo == signal.SIGFPE and minor >= 13:
        return "Floating-point exception"
    return SIGNAL_NAMES[signo]


# The fatal crashes buggyext makes: the call, its signal, and the extension's functions from
# the faulting one outwards as DWARF names them (inlined calls included).
FATAL_CALLS = {
    "segfault": ("buggyext.segfault(2)", signal.SIGSEGV,
                 ["deref_null", "deref_null", "deref_null", "inlined_helper", "buggy_entry", "segfault"]),
    "segfault_at": ("buggyext.segfault_at(0xdead0000)", signal.SIGSEGV, ["read_address", "segfault_at"]),
    "fpe": ("buggyext.fpe()", signal.SIGFPE, ["divide", "fpe"]),
    "abort": ("buggyext.sigabrt()", signal.SIGABRT, ["do_abort", "sigabrt"]),
    "sigill": ("buggyext.sigill()", signal.SIGILL, ["illegal_instruction", "sigill"]),
    "sigbus": ("buggyext.sigbus()", signal.SIGBUS, ["touch_truncated_mapping", "sigbus"]),
}

# A crash `{call}` two Python frames deep, with three Python threads waiting (`worker-N`).
THREADED_CRASH = """
import crashcatch, buggyext, threading
crashcatch.enable()
crashcatch.annotate("release", "1.2.3")
ready = threading.Event()
def idle():
    ready.wait()  # @idle
workers = [threading.Thread(target=idle, name=f"worker-{{i}}") for i in range(3)]
for w in workers:
    w.start()

def inner():
    return {call}  # @inner

def outer():
    return inner()  # @outer

outer()  # @module
"""


def crash_segfault_importing_from(interp, ext_dir, depth):
    """buggyext.segfault(depth), with buggyext imported from `ext_dir` (a path inside the
    interpreter's root) rather than the prepared one; the run, checked to have crashed and
    left one dump."""
    r = run_script(interp, f"""
    import sys
    sys.path.insert(0, {ext_dir!r})
    import crashcatch, buggyext
    crashcatch.enable()
    buggyext.segfault({depth})
    """)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    return r


def compile_buggyext(interp, out, *flags):
    """Builds examples/buggyext with -g against a host interpreter's headers into `out`."""
    include = subprocess.run([interp.python, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    source = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "buggyext",
                          "buggyext.c")
    subprocess.run(["cc", "-shared", "-fPIC", "-g", *flags, "-I", include, source, "-o", out],
                   check=True, capture_output=True, text=True)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    script: str          # path of the script inside the interpreter's root
    files: dict          # name -> content of extra output files
    dumps: list          # host paths of the minidumps the run left
    max_rss_kib: int = 0  # with measure_rss: the largest RSS of the script and its helpers


@dataclass
class Prepared:
    """A script written into a fresh scratch dir, and how to run it."""
    argv: list           # to run inside the interpreter's root
    cwd: str             # inside the root
    env: dict
    script: str          # inside the root

    def host_dir(self, interp):
        return interp.host_path(self.cwd)

    def dumps(self, interp):
        """Host paths of the minidumps the run left."""
        d = interp.host_path(self.cwd + "/dumps")
        return sorted(os.path.join(d, n) for n in os.listdir(d)) if os.path.isdir(d) else []


def prepare_script(interp, code, *, env=None, files=(), args=(), core=False):
    """Writes `code` to a script in the interpreter's scratch dir; the venv python runs it
    with buggyext importable and dumps going to the run's own `dumps` directory. `files`:
    names of output files the script writes in its directory (FILE_<name> variables)."""
    host_work = interp.host_path(interp.work_dir)
    d = tempfile.mkdtemp(dir=host_work)
    inner_dir = interp.work_dir + "/" + os.path.basename(d)
    script = inner_dir + "/crash_script.py"
    with open(interp.host_path(script), "w") as f:
        f.write(textwrap.dedent(code).lstrip())
    full_env = dict(os.environ)
    full_env.pop("CRASHCATCH_AS_FAULTHANDLER", None)
    full_env["PYTHONPATH"] = interp.ext_dir
    # Dumps of this run stay in its own directory (listed in Run.dumps).
    full_env["CRASHCATCH_DUMP_DIR"] = inner_dir + "/dumps"
    for name in files:
        full_env["FILE_" + name] = inner_dir + "/" + name
    full_env.update(env or {})
    argv = [interp.venv_python, script, *args]
    if core:
        argv = ["/bin/sh", "-c", 'ulimit -c unlimited && exec "$0" "$@"'] + argv
    return Prepared(argv, inner_dir, full_env, script)


# Runs argv[2:] and writes "<returncode> <largest RSS in KiB>" of it and every process it
# waited for (the dump helper) to argv[1]; its own memory does not count.
_MEASURE = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[2:]).returncode\n"
            "open(sys.argv[1], 'w').write(f'{r} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}')\n")


def run_script(interp, code, *, timeout=120, env=None, files=(), args=(), core=False, measure_rss=False):
    """Runs `code` (see prepare_script) to the end. `core`: lift the core size limit, so a
    crash also leaves a kernel core (`core` in the script's directory when the kernel's
    core_pattern is the plain default). `measure_rss`: run it under a launcher that reports
    the largest RSS of the script and the processes it waited for (Run.max_rss_kib)."""
    p = prepare_script(interp, code, env=env, files=files, args=args, core=core)
    argv, measured = p.argv, p.cwd + "/rusage"
    if measure_rss:
        argv = [interp.venv_python, "-c", _MEASURE, measured] + argv
    r = interp.run(argv, cwd=p.cwd, env=p.env, timeout=timeout)
    returncode, max_rss = r.returncode, 0
    if measure_rss:
        returncode, max_rss = map(int, open(interp.host_path(measured)).read().split())
    contents = {}
    for name in files:
        path = interp.host_path(p.cwd + "/" + name)
        contents[name] = open(path, errors="backslashreplace").read() if os.path.exists(path) else None
    return Run(returncode, r.stdout, r.stderr, p.script, contents, p.dumps(interp), max_rss)


def strace_script(interp, p, calls, trace, *, timeout=120):
    """Runs the prepared script `p` (prepare_script) under the host's strace, which follows
    a chroot's process too, recording the system calls `calls` (strace's `trace=` list) of
    every thread and child in the file `trace`. Returns the run and the recorded text."""
    r = subprocess.run(["strace", "-f", "-qq", "-e", f"trace={calls}", "-o", str(trace)]
                       + interp.command(p.argv, p.cwd), env=p.env, capture_output=True, text=True, timeout=timeout)
    return r, trace.read_text() if trace.exists() else ""


def script_line(code, marker):
    """1-based line number of the line ending in `# @marker` in the dedented script."""
    for i, line in enumerate(textwrap.dedent(code).lstrip().splitlines(), 1):
        if line.rstrip().endswith("# @" + marker):
            return i
    raise AssertionError(f"marker {marker} not in script")


def thread_blocks(report):
    """{header line: [(file, line, func), ...]} for each thread block of a report."""
    blocks, current = {}, None
    for line in report.splitlines():
        if re.match(r"^(Current thread|Thread) 0x[0-9a-f]+( \[.*\])? \(most recent call first\):$", line) \
                or line == "Stack (most recent call first):":
            current = blocks.setdefault(line, [])
        elif current is not None and FRAME_RE.match(line):
            m = FRAME_RE.match(line)
            current.append((m["file"], m["line"], m["func"]))
        elif current is not None and line.startswith("  "):
            continue
        else:
            current = None
    return blocks


def current_thread_frames(report):
    for header, frames in thread_blocks(report).items():
        if header.startswith("Current thread") or header.startswith("Stack"):
            return frames
    return None


def c_stack(report, header=C_HEADER):
    """The C-stack frame lines (parsed) of a report; None if there is no C stack section."""
    lines = report.splitlines()
    if header not in lines:
        return None
    frames = []
    for line in lines[lines.index(header) + 1:]:
        if not line.startswith("  ") or line.startswith("crashcatch: "):
            break
        m = C_FRAME_RE.match(line)
        frames.append(m.groupdict() if m else {"raw": line})
    return frames


PEER_HEADER_RE = re.compile(r"^C stack of thread 0x(?P<thread>[0-9a-f]{16}) \(LWP (?P<tid>\d+)\) \(most recent call first\):$")


def peer_c_stacks(report):
    """{(thread id, OS thread id): parsed frames} of a timeout report's other-thread C stacks."""
    stacks = {}
    for line in report.splitlines():
        m = PEER_HEADER_RE.match(line)
        if m:
            stacks[(int(m["thread"], 16), int(m["tid"]))] = c_stack(report, header=line)
    return stacks


def strip_c_stack(report):
    """The report without its C-stack section, its calling-interpreter frames and minidump
    line (for comparing with faulthandler's text)."""
    out, skipping = [], False
    for line in report.splitlines(keepends=True):
        if line.startswith("crashcatch: "):
            continue
        if line.rstrip("\n") in (C_HEADER, OUTER_HEADER):
            skipping = True
            if out and out[-1] == "\n":
                out.pop()  # the blank line that introduces the section
            continue
        if skipping and line.startswith("  "):
            continue
        skipping = False
        out.append(line)
    return "".join(out)
