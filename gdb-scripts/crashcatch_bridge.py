"""The debugger-neutral half of crashcatch's debugger commands (py-bt, py-bt-full, py-list,
py-up, py-down, py-locals, py-print, cc-bt, cc-threads): the helper process, the requests
and the output. crashcatch_gdb.py and crashcatch_lldb.py each give it an adapter (below)
for their debugger's threads, frames, memory and symbols.

This file runs in the debugger's own embedded Python, which may be any version from 3.6
and is usually not the target's: it decodes nothing itself. It starts crashcatch's helper
(`crashcatch-symbolize debugger-helper`, the same Rust decoder as `crashcatch symbolize`)
and answers the helper's questions for the target's memory and symbols over a pipe.
Standard library only; never imports crashcatch.

The adapter (an object) has:
  read_memory(addr, length) -> bytes (b"" when unreadable)
  symbol(name) -> address or None (minimal/dynamic symbols of stripped programs too)
  symbol_file(addr) -> path of the module holding addr, or None
  require_process() -> raises CrashcatchError when there is no process or core
  stack_fields(levels) -> the request fields of the selected thread for "stack"
  cc_bt_fields(all_threads) -> the request fields for "cc_bt" (without "full")
  threads() -> [(row, info)]: every thread; row = {"num", "name", "selected"}, info = the
               thread's request fields without native frames
  selection_key() -> what identifies "same thread, same stop, same selected frame"
  selected_level() -> the debugger's selected frame number
  select_level(level) -> selects that debugger frame of the selected thread
  write(text)
"""
import json
import os
import subprocess
import time

# `py-list`: lines shown before and after the current one.
LIST_CONTEXT = 5

try:
    _HERE = os.path.dirname(os.path.abspath(__file__))
except NameError:  # an old debugger that runs the file without __file__
    _HERE = ""


class CrashcatchError(Exception):
    """A message for the user (shown as `crashcatch: <message>`, never a traceback)."""


def helper_path():
    """The helper binary: $CRASHCATCH_HELPER, else next to the installed package
    (crashcatch/_debugger/ → crashcatch/_bin/), else a source checkout's build, else PATH."""
    env = os.environ.get("CRASHCATCH_HELPER")
    if env:
        return env
    candidates = [
        os.path.join(os.path.dirname(_HERE), "_bin", "crashcatch-symbolize"),
        os.path.join(os.path.dirname(_HERE), "target", "release", "crashcatch-symbolize"),
    ]
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d:
            candidates.append(os.path.join(d, "crashcatch-symbolize"))
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    raise CrashcatchError(
        "cannot find crashcatch's helper (crashcatch/_bin/crashcatch-symbolize): load these commands "
        "with `crashcatch gdb` or `crashcatch lldb`, or set CRASHCATCH_HELPER to its path"
    )


