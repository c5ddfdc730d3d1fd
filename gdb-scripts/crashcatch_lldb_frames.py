"""Python frames in lldb's own `bt` (lldb 22+: scripted frame providers).

crashcatch_lldb.py registers `PythonFrames` on every target when lldb has scripted frame
providers (LLVM PRs #161870, #166662, #166664); older lldb skips it silently (`cc-bt` is the
way there). For each stopped thread, `bt` then shows `[Python] f at file.py:N` frames just
inside the eval-loop frame running each, as gdb's frame filter does; where crashcatch's own
unwinder goes further than lldb's, its frames continue the stack.
`crashcatch-frames off` removes the provider, `crashcatch-frames on` puts it back.

lldb makes a new provider for each thread at each stop, also at internal stops (library
loads, steps), and asks them for frame 0 only: that frame is always lldb's own and costs
nothing; the helper is asked on the first request for a frame beyond it.

A provider class with a mistake registers and is then ignored without a word (LLVM issue
#180045): `test_lldb_frames.py` checks `bt` itself. Standard library only; runs in lldb's
Python (3.6+), never imports crashcatch.
"""
import sys

import lldb

try:
    from lldb.plugins.scripted_frame_provider import ScriptedFrameProvider
    from lldb.plugins.scripted_process import ScriptedFrame
except ImportError:  # lldb < 22: no frame providers
    ScriptedFrameProvider = ScriptedFrame = None

# lldb frames sent to the helper at most (a runaway recursion has millions).
MAX_NATIVE_FRAMES = 20000
# Signal trampolines: the frame outside one was interrupted, its pc is no return address.
TRAMPOLINES = ("__restore_rt", "_sigtramp")
PROVIDER = __name__ + ".PythonFrames"


def supported():
    """Whether this lldb has scripted frame providers."""
    return ScriptedFrameProvider is not None and hasattr(lldb.SBTarget, "RegisterScriptedFrameProvider")


# How the provider gets a thread's Python frames: fn(thread, native) -> the helper's `stack`
# reply for an lldb thread and its frames in the helper's format (crashcatch_lldb.py sets it).
_stack_source = [None]
# Whether `crashcatch-frames` is on, and the provider's id in each target (by target index).
_state = {"on": True, "ids": {}}


def set_stack_source(fn):
    _stack_source[0] = fn


def frame_info(f, level):
    """One lldb frame in the helper's format."""
    module = f.GetModule()
    spec = module.GetFileSpec() if module.IsValid() else None
    return {
        "level": level,
        "pc": f.GetPC(),
        "sp": f.GetSP(),
        "inline": f.IsInlined(),
        "name": f.GetFunctionName() or None,
        "module": spec.GetFilename() if spec else None,
    }


def with_callers(frames):
    """Marks the frames whose pc is a return address: all but the innermost, one interrupted
    by a signal (inside the handler's trampoline) and the caller of an inlined frame (lldb
    gives it the inlined code's pc)."""
    inner = None
    for f in frames:
        f["caller"] = inner is not None and not inner["inline"] and inner["name"] not in TRAMPOLINES
        inner = f
    return frames


class _PythonFrame(ScriptedFrame or object):
    """A Python frame: no pc, named `[Python] f`, at the script's file and line (so
    `frame select N` lists the Python source)."""

    def __init__(self, thread, index, py):
        super(_PythonFrame, self).__init__(thread, lldb.SBStructuredData())
        self.index = index
        self.py = py

    def get_id(self):
        return self.index

    def get_function_name(self):
        return "[Python] %s" % (self.py.get("function") or "???")

    def is_artificial(self):
        return False

    def get_symbol_context(self):
        sc = lldb.SBSymbolContext()
        line = self.py.get("line")
        if self.py.get("file"):
            entry = lldb.SBLineEntry()
            entry.SetFileSpec(lldb.SBFileSpec(self.py["file"], False))
            if line is not None and line >= 0:
                entry.SetLine(line)
            sc.SetLineEntry(entry)
        return sc

    def get_register_context(self):
        return None


def plan(native, reply):
    """The frames `bt` shows: lldb's frame indexes (int) with the Python frames (dicts) each
    eval-loop frame runs just inside it. `native`: lldb's frames as sent to the helper,
    `reply`: the helper's `stack` reply (frames with their lldb `level`)."""
    by_level = {}
    for py in reply.get("frames") or ():
        if py.get("level") is not None:
            by_level.setdefault(py["level"], []).append(py)
    out = []
    for f in native:
        out.extend(by_level.get(f["level"], ()))
        out.append(f["level"])
    return out


