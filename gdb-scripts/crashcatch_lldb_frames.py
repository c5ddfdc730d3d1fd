"""Python frames in lldb's own `bt` (lldb 22+: scripted frame providers).

crashcatch_lldb.py installs `PythonFrames` (LLVM PRs #161870, #166662, #166664) where lldb
has frame providers; elsewhere only `crashcatch-frames`, which says what is needed (`cc-bt`
is the way there). For each stopped thread `bt` then shows `[Python] f at file.py:N` frames
just inside the eval-loop frame running each, as gdb's frame filter does; where crashcatch's
own unwinder goes further than lldb's (a minidump), its frames continue the stack.
`crashcatch-frames off` removes the provider, `crashcatch-frames on` puts it back.

What lldb 22 expects of a provider, found by running it (the docs say little):
- lldb makes a provider per thread at every stop, internal ones too (library loads, steps),
  and asks those for frame 0 only: frame 0 is always lldb's own and costs nothing; the
  helper is asked the first time a frame beyond it is wanted.
- Touching an input frame after handing it back to lldb (returning its index) aborts lldb
  ("Resource deadlock avoided"): frame 0 is read once, into a snapshot, when lldb asks for
  it; the others are all read before any of them is handed back.
- Providers belong to a target, and a new target copies the dummy target's stop hooks but
  not its providers: a stop hook registers the provider on targets made after the import
  (at their first stop); `crashcatch lldb` runs `crashcatch-frames auto` once its target
  exists, before the program runs.
- Registering while the process is stopped makes lldb print the stop location again,
  asynchronously (into the next command's output): on a core or minidump, where no stop
  follows, `crashcatch-frames on` does it when asked.
- lldb finds the class by name in its session dictionary, not sys.modules.
- A class with a mistake registers and is then ignored without a word (LLVM issue #180045):
  tests/test_lldb_frames.py checks `bt` itself.

Standard library and lldb's module only; runs in lldb's Python (3.6+), never imports
crashcatch.
"""
import sys

import lldb

try:
    from lldb.plugins.scripted_frame_provider import ScriptedFrameProvider
    from lldb.plugins.scripted_process import ScriptedFrame
except ImportError:  # lldb < 22: no frame providers
    ScriptedFrameProvider = ScriptedFrame = None

# The signal trampoline: the frame outside it was interrupted, its pc is no return address.
TRAMPOLINES = ("__restore_rt",)
PROVIDER = __name__ + ".PythonFrames"


def supported():
    """Whether this lldb has scripted frame providers."""
    return ScriptedFrameProvider is not None and hasattr(lldb.SBTarget, "RegisterScriptedFrameProvider")


# What crashcatch_lldb.py gives the provider (see install): "stack": fn(sbthread, info) ->
# the helper's `stack` reply asked with "unwind": true for the request's thread `info`
# ({"tid", "pthread", "name", "native", "regs"}); "native_frames": fn(frames) -> lldb's
# frames in the helper's format, `frames` having GetNumFrames() and GetFrameAtIndex(i).
_plugin = {}
# Whether `crashcatch-frames` is on, and [(target, provider id)] where it is registered.
_state = {"on": True, "registered": []}


class _Snapshot(object):
    """An lldb frame's answers, read once: lldb 22 aborts ("Resource deadlock avoided") when
    a provider touches an input frame it already handed back, and frame 0 is handed back at
    every stop before anything else is asked."""

    ASKED = ("IsValid", "GetPC", "GetSP", "IsInlined", "IsArtificial", "GetFunctionName", "GetFunction",
             "GetSymbol", "GetModule")

    def __init__(self, frame):
        self.answers = dict((name, getattr(frame, name)()) for name in self.ASKED if hasattr(frame, name))
        self.regs = {}
        for name in ("rip", "rsp", "rbp", "fs_base"):
            value = frame.FindRegister(name)
            if value.IsValid():
                self.regs[name] = value.GetValueAsUnsigned()

    def __getattr__(self, name):
        if name not in self.answers:
            raise AttributeError(name)
        answer = self.answers[name]
        return lambda: answer


class _InputFrames(object):
    """The provider's input frames as a thread's (GetNumFrames, GetFrameAtIndex), frame 0
    from its snapshot."""

    def __init__(self, frames, first):
        self.frames = frames
        self.first = first

    def GetNumFrames(self):
        return self.frames.GetSize()

    def GetFrameAtIndex(self, index):
        return self.first if index == 0 else self.frames.GetFrameAtIndex(index)


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