class Helper(object):
    """The helper process: one per debugger session, started on first use."""

    def __init__(self):
        self.proc = None
        self.symbols = {}
        self.last_questions = 0

    def _start(self):
        path = helper_path()
        try:
            self.proc = subprocess.Popen(
                [path, "debugger-helper"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
            )
        except OSError as e:
            raise CrashcatchError("cannot start the helper %s: %s" % (path, e))

    def request(self, debugger, req):
        """Sends `req`, answers the helper's questions from `debugger`, returns its reply's
        "ok" value."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        out, inp = self.proc.stdin, self.proc.stdout
        try:
            out.write((json.dumps(req) + "\n").encode())
            while True:
                line = inp.readline()
                if not line:
                    self.proc = None
                    raise CrashcatchError("the helper stopped unexpectedly (a crashcatch bug: please report it)")
                kind, _, rest = line.decode("utf-8", "replace").rstrip("\n").partition(" ")
                if kind == "M":
                    addr, length = rest.split()
                    data = debugger.read_memory(int(addr, 16), int(length))
                    out.write(("%d\n" % len(data)).encode() + data)
                elif kind == "S":
                    addr = self.symbol(debugger, rest)
                    out.write(("-\n" if addr is None else "%x\n" % addr).encode())
                elif kind == "R":
                    reply = json.loads(rest)
                    self.last_questions = reply.get("questions", 0)
                    if "error" in reply:
                        raise CrashcatchError(reply["error"])
                    return reply["ok"]
                else:
                    raise CrashcatchError("unexpected line from the helper: %r" % line[:80])
        except CrashcatchError:
            raise
        except (OSError, ValueError) as e:
            self.stop()
            raise CrashcatchError("lost the helper: %s" % e)
        except BaseException:
            # Interrupted mid-request (Ctrl-C, a debugger error): the helper waits for an
            # answer that will never come; the next request starts a new one.
            self.stop()
            raise

    def symbol(self, debugger, name):
        if name not in self.symbols:
            self.symbols[name] = debugger.symbol(name)
        return self.symbols[name]

    def stop(self):
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait()
            except OSError:
                pass
            self.proc = None


helper = Helper()


def request(debugger, op, **fields):
    """One request to the helper about `debugger`'s target (symbols are looked up afresh:
    the target may have loaded modules since the last one)."""
    debugger.require_process()
    helper.symbols = {}
    req = {"op": op, "runtime_file": None}
    runtime = helper.symbol(debugger, "_PyRuntime")
    if runtime is not None:
        req["runtime_file"] = debugger.symbol_file(runtime)
    req.update(fields)
    return helper.request(debugger, req)


def run(command, debugger, arg, passthrough=()):
    """Runs `command(debugger, arg)`; None, or the one-line message to show as the error.
    Exceptions in `passthrough` (the debugger's own errors) are raised as they are."""
    try:
        command(debugger, arg.strip())
        return None
    except CrashcatchError as e:
        return "crashcatch: %s" % e
    except passthrough:
        raise
    except KeyboardInterrupt:
        helper.stop()
        return "crashcatch: interrupted"
    except Exception as e:  # a bug: still a message, with what to report
        return "crashcatch: internal error (%s: %s); please report it" % (type(e).__name__, e)


# --- the selected Python frame --------------------------------------------------------

_selection = {}


def stack(debugger, levels=True):
    """The selected thread's Python stack reply: frames innermost first, each with the
    level of the debugger frame running it (None where unknown). Without `levels` the
    debugger's unwind is not needed (py-bt): the frames are the same, their levels None."""
    debugger.require_process()
    return request(debugger, "stack", **debugger.stack_fields(levels))


def python_frames(debugger, levels=True):
    reply = stack(debugger, levels)
    frames = reply["frames"]
    if not frames:
        raise CrashcatchError("the selected thread runs no Python code")
    return reply, frames


def selected_index(debugger, frames):
    """The selected Python frame: the one py-up/py-down chose last, while the debugger's
    selection is still where they left it; else the innermost one at or outside the
    debugger's selected frame."""
    if _selection.get("key") == debugger.selection_key() and _selection.get("index", 0) < len(frames):
        return _selection["index"]
    level = debugger.selected_level()
    for i, f in enumerate(frames):
        if f.get("level") is not None and f["level"] >= level:
            return i
    return 0


def select(debugger, frames, index):
    """Makes frame `index` the selected Python frame, and the debugger's selected frame its
    eval loop's."""
    level = frames[index].get("level")
    if level is not None:
        debugger.select_level(level)
    _selection["key"] = debugger.selection_key()
    _selection["index"] = index


def frame_line(f):
    # faulthandler's (and libpython.py's) format names the code object (co_name), not its
    # qualified name: `<lambda>`, not `inner.<locals>.<lambda>`.
    line = f["line"] if f["line"] is not None and f["line"] >= 0 else "???"
    return '  File "%s", line %s in %s' % (f["file"] or "???", line, f.get("name") or f["function"] or "???")


# --- commands: each takes the adapter and the argument string ---------------------------


def _bt(debugger, arg, full):
    start = time.time()
    reply, frames = python_frames(debugger, levels=False)
    debugger.write("Traceback (most recent call first):\n")
    for f in frames:
        debugger.write(frame_line(f) + "\n")
        if full:
            _write_locals(debugger, f, "    ")
    if reply.get("problem"):
        debugger.write("  <%s>\n" % reply["problem"])
    if os.environ.get("CRASHCATCH_GDB_TIMING") or os.environ.get("CRASHCATCH_TIMING"):
        debugger.write(
            "crashcatch: %s took %.3f s, %d questions from the helper\n"
            % ("py-bt-full" if full else "py-bt", time.time() - start, helper.last_questions)
        )


def py_bt(debugger, arg):
    """py-bt: the selected thread's Python stack, most recent call first (faulthandler's format)."""
    _bt(debugger, arg, False)


def py_bt_full(debugger, arg):
    """py-bt-full: py-bt with each frame's local variables."""
    _bt(debugger, arg, True)


def _write_locals(debugger, f, indent):
    try:
        shown = request(debugger, "locals", frame=f["address"])["locals"]
    except CrashcatchError as e:
        debugger.write("%s<locals: %s>\n" % (indent, e))
        return
    for name, value in shown:
        debugger.write("%s%s = %s\n" % (indent, name, value))


def py_list(debugger, arg):
    """py-list: source lines around the selected Python frame's current line."""
    _, frames = python_frames(debugger)
    f = frames[selected_index(debugger, frames)]
    line = f["line"]
    if line is None or line < 1:
        raise CrashcatchError("the line of %s is unknown" % (f["function"] or "this frame"))
    try:
        with open(f["file"], "rb") as src:
            lines = src.read().decode("utf-8", "replace").splitlines()
    except (OSError, TypeError) as e:
        raise CrashcatchError("cannot read the source file %s: %s" % (f["file"], e))
    start = max(1, line - LIST_CONTEXT)
    for n in range(start, min(len(lines), line + LIST_CONTEXT) + 1):
        mark = ">" if n == line else " "
        debugger.write("%s%4d    %s\n" % (mark, n, lines[n - 1]))


def _move(debugger, step):
    _, frames = python_frames(debugger)
    index = selected_index(debugger, frames) + step
    if index >= len(frames):
        raise CrashcatchError("unable to find an older Python frame")
    if index < 0:
        raise CrashcatchError("unable to find a newer Python frame")
    select(debugger, frames, index)
    debugger.write("#%d %s\n" % (index, frame_line(frames[index]).strip()))


def py_up(debugger, arg):
    """py-up: select the calling Python frame."""
    _move(debugger, 1)


def py_down(debugger, arg):
    """py-down: select the called Python frame."""
    _move(debugger, -1)


def py_locals(debugger, arg):
    """py-locals: the selected Python frame's local variables."""
    _, frames = python_frames(debugger)
    shown = request(debugger, "locals", frame=frames[selected_index(debugger, frames)]["address"])["locals"]
    for name, value in shown:
        debugger.write("%s = %s\n" % (name, value))


def py_print(debugger, arg):
    """py-print NAME: a local, global or builtin of the selected Python frame."""
    if not arg:
        raise CrashcatchError("usage: py-print NAME")
    _, frames = python_frames(debugger)
    reply = request(debugger, "print", frame=frames[selected_index(debugger, frames)]["address"], name=arg)
    debugger.write("%s %r = %s\n" % (reply["scope"], arg, reply["value"]))


def cc_bt(debugger, arg):
    """cc-bt [all] [full]: one merged Python + native stack (of every thread with `all`),
    the frames and order `crashcatch symbolize` shows; `full` also shows the interpreter's
    own frames."""
    words = arg.split()
    if [w for w in words if w not in ("all", "full")]:
        raise CrashcatchError("usage: cc-bt [all] [full]")
    debugger.require_process()
    fields = debugger.cc_bt_fields("all" in words)
    fields["full"] = "full" in words
    debugger.write(request(debugger, "cc_bt", **fields)["text"])


def cc_threads(debugger, arg):
    """cc-threads: every thread with its OS id, Python thread name, GIL holder and Python function."""
    debugger.require_process()
    rows = debugger.threads()
    reply = request(debugger, "threads", threads=[info for _, info in rows])
    for (t, info), row in zip(rows, reply["threads"]):
        tags = []
        if row["holds_gil"]:
            tags.append("holds the GIL")
        if row["tstate"] is None:
            tags.append("no Python")
        where = ""
        if row["function"] is not None:
            line = row["line"] if row["line"] is not None else "???"
            where = " in %s (%s:%s)" % (row["function"], row["file"], line)
        # The Python name (threading.Thread.name) when the thread has one, else the OS's;
        # the OS name too where it says something else (it is cut to 15 bytes).
        os_name = t["name"]
        name = row.get("python_name") or os_name or "?"
        if row.get("python_name") and os_name and not row["python_name"].startswith(os_name):
            tags.append('OS name "%s"' % os_name)
        debugger.write(
            '%s Thread %d (LWP %d) "%s"%s%s\n'
            % (
                "*" if t["selected"] else " ",
                t["num"],
                info["tid"],
                name,
                " [%s]" % ", ".join(tags) if tags else "",
                where,
            )
        )
    if reply.get("gil_free"):
        debugger.write("  (no thread holds the GIL)\n")


# The commands with their debugger names, for the adapters to register.
COMMANDS = [
    ("py-bt", py_bt),
    ("py-bt-full", py_bt_full),
    ("py-list", py_list),
    ("py-up", py_up),
    ("py-down", py_down),
    ("py-locals", py_locals),
    ("py-print", py_print),
    ("cc-bt", cc_bt),
    ("cc-threads", cc_threads),
]