class PythonFrames(ScriptedFrameProvider or object):
    """lldb's frames with the Python frames each eval loop runs (see the module's doc)."""

    @staticmethod
    def get_description():
        return "crashcatch: Python frames at the eval-loop frames running them"

    def __init__(self, input_frames, args):
        super(PythonFrames, self).__init__(input_frames, args)
        self.first = None
        self.frames = None

    def _innermost(self):
        # lldb 22 aborts ("Resource deadlock avoided") when a provider touches an input frame
        # it already returned: frame 0 is read before it is handed back, the others before
        # any of them is.
        if self.first is None:
            self.first = frame_info(self.input_frames.GetFrameAtIndex(0), 0)
        return self.first

    def _plan(self):
        if self.frames is None:
            self.frames = []  # a failure below: lldb's frames as they are
            source = _stack_source[0]
            if source is not None and _state["on"]:
                count = min(self.input_frames.GetSize(), MAX_NATIVE_FRAMES)
                native = [self._innermost()]
                native.extend(frame_info(self.input_frames.GetFrameAtIndex(i), i) for i in range(1, count))
                try:
                    self.frames = plan(native, source(self.thread, with_callers(native)))
                except Exception:  # not a Python thread (or not yet): lldb's own frames
                    pass
        return self.frames

    def get_frame_at_index(self, index):
        if index == 0:
            # Every stop asks for frame 0 (internal ones too): neither the helper nor a
            # full unwind is needed for it.
            first = self.input_frames.GetFrameAtIndex(0)
            if not first.IsValid():
                return None
            self.first = frame_info(first, 0)
            return 0
        count = self.input_frames.GetSize()
        frames = self._plan()
        if not frames:
            return index if index < count else None
        if index >= len(frames):
            return None
        f = frames[index]
        if isinstance(f, int):
            return f
        return _PythonFrame(self.thread, index, f)


def register(target):
    """Adds the provider to `target` (once); an error message or None."""
    if not supported() or not _state["on"] or not target or not target.IsValid():
        return None
    key = target.GetDebugger().GetIndexOfTarget(target)
    if key in _state["ids"]:
        return None
    error = lldb.SBError()
    provider_id = target.RegisterScriptedFrameProvider(PROVIDER, lldb.SBStructuredData(), error)
    if error.Fail() or not provider_id:
        return error.GetCString() or "lldb refused the frame provider"
    _state["ids"][key] = provider_id
    return None


def unregister_all(debugger):
    for i in range(debugger.GetNumTargets()):
        target = debugger.GetTargetAtIndex(i)
        provider_id = _state["ids"].pop(i, None)
        if provider_id:
            target.RemoveScriptedFrameProvider(provider_id)
    _state["ids"].clear()


class RegisterAtStop(object):
    """A stop hook (added to the dummy target, so every new target gets it): a target
    created after the plugin was loaded gets the provider at its first stop. lldb copies
    the dummy target's stop hooks but not its frame providers."""

    def __init__(self, target, extra_args, internal_dict):
        pass

    def handle_stop(self, exe_ctx, stream):
        register(exe_ctx.GetTarget())
        return True


def install(debugger, internal_dict):
    """Called by crashcatch_lldb.py's __lldb_init_module: the provider on each target now
    and (through a stop hook) on later ones, plus `crashcatch-frames on|off`. Nothing on an
    lldb without frame providers."""
    if not supported():
        return False
    # lldb finds script classes by name in its session dictionary, where `command script
    # import` puts the modules it imports; this one was imported by crashcatch_lldb.py.
    internal_dict[__name__] = sys.modules[__name__]
    for i in range(debugger.GetNumTargets()):
        register(debugger.GetTargetAtIndex(i))
    debugger.HandleCommand("target stop-hook add -I false -P %s.RegisterAtStop" % __name__)
    debugger.HandleCommand(
        "command script add -o -f %s.frames_command crashcatch-frames" % __name__
    )
    return True


def frames_command(debugger, command, exe_ctx, result, internal_dict):
    """crashcatch-frames on|off: Python frames in `bt` (lldb 22+)."""
    arg = command.strip()
    if arg not in ("on", "off", ""):
        result.SetError("crashcatch: usage: crashcatch-frames on|off")
        return
    if arg == "off":
        _state["on"] = False
        unregister_all(debugger)
    elif arg == "on":
        _state["on"] = True
        for i in range(debugger.GetNumTargets()):
            message = register(debugger.GetTargetAtIndex(i))
            if message:
                result.SetError("crashcatch: %s" % message)
                return
    result.AppendMessage("crashcatch: Python frames in bt: %s" % ("on" if _state["on"] else "off"))