class _NativeFrame(ScriptedFrame or object):
    """A frame of crashcatch's own unwind beyond where lldb's stopped: its pc, named by
    lldb's symbols (the inlined call `depth` scopes out from the innermost one at pc)."""

    def __init__(self, thread, index, entry, depth, caller):
        super(_NativeFrame, self).__init__(thread, lldb.SBStructuredData())
        self.index = index
        self.entry = entry
        self.depth = depth
        self.caller = caller

    def get_id(self):
        return self.index

    def get_pc(self):
        return self.entry["pc"]

    def is_artificial(self):
        return False

    def is_inlined(self):
        return bool(self.entry.get("inlined"))

    def get_symbol_context(self):
        target = self.target
        # A return address is looked up one byte back: inside the call, not after it.
        lookup = self.entry["pc"] - (1 if self.caller else 0)
        addr = lldb.SBAddress(lookup, target)
        sc = target.ResolveSymbolContextForAddress(addr, lldb.eSymbolContextEverything)
        for _ in range(self.depth):
            parent_addr = lldb.SBAddress()
            parent = sc.GetParentOfInlinedScope(addr, parent_addr)
            if not parent.IsValid():
                break
            sc, addr = parent, parent_addr
        return sc

    def get_register_context(self):
        return None


def _matches(native, unwound):
    """{lldb level: index in crashcatch's unwind} for lldb's real (not inlined) frames that
    crashcatch's unwind has too, at the same pc and stack pointer."""
    at = {}
    for j, c in enumerate(unwound):
        if not c.get("inlined"):
            at.setdefault((c["pc"], c["sp"]), j)
    found = {}
    for f in native:
        j = None if f["inline"] else at.get((f["pc"], f["sp"]))
        if j is not None:
            found[f["level"]] = j
    return found


def _group_start(native, level):
    """The level of the first frame of the physical frame holding `level`: its inlined
    calls come before it in lldb's list, and the Python frames go before them all."""
    at = [i for i, f in enumerate(native) if f["level"] == level]
    if not at:
        return level
    i = at[0]
    while i > 0 and native[i - 1]["inline"] and native[i - 1]["sp"] == native[at[0]]["sp"]:
        i -= 1
    return native[i]["level"]


def plan(native, reply, count):
    """The frames `bt` shows, outermost last: lldb's frame indexes (int), Python frames
    ("py", frame) just inside the eval-loop frame running each, and where crashcatch's own
    unwind goes further than lldb's, its frames ("native", entry, inlined depth) from the
    last frame both unwinds share. `native`: lldb's frames as sent to the helper (not all of
    them: tail-call frames lldb made up are left out), `count` of them in all; `reply`: the
    helper's `stack` reply."""
    python = reply.get("frames") or ()
    unwound = reply.get("native") or []
    matched = _matches(native, unwound)
    # lldb's frames below level `kept` are shown, then crashcatch's from `tail_from` on.
    kept, tail_from = count, len(unwound)
    if matched:
        last = max(matched)
        # Where lldb's unwind stopped short (or went astray) after the last frame both
        # share, and crashcatch's went further: crashcatch's frames from there.
        if len(unwound) - matched[last] > count - last:
            kept, tail_from = last + 1, matched[last] + 1
    by_level, by_index = {}, {}
    for py in python:
        if py.get("level") is not None and py["level"] < kept:
            by_level.setdefault(_group_start(native, py["level"]), []).append(("py", py))
        elif py.get("native_index") is not None and py["native_index"] >= tail_from:
            by_index.setdefault(py["native_index"], []).append(("py", py))
    out = []
    for level in range(kept):
        out.extend(by_level.get(level, ()))
        out.append(level)
    depth = 0
    for j in range(tail_from, len(unwound)):
        out.extend(by_index.get(j, ()))
        entry = unwound[j]
        # Inlined calls share their caller's pc: each is one scope further out than the
        # entry before it at that pc.
        same_pc = j > tail_from and unwound[j - 1]["pc"] == entry["pc"] and unwound[j - 1].get("inlined")
        depth = depth + 1 if same_pc else 0
        inner = unwound[j - 1] if j > 0 else None
        caller = inner is not None and inner.get("function") not in TRAMPOLINES
        out.append(("native", entry, depth, caller))
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
        if self.first is None:
            self.first = _Snapshot(self.input_frames.GetFrameAtIndex(0))
        return self.first

    def _plan(self):
        if self.frames is None:
            self.frames = []  # a failure below: lldb's frames as they are
            if _plugin and _state["on"]:
                first = self._innermost()
                try:
                    native = _plugin["native_frames"](_InputFrames(self.input_frames, first))
                    regs = dict((k, v) for k, v in first.regs.items() if k != "fs_base")
                    info = {
                        "tid": self.thread.GetThreadID(),
                        "pthread": first.regs.get("fs_base") or None,
                        "name": self.thread.GetName(),
                        "native": native,
                        "regs": regs,
                    }
                    count = self.input_frames.GetSize()
                    self.frames = plan(native, _plugin["stack"](self.thread, info), count)
                except Exception:  # not a Python thread (or not yet): lldb's own frames
                    pass
        return self.frames

    def get_frame_at_index(self, index):
        if index == 0:
            # Every stop asks for frame 0 (internal ones too): neither the helper nor a
            # full unwind is needed for it.
            if not self.input_frames.GetFrameAtIndex(0).IsValid():
                return None
            self._innermost()
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
        if f[0] == "py":
            return _PythonFrame(self.thread, index, f[1])
        return _NativeFrame(self.thread, index, *f[1:])


