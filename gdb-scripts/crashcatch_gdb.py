"""crashcatch's gdb commands: Python stacks, source, values and threads of a CPython 3.9+
process or core, without the interpreter's debug info.

Load with `crashcatch gdb ARGS...`, or in a running gdb with `source PATH` (PATH: the
output of `crashcatch debugger-scripts`). See README.md next to this file.

This file runs in gdb's own embedded Python, which may be any version from 3.6 and is
usually not the target's: it decodes nothing itself. It starts crashcatch's helper
(`crashcatch-symbolize debugger-helper`, the same Rust decoder as `crashcatch symbolize`)
and answers the helper's questions for the target's memory and symbols over a pipe.
Standard library only; never imports crashcatch.
"""
import json
import os
import re
import subprocess
import time

import gdb

try:
    from gdb.FrameDecorator import FrameDecorator
except ImportError:  # a gdb without frame filters: the commands still work
    FrameDecorator = object

# Native frames sent to the helper at most per thread (a runaway recursion has millions).
MAX_NATIVE_FRAMES = 20000
# `py-list`: lines shown before and after the current one.
LIST_CONTEXT = 5

try:
    _HERE = os.path.dirname(os.path.abspath(__file__))
except NameError:  # an old gdb that sources without __file__
    _HERE = ""


class CrashcatchError(Exception):
    """A message for the user (shown as `crashcatch: <message>`, never a traceback)."""


def _helper_path():
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
        "with `crashcatch gdb`, or set CRASHCATCH_HELPER to its path"
    )


