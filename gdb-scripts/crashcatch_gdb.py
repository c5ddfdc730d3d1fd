"""crashcatch's gdb commands: Python stacks, source, values and threads of a CPython 3.9+
process or core, without the interpreter's debug info.

Load with `crashcatch gdb ARGS...`, or in a running gdb with `source PATH` (PATH: the
output of `crashcatch debugger-scripts`). See README.md next to this file.

This file is the gdb adapter of crashcatch_bridge.py (next to it: the helper process, the
commands and their output, shared with the lldb plugin), the commands' registration and
the frame filter that shows Python frames in `bt`. It runs in gdb's own embedded Python
(3.6+): standard library only; never imports crashcatch.
"""
import os
import re
import sys

import gdb

try:
    from gdb.FrameDecorator import FrameDecorator
except ImportError:  # a gdb without frame filters: the commands still work
    FrameDecorator = object

try:
    _HERE = os.path.dirname(os.path.abspath(__file__))
except NameError:  # an old gdb that sources without __file__
    _HERE = ""
if _HERE and _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import crashcatch_bridge as bridge  # noqa: E402 (found through the path set above)
from crashcatch_bridge import CrashcatchError  # noqa: E402

# Native frames sent to the helper at most per thread (a runaway recursion has millions).
MAX_NATIVE_FRAMES = 20000


def _u64(value):
    return int(value) & 0xFFFFFFFFFFFFFFFF


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


# gdb's stops and exits: a py-up/py-down selection holds until the next one.
_stops = [0]


def _on_stop(_event):
    _stops[0] += 1


class Gdb(object):
    """crashcatch_bridge's view of gdb."""

    def read_memory(self, addr, length):
        try:
            return bytes(gdb.selected_inferior().read_memory(addr, length))
        except (gdb.MemoryError, gdb.error, OverflowError, ValueError):
            return b""

    def symbol(self, name):
        """The address of `name` (minimal symbols of stripped programs too), or None."""
        try:
            v = gdb.parse_and_eval("(unsigned long)&'%s'" % name)
            return int(v) or None
        except gdb.error:
            return None

    def symbol_file(self, addr):
        return gdb.solib_name(addr) or gdb.current_progspace().filename

    def require_process(self):
        if gdb.selected_thread() is None or not gdb.selected_inferior().threads():
            raise CrashcatchError("no process: run the program, attach with -p PID, or open a core")

    def stack_fields(self, levels):
        thread = gdb.selected_thread()
        selected = gdb.selected_frame()
        try:
            info = _thread_info(thread, with_native=levels)
        finally:
            selected.select()
        return {"thread": info, "program_path": gdb.current_progspace().filename or ""}

    def cc_bt_fields(self, all_threads):
        auxv = _auxv()
        return {
            "program_phdr": auxv.get("AT_PHDR", 0),
            "program_phnum": auxv.get("AT_PHNUM", 0),
            "program_path": gdb.current_progspace().filename or "",
            "threads": [info for _, info in self._each_thread(all_threads, True)],
        }

    def threads(self):
        selected = gdb.selected_thread()
        return [
            ({"num": t.num, "name": t.name, "selected": t == selected}, info)
            for t, info in self._each_thread(True, False)
        ]

    @staticmethod
    def _each_thread(all_threads, with_native):
        """[(gdb thread, its request fields)] of the selected thread or every thread,
        leaving gdb's selection as it was."""
        selected_thread = gdb.selected_thread()
        selected_frame = gdb.selected_frame()
        threads = sorted(gdb.selected_inferior().threads(), key=lambda t: t.num) if all_threads else [selected_thread]
        infos = []
        try:
            for t in threads:
                t.switch()
                infos.append((t, _thread_info(t, with_native)))
        finally:
            selected_thread.switch()
            selected_frame.select()
        return infos

    def selection_key(self):
        return (gdb.selected_thread().ptid, _stops[0], self.selected_level())

    def selected_level(self):
        try:
            return gdb.selected_frame().level()
        except (gdb.error, AttributeError):
            return 0

    def select_level(self, level):
        f = gdb.newest_frame()
        for _ in range(level):
            f = f.older()
        f.select()

    def write(self, text):
        gdb.write(text)


_gdb = Gdb()


class _Command(gdb.Command):
    """A bridge command whose errors are messages, never tracebacks."""

    def __init__(self, name, function):
        self.__doc__ = function.__doc__  # gdb's `help NAME` (read by gdb.Command's init)
        self.function = function
        super(_Command, self).__init__(name, gdb.COMMAND_STACK, gdb.COMPLETE_NONE)

    def invoke(self, arg, from_tty):
        error = bridge.run(self.function, _gdb, arg, passthrough=gdb.GdbError)
        if error is not None:
            raise gdb.GdbError(error)


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
            reply = bridge.stack(_gdb)
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
    for name, function in bridge.COMMANDS:
        _Command(name, function)
    if FrameDecorator is not object and hasattr(gdb, "frame_filters"):
        _hide_plumbing.append(HidePlumbing())
        PythonFrameFilter()
    gdb.events.stop.connect(_on_stop)
    gdb.events.exited.connect(_on_stop)


_register()