def register(target):
    """Adds the provider to `target` (once); an error message or None."""
    if not supported() or not _state["on"] or not target or not target.IsValid():
        return None
    if any(t == target for t, _ in _state["registered"]):
        return None
    error = lldb.SBError()
    provider_id = target.RegisterScriptedFrameProvider(PROVIDER, lldb.SBStructuredData(), error)
    if error.Fail() or not provider_id:
        return error.GetCString() or "lldb refused the frame provider"
    _state["registered"].append((target, provider_id))
    return None


def unregister_all():
    for target, provider_id in _state["registered"]:
        if target.IsValid():
            target.RemoveScriptedFrameProvider(provider_id)
    del _state["registered"][:]


class RegisterAtStop(object):
    """A stop hook: a target created after the plugin was loaded gets the provider at its
    first stop (added before any target exists, the hook is the dummy target's, which lldb
    copies into every new target; it does not copy frame providers)."""

    def __init__(self, target, extra_args, internal_dict):
        pass

    def handle_stop(self, exe_ctx, stream):
        register(exe_ctx.GetTarget())
        return True


def _quietly(debugger, command):
    result = lldb.SBCommandReturnObject()
    debugger.GetCommandInterpreter().HandleCommand(command, result)
    return result


def install(debugger, internal_dict, stack, native_frames):
    """Called by crashcatch_lldb.py's __lldb_init_module with its `stack` and
    `native_frames` (see _plugin): `crashcatch-frames`, and where lldb has frame providers
    the provider on each target now and (through a stop hook) on later ones."""
    # lldb finds script functions and classes by name in its session dictionary, where
    # `command script import` puts the modules it imports; this one crashcatch_lldb.py did.
    internal_dict[__name__] = sys.modules[__name__]
    _quietly(debugger, "command script add -o -f %s.frames_command crashcatch-frames" % __name__)
    if not supported():
        return False
    _plugin.update(stack=stack, native_frames=native_frames)
    for i in range(debugger.GetNumTargets()):
        register(debugger.GetTargetAtIndex(i))
    _quietly(debugger, "target stop-hook add -I false -P %s.RegisterAtStop" % __name__)
    return True


def frames_command(debugger, command, exe_ctx, result, internal_dict):
    """crashcatch-frames on|off: Python frames in `bt` (lldb 22+). `crashcatch lldb` runs
    `crashcatch-frames auto` once the target exists: `on` for a target whose process is
    not there yet, without a word either way."""
    arg = command.strip()
    if arg not in ("on", "off", "auto"):
        result.SetError("crashcatch: usage: crashcatch-frames on|off")
        return
    if not supported():
        if arg == "on":
            result.SetError(
                "crashcatch: Python frames in bt need lldb 22 or newer (scripted frame providers); "
                "cc-bt shows them with this lldb"
            )
        return
    if arg == "off":
        _state["on"] = False
        unregister_all()
    else:
        _state["on"] = True
        for i in range(debugger.GetNumTargets()):
            target = debugger.GetTargetAtIndex(i)
            # Registering while a process is stopped makes lldb print the stop again,
            # asynchronously, into whatever comes next: `auto` leaves a loaded core or an
            # attached process alone (the stop hook or `crashcatch-frames on` does it).
            if arg == "auto" and target.GetProcess().IsValid():
                continue
            message = register(target)
            if message and arg == "on":
                result.SetError("crashcatch: %s" % message)
                return
    if arg != "auto":
        result.AppendMessage("crashcatch: Python frames in bt: %s" % ("on" if _state["on"] else "off"))