class Helper(object):
    """The helper process: one per gdb session, started on first use."""

    def __init__(self):
        self.proc = None
        self.symbols = {}
        self.last_questions = 0

    def _start(self):
        path = _helper_path()
        try:
            self.proc = subprocess.Popen(
                [path, "debugger-helper"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
            )
        except OSError as e:
            raise CrashcatchError("cannot start the helper %s: %s" % (path, e))

    def request(self, req):
        """Sends `req`, answers the helper's questions, returns its reply's "ok" value."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.symbols = {}
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
                    data = _read_memory(int(addr, 16), int(length))
                    out.write(("%d\n" % len(data)).encode() + data)
                elif kind == "S":
                    addr = self.symbol(rest)
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
            # Interrupted mid-request (Ctrl-C, a gdb error): the helper waits for an answer
            # that will never come; the next request starts a new one.
            self.stop()
            raise

    def symbol(self, name):
        if name not in self.symbols:
            self.symbols[name] = _symbol(name)
        return self.symbols[name]

    def stop(self):
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait()
            except OSError:
                pass
            self.proc = None


_helper = Helper()


def _read_memory(addr, length):
    try:
        return bytes(gdb.selected_inferior().read_memory(addr, length))
    except (gdb.MemoryError, gdb.error, OverflowError, ValueError):
        return b""


def _symbol(name):
    """The address of `name` (minimal symbols of stripped programs too), or None."""
    try:
        v = gdb.parse_and_eval("(unsigned long)&'%s'" % name)
        return int(v) or None
    except gdb.error:
        return None


def _u64(value):
    return int(value) & 0xFFFFFFFFFFFFFFFF


def _require_process():
    if gdb.selected_thread() is None or not gdb.selected_inferior().threads():
        raise CrashcatchError("no process: run the program, attach with -p PID, or open a core")


def _native_frames(limit=MAX_NATIVE_FRAMES):
    """The selected thread's native frames, innermost first, as gdb unwinds them."""
    frames = []
    program = gdb.current_progspace().filename or ""
    f = gdb.newest_frame()
    level = 0
    inner_type = None
    while f is not None and level < limit:
        try:
            sp = _u64(f.read_register("rsp"))
        except (gdb.error, ValueError):
            sp = 0
        kind = f.type()
        # gdb infers tail-call frames from DWARF call sites; no return address is on the
        # stack for them, and the symbolizer's unwinder (crashcatch symbolize) has none.
        if kind == gdb.TAILCALL_FRAME:
            try:
                f = f.older()
            except gdb.error:
                break
            level += 1
            continue
        frames.append(
            {
                "level": level,
                "pc": _u64(f.pc()),
                "sp": sp,
                "inline": kind == gdb.INLINE_FRAME,
                # The pc of a frame that called another is a return address, unless the
                # frame inside it is a signal trampoline (the pc is where the signal hit).
                "caller": level > 0 and inner_type not in (gdb.SIGTRAMP_FRAME, gdb.INLINE_FRAME),
                "name": f.name(),
                "module": os.path.basename(gdb.solib_name(f.pc()) or program),
            }
        )
        if kind != gdb.INLINE_FRAME:
            inner_type = kind
        try:
            f = f.older()
        except gdb.error:
            break
        level += 1
    return frames


def _thread_info(thread, with_native=True):
    """What the helper needs of a gdb thread (which must be the selected one)."""
    try:
        pthread = _u64(gdb.parse_and_eval("$fs_base"))
    except (gdb.error, ValueError):
        pthread = None
    info = {"tid": thread.ptid[1] or thread.ptid[0], "pthread": pthread, "name": thread.name}
    if with_native:
        info["native"] = _native_frames()
    return info


def _runtime_file():
    addr = _helper.symbol("_PyRuntime")
    if addr is None:
        return None
    return gdb.solib_name(addr) or gdb.current_progspace().filename


def _auxv():
    """AT_PHDR and AT_PHNUM from `info auxv` (live processes and cores alike)."""
    values = {}
    try:
        text = gdb.execute("info auxv", to_string=True)
    except gdb.error:
        return values
    for line in text.splitlines():
        m = re.match(r"\s*\d+\s+(AT_\w+)\s.*?\s(0x[0-9a-fA-F]+|\d+)\s*$", line)
        if m:
            values[m.group(1)] = int(m.group(2), 0)
    return values


def _request(op, **fields):
    _require_process()
    req = {"op": op, "runtime_file": None}
    _helper.symbols = {}
    req["runtime_file"] = _runtime_file()
    req.update(fields)
    return _helper.request(req)


# --- the selected Python frame --------------------------------------------------------

_stops = [0]
_selection = {}


def _on_stop(_event):
    _stops[0] += 1
    _selection.clear()


def _on_exit(_event):
    _stops[0] += 1
    _selection.clear()


def _stack(levels=True):
    """The selected thread's Python frames, innermost first, each with the level of the gdb
    frame running it (None where unknown). Without `levels` gdb's unwind is not needed
    (py-bt): the frames are the same, their levels all None."""
    _require_process()
    thread = gdb.selected_thread()
    selected = gdb.selected_frame()
    try:
        info = _thread_info(thread, with_native=levels)
    finally:
        selected.select()
    return _request("stack", thread=info, program_path=gdb.current_progspace().filename or "")


def _selected_level():
    try:
        return gdb.selected_frame().level()
    except (gdb.error, AttributeError):
        return 0


def _selected_index(frames):
    """The selected Python frame: the one py-up/py-down chose last, while gdb's selection
    is still where they left it; else the innermost one at or outside gdb's selected frame."""
    key = (gdb.selected_thread().ptid, _stops[0], _selected_level())
    if _selection.get("key") == key and _selection.get("index", 0) < len(frames):
        return _selection["index"]
    level = _selected_level()
    for i, f in enumerate(frames):
        if f["level"] is not None and f["level"] >= level:
            return i
    return 0


def _select(frames, index):
    """Makes frame `index` the selected Python frame, and gdb's selected frame its eval loop's."""
    level = frames[index]["level"]
    if level is not None:
        f = gdb.newest_frame()
        for _ in range(level):
            f = f.older()
        f.select()
    _selection["key"] = (gdb.selected_thread().ptid, _stops[0], _selected_level())
    _selection["index"] = index


def _frame_line(f):
    # faulthandler's (and libpython.py's) format names the code object (co_name), not its
    # qualified name: `<lambda>`, not `inner.<locals>.<lambda>`.
    line = f["line"] if f["line"] is not None and f["line"] >= 0 else "???"
    return '  File "%s", line %s in %s' % (f["file"] or "???", line, f.get("name") or f["function"] or "???")


# --- commands ---------------------------------------------------------------------------


class _Command(gdb.Command):
    """A command whose errors are messages, never tracebacks."""

    def __init__(self, name):
        super(_Command, self).__init__(name, gdb.COMMAND_STACK, gdb.COMPLETE_NONE)

    def invoke(self, arg, from_tty):
        try:
            self.run(arg.strip())
        except CrashcatchError as e:
            raise gdb.GdbError("crashcatch: %s" % e)
        except gdb.GdbError:
            raise
        except KeyboardInterrupt:
            _helper.stop()
            raise gdb.GdbError("crashcatch: interrupted")
        except Exception as e:  # a bug: still a message, with what to report
            raise gdb.GdbError("crashcatch: internal error (%s: %s); please report it" % (type(e).__name__, e))


def _python_frames(levels=True):
    reply = _stack(levels)
    frames = reply["frames"]
    if not frames:
        raise CrashcatchError("the selected thread runs no Python code")
    return reply, frames


class PyBt(_Command):
    """py-bt: the selected thread's Python stack, most recent call first (faulthandler's format)."""

    def __init__(self, name="py-bt", full=False):
        super(PyBt, self).__init__(name)
        self.full = full

    def run(self, arg):
        start = time.time()
        reply, frames = _python_frames(levels=False)
        gdb.write("Traceback (most recent call first):\n")
        for f in frames:
            gdb.write(_frame_line(f) + "\n")
            if self.full:
                _write_locals(f, "    ")
        if reply.get("problem"):
            gdb.write("  <%s>\n" % reply["problem"])
        if os.environ.get("CRASHCATCH_GDB_TIMING"):
            gdb.write(
                "crashcatch: %s took %.3f s, %d questions from the helper\n"
                % (self._name(), time.time() - start, _helper.last_questions)
            )

    def _name(self):
        return "py-bt-full" if self.full else "py-bt"


def _write_locals(f, indent):
    try:
        shown = _request("locals", frame=f["address"])["locals"]
    except CrashcatchError as e:
        gdb.write("%s<locals: %s>\n" % (indent, e))
        return
    for name, value in shown:
        gdb.write("%s%s = %s\n" % (indent, name, value))


class PyList(_Command):
    """py-list: source lines around the selected Python frame's current line."""

    def __init__(self):
        super(PyList, self).__init__("py-list")

    def run(self, arg):
        _, frames = _python_frames()
        f = frames[_selected_index(frames)]
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
            gdb.write("%s%4d    %s\n" % (mark, n, lines[n - 1]))


class PyMove(_Command):
    """py-up / py-down: select the calling / called Python frame."""

    def __init__(self, name, step):
        super(PyMove, self).__init__(name)
        self.step = step

    def run(self, arg):
        _, frames = _python_frames()
        index = _selected_index(frames) + self.step
        if index >= len(frames):
            raise CrashcatchError("unable to find an older Python frame")
        if index < 0:
            raise CrashcatchError("unable to find a newer Python frame")
        _select(frames, index)
        gdb.write("#%d %s\n" % (index, _frame_line(frames[index]).strip()))


class PyLocals(_Command):
    """py-locals: the selected Python frame's local variables."""

    def __init__(self):
        super(PyLocals, self).__init__("py-locals")

    def run(self, arg):
        _, frames = _python_frames()
        shown = _request("locals", frame=frames[_selected_index(frames)]["address"])["locals"]
        for name, value in shown:
            gdb.write("%s = %s\n" % (name, value))


class PyPrint(_Command):
    """py-print NAME: a local, global or builtin of the selected Python frame."""

    def __init__(self):
        super(PyPrint, self).__init__("py-print")

    def run(self, arg):
        if not arg:
            raise CrashcatchError("usage: py-print NAME")
        _, frames = _python_frames()
        reply = _request("print", frame=frames[_selected_index(frames)]["address"], name=arg)
        gdb.write("%s %r = %s\n" % (reply["scope"], arg, reply["value"]))


def _program():
    auxv = _auxv()
    return {
        "program_phdr": auxv.get("AT_PHDR", 0),
        "program_phnum": auxv.get("AT_PHNUM", 0),
        "program_path": gdb.current_progspace().filename or "",
    }


def _each_thread(all_threads):
    """(thread info with native frames) for the selected thread or every thread, leaving
    gdb's selection as it was."""
    selected_thread = gdb.selected_thread()
    selected_frame = gdb.selected_frame()
    threads = sorted(gdb.selected_inferior().threads(), key=lambda t: t.num) if all_threads else [selected_thread]
    infos = []
    try:
        for t in threads:
            t.switch()
            infos.append(_thread_info(t))
    finally:
        selected_thread.switch()
        selected_frame.select()
    return infos


class CcBt(_Command):
    """cc-bt [all] [full]: one merged Python + native stack (of every thread with `all`),
    the frames and order `crashcatch symbolize` shows; `full` also shows the interpreter's
    own frames."""

    def __init__(self):
        super(CcBt, self).__init__("cc-bt")

    def run(self, arg):
        words = arg.split()
        unknown = [w for w in words if w not in ("all", "full")]
        if unknown:
            raise CrashcatchError("usage: cc-bt [all] [full]")
        _require_process()
        fields = _program()
        fields["threads"] = _each_thread("all" in words)
        fields["full"] = "full" in words
        gdb.write(_request("cc_bt", **fields)["text"])


class CcThreads(_Command):
    """cc-threads: every thread with its OS id, Python thread name, GIL holder and Python function."""

    def __init__(self):
        super(CcThreads, self).__init__("cc-threads")

    def run(self, arg):
        _require_process()
        selected = gdb.selected_thread()
        selected_frame = gdb.selected_frame()
        infos = []
        try:
            for t in sorted(gdb.selected_inferior().threads(), key=lambda t: t.num):
                t.switch()
                infos.append((t, _thread_info(t, with_native=False)))
        finally:
            selected.switch()
            selected_frame.select()
        reply = _request("threads", threads=[i for _, i in infos])
        for (t, info), row in zip(infos, reply["threads"]):
            tags = []
            if row["holds_gil"]:
                tags.append("holds the GIL")
            if row["tstate"] is None:
                tags.append("no Python")
            where = ""
            if row["function"] is not None:
                line = row["line"] if row["line"] is not None else "???"
                where = ' in %s (%s:%s)' % (row["function"], row["file"], line)
            # The Python name (threading.Thread.name) when the thread has one, else the OS's;
            # the OS name too where it says something else (it is cut to 15 bytes).
            name = row.get("python_name") or t.name or "?"
            if row.get("python_name") and t.name and not row["python_name"].startswith(t.name):
                tags.append('OS name "%s"' % t.name)
            gdb.write(
                '%s Thread %d (LWP %d) "%s"%s%s\n'
                % (
                    "*" if t == selected else " ",
                    t.num,
                    info["tid"],
                    name,
                    " [%s]" % ", ".join(tags) if tags else "",
                    where,
                )
            )
        if reply.get("gil_free"):
            gdb.write("  (no thread holds the GIL)\n")


# --- Python frames in `bt` ----------------------------------------------------------------


class PythonFrame(FrameDecorator):
    """A Python frame shown in `bt` just inside the eval-loop frame that runs it."""

    def __init__(self, eval_frame, py):
        super(PythonFrame, self).__init__(eval_frame)
        self.py = py

    def function(self):
        return "[Python] %s" % (self.py["function"] or "???")

    def address(self):
        return None

    def filename(self):
        return self.py["file"]

    def line(self):
        line = self.py["line"]
        return line if line is not None and line >= 0 else None

    def frame_args(self):
        return None

    def frame_locals(self):
        return None


class HidePlumbing(gdb.Parameter):
    """`set crashcatch-hide-plumbing on`: `bt` leaves out the interpreter's own frames
    between Python frames (the eval loop, call plumbing), as `crashcatch symbolize` does."""

    set_doc = "Set whether bt hides the interpreter's frames between Python frames."
    show_doc = "Show whether bt hides the interpreter's frames between Python frames."

    def __init__(self):
        super(HidePlumbing, self).__init__("crashcatch-hide-plumbing", gdb.COMMAND_STACK, gdb.PARAM_BOOLEAN)
        self.value = False

    def get_set_string(self):
        return ""

    def get_show_string(self, value):
        return "crashcatch hides the interpreter's frames in bt: %s" % value


class PythonFrameFilter(object):
    """Shows the Python frames each eval-loop frame runs (`disable frame-filter global
    crashcatch` turns it off), and with `set crashcatch-hide-plumbing on` hides the
    interpreter's own frames between them."""

    def __init__(self):
        self.name = "crashcatch"
        self.priority = 100
        self.enabled = True
        gdb.frame_filters[self.name] = self

    def filter(self, frame_iter):
        try:
            reply = _stack()
        except Exception:  # not a Python thread (or not yet): gdb's frames as they are
            return frame_iter
        by_level = {}
        for f in reply["frames"]:
            if f["level"] is not None:
                by_level.setdefault(f["level"], []).append(f)
        if not by_level:
            return frame_iter
        hidden = set(reply.get("plumbing") or ()) if _hide_plumbing[0].value else set()
        return self._interleave(frame_iter, by_level, hidden)

    @staticmethod
    def _interleave(frame_iter, by_level, hidden):
        for decorator in frame_iter:
            try:
                level = decorator.inferior_frame().level()
            except (gdb.error, AttributeError):
                level = None
            for py in by_level.get(level, ()):
                yield PythonFrame(decorator, py)
            if level not in hidden:
                yield decorator


_hide_plumbing = []


def _register():
    PyBt()
    PyBt("py-bt-full", full=True)
    PyList()
    PyMove("py-up", 1)
    PyMove("py-down", -1)
    PyLocals()
    PyPrint()
    CcBt()
    CcThreads()
    if FrameDecorator is not object and hasattr(gdb, "frame_filters"):
        _hide_plumbing.append(HidePlumbing())
        PythonFrameFilter()
    gdb.events.stop.connect(_on_stop)
    gdb.events.exited.connect(_on_exit)


_register()
