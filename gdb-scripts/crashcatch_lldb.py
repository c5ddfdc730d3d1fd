"""crashcatch's lldb commands: Python stacks, source, values and threads of a CPython 3.9+
process, core or crashcatch minidump, without the interpreter's debug info.

Load with `crashcatch lldb ARGS...`, or in a running lldb with `command script import PATH`
(PATH: the output of `crashcatch debugger-scripts --lldb`). See README.md next to this file.

This file is the lldb adapter of crashcatch_bridge.py (next to it: the helper process, the
commands and their output, shared with gdb's commands) and the commands' registration. It
runs in lldb's own embedded Python (3.6+), usually not the target's: standard library and
lldb's module only; never imports crashcatch. Memory is read with SBProcess.ReadMemory, so
live processes, cores and minidumps behave alike.
"""
import os
import sys

import lldb

try:
    _HERE = os.path.dirname(os.path.abspath(__file__))
except NameError:
    _HERE = ""
if _HERE and _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import crashcatch_bridge as bridge  # noqa: E402 (found through the path set above)
import crashcatch_lldb_frames  # noqa: E402
from crashcatch_bridge import CrashcatchError  # noqa: E402

# Native frames sent to the helper at most per thread (a runaway recursion has millions).
MAX_NATIVE_FRAMES = 20000
# Where the kernel returns from a signal handler: the pc of the frame it interrupted is
# where the signal hit, not a return address.
SIGNAL_TRAMPOLINES = ("__restore_rt",)
INVALID_ADDRESS = 0xFFFFFFFFFFFFFFFF
# How lldb names code without a symbol (stripped programs): not a name.
UNNAMED = "___lldb_unnamed_symbol"


def _valid(addr):
    return addr is not None and addr not in (0, INVALID_ADDRESS)


def _register(frame, name):
    value = frame.FindRegister(name)
    if not value.IsValid():
        return None
    error = lldb.SBError()
    n = value.GetValueAsUnsigned(error, INVALID_ADDRESS)
    return n if error.Success() and n != INVALID_ADDRESS else None


def _module_name(module):
    if not module.IsValid():
        return None
    return module.GetFileSpec().GetFilename()


def _native_frames(thread, limit=MAX_NATIVE_FRAMES):
    """The thread's native frames, innermost first, as lldb unwinds them."""
    frames = []
    inner_is_trampoline = False
    # lldb gives the frame that inlined calls sit in the pc where the inlined code begins;
    # its real pc (which the helper symbolizes, inlined calls included) is the innermost
    # inlined frame's.
    group_pc = None
    for level in range(min(thread.GetNumFrames(), limit)):
        f = thread.GetFrameAtIndex(level)
        if not f.IsValid():
            break
        # Frames lldb infers from DWARF call sites (tail calls) have no return address on
        # the stack, and crashcatch's own unwinder has none.
        if hasattr(f, "IsArtificial") and f.IsArtificial():
            continue
        # Frames crashcatch_lldb_frames adds to `bt` (Python frames, crashcatch's own unwind
        # past lldb's) are not lldb's unwind.
        if hasattr(f, "IsSynthetic") and f.IsSynthetic():
            continue
        name = f.GetFunctionName() or (f.GetSymbol().GetName() if f.GetSymbol().IsValid() else None)
        if name and name.startswith(UNNAMED):
            name = None
        inline = bool(f.IsInlined())
        if inline and thread.GetFrameAtIndex(level + 1).GetSP() != f.GetSP():
            # lldb (19) sometimes shows an inlined call without the function it is inlined
            # into: the next frame is another physical frame, so this one stands for its own.
            inline = False
            function = f.GetFunction()
            name = (function.GetName() if function.IsValid() else None) or name
        pc = f.GetPC() if group_pc is None else group_pc
        group_pc = pc if inline else None
        frames.append(
            {
                "level": level,
                "pc": pc,
                "sp": f.GetSP(),
                "inline": inline,
                # The pc of a frame that called another is a return address, unless the
                # frame inside it is a signal trampoline (the pc is where the signal hit).
                "caller": level > 0 and not inner_is_trampoline,
                "name": name,
                "module": _module_name(f.GetModule()),
            }
        )
        if not inline:
            inner_is_trampoline = name in SIGNAL_TRAMPOLINES
    return frames


class Lldb(object):
    """crashcatch_bridge's view of lldb, for one command run."""

    def __init__(self, debugger, exe_ctx, result, target=None):
        self.result = result
        self.target = target or (exe_ctx.GetTarget() if exe_ctx is not None else lldb.SBTarget())
        if not self.target.IsValid():
            self.target = debugger.GetSelectedTarget()
        self.process = self.target.GetProcess() if self.target.IsValid() else lldb.SBProcess()

    def thread_stack(self, thread):
        """The helper's stack reply for any lldb thread, with crashcatch's own unwind
        ("native", each Python frame's "native_index" and lldb "level"): for code that is
        not a command, e.g. a frame provider (`Lldb(None, None, None, target=...)`)."""
        fields = self._unwind_fields()
        fields["thread"] = self._thread_info(thread, True, with_regs=True)
        return bridge.request(self, "stack", **fields)

    # --- memory and symbols

    def read_memory(self, addr, length):
        """The target's memory, all `length` bytes or none (as gdb reads: lldb returns what a
        minidump's range holds of it, and the helper then reads smaller pieces); where the
        process (a core) lacks it, the module file's read-only section there (a kernel core
        leaves out read-only file mappings: .rodata, .text)."""
        try:
            # A minidump's memory is a list of ranges, and lldb reads from one at a time:
            # a read across two adjacent ranges comes back short, and goes on in the next.
            data = b""
            while len(data) < length:
                error = lldb.SBError()
                part = self.process.ReadMemory(addr + len(data), length - len(data), error)
                if not error.Success() or not part:
                    break
                data += bytes(part)
            if len(data) == length:
                return data
            # Only a read-only section's bytes are the file's: a writable one's (.data,
            # .bss) changed as the program ran, and a dump holds the part that matters.
            address = self.target.ResolveLoadAddress(addr)
            section = address.GetSection()
            if data or not section.IsValid() or section.GetPermissions() & lldb.ePermissionsWritable:
                return b""
            error = lldb.SBError()
            data = self.target.ReadMemory(address, length, error)
        except (OverflowError, ValueError, TypeError):
            return b""
        return bytes(data) if error.Success() and data and len(data) == length else b""

    def _symbols(self, name):
        """lldb's symbols named `name` with a load address, data and code (dynamic symbols
        of stripped programs too): the program's first, as the dynamic linker binds them."""
        found = []
        contexts = self.target.FindSymbols(name)
        for i in range(contexts.GetSize()):
            symbol = contexts.GetContextAtIndex(i).GetSymbol()
            if not symbol.IsValid() or symbol.GetType() in (lldb.eSymbolTypeUndefined, lldb.eSymbolTypeTrampoline):
                continue
            addr = symbol.GetStartAddress()
            load = addr.GetLoadAddress(self.target)
            if _valid(load):
                found.append((load, addr))
        return found

    def symbol(self, name):
        found = self._symbols(name)
        return found[0][0] if found else None

    def core_file(self):
        spec = self.process.GetCoreFile() if hasattr(self.process, "GetCoreFile") else None
        if spec is None or not spec.IsValid():
            return None
        return spec.fullpath

    def symbol_file(self, addr):
        module = self.target.ResolveLoadAddress(addr).GetModule()
        if not module.IsValid():
            return None
        return module.GetFileSpec().fullpath

    # --- threads and frames

    def require_process(self):
        gone = (lldb.eStateInvalid, lldb.eStateUnloaded, lldb.eStateDetached, lldb.eStateExited)
        if not self.process.IsValid() or self.process.GetState() in gone or self.process.GetNumThreads() == 0:
            raise CrashcatchError("no process: run the program (`run`), attach with -p PID, or open a core (-c)")
        if self.process.GetState() == lldb.eStateRunning:
            raise CrashcatchError("the process is running: interrupt it first (Ctrl-C or `process interrupt`)")

    def _thread_info(self, thread, with_native, with_regs=False):
        """What the helper needs of an lldb thread."""
        frame = thread.GetFrameAtIndex(0)
        info = {
            "tid": thread.GetThreadID(),
            "pthread": _register(frame, "fs_base"),
            "name": thread.GetName(),
        }
        if with_native:
            info["native"] = _native_frames(thread)
        if with_regs:
            regs = dict((name, _register(frame, name)) for name in ("rip", "rsp", "rbp"))
            if None not in regs.values():
                info["regs"] = regs
        return info

    def _program_path(self):
        exe = self.target.GetExecutable()
        return exe.fullpath if exe.IsValid() and exe.fullpath else ""

    def _modules(self):
        """The target's modules as lldb lists them (lldb has no `info auxv` for the helper's
        own link_map walk): load address of the ELF header, size to the end of the last
        loaded section, build id (lldb's UUID of an ELF file; a 4-byte one is a CRC, not a
        build id)."""
        modules = []
        for i in range(self.target.GetNumModules()):
            module = self.target.GetModuleAtIndex(i)
            header = module.GetObjectFileHeaderAddress().GetLoadAddress(self.target)
            path = module.GetFileSpec().fullpath
            if not _valid(header) or not path:
                continue
            base = header & ~0xFFF
            end = base
            for j in range(module.GetNumSections()):
                section = module.GetSectionAtIndex(j)
                load = section.GetLoadAddress(self.target)
                if _valid(load) and section.GetName() != ".tbss":
                    end = max(end, load + section.GetByteSize())
            build_id = (module.GetUUIDString() or "").replace("-", "").lower()
            modules.append(
                {"path": path, "base": base, "size": end - base, "build_id": build_id if len(build_id) >= 16 else None}
            )
        return modules

    def _regions(self):
        """The process's memory regions as [start, end, "rwx"]: code and stack bounds for
        the helper's unwinder."""
        regions = []
        listed = self.process.GetMemoryRegions()
        for i in range(listed.GetSize()):
            region = lldb.SBMemoryRegionInfo()
            if not listed.GetMemoryRegionAtIndex(i, region) or not region.IsMapped():
                continue
            perms = "%s%s%s" % (
                "r" if region.IsReadable() else "-",
                "w" if region.IsWritable() else "-",
                "x" if region.IsExecutable() else "-",
            )
            regions.append([region.GetRegionBase(), region.GetRegionEnd(), perms])
        return regions

    def _unwind_fields(self):
        """The request fields for the helper's own unwind from each thread's registers
        (lldb's unwinder stops early on some targets: lldb-19 in pyenv's interpreters)."""
        return {
            "unwind": True,
            "modules": self._modules(),
            "regions": self._regions(),
            "program_path": self._program_path(),
        }

    def _threads(self):
        threads = [self.process.GetThreadAtIndex(i) for i in range(self.process.GetNumThreads())]
        return sorted(threads, key=lambda t: t.GetIndexID())

    def stack_fields(self, levels):
        thread = self.process.GetSelectedThread()
        if not levels:  # py-bt: the Python frames alone, no unwind needed
            return {"thread": self._thread_info(thread, False), "program_path": self._program_path()}
        fields = self._unwind_fields()
        # lldb's frames give the levels of crashcatch's, for py-up/py-down to select.
        fields["thread"] = self._thread_info(thread, True, with_regs=True)
        return fields

    def cc_bt_fields(self, all_threads):
        threads = self._threads() if all_threads else [self.process.GetSelectedThread()]
        fields = self._unwind_fields()
        fields["threads"] = [self._thread_info(t, False, with_regs=True) for t in threads]
        return fields

    def threads(self):
        selected = self.process.GetSelectedThread().GetThreadID()
        rows = []
        for t in self._threads():
            row = {"num": t.GetIndexID(), "name": t.GetName(), "selected": t.GetThreadID() == selected}
            rows.append((row, self._thread_info(t, False)))
        return rows

    def selection_key(self):
        return (self.process.GetProcessID(), self.process.GetSelectedThread().GetThreadID(),
                self.process.GetStopID(), self.selected_level())

    def selected_level(self):
        frame = self.process.GetSelectedThread().GetSelectedFrame()
        return frame.GetFrameID() if frame.IsValid() else 0

    def select_level(self, level):
        self.process.GetSelectedThread().SetSelectedFrame(level)

    def write(self, text):
        if hasattr(self.result, "Print"):
            self.result.Print(text)
        else:  # an lldb older than SBCommandReturnObject.Print: one message per line
            for line in text.splitlines():
                self.result.AppendMessage(line)


def _command(function):
    """An lldb command function running `function` of the bridge: errors are
    `crashcatch: message` results, never tracebacks."""

    def command(debugger, arg, exe_ctx, result, internal_dict):
        error = bridge.run(function, Lldb(debugger, exe_ctx, result), arg or "")
        if error is not None:
            result.SetError(error)

    command.__doc__ = function.__doc__
    return command


# lldb finds command functions by name in this module: cmd_py_bt for py-bt, ...
for _name, _function in bridge.COMMANDS:
    globals()["cmd_" + _name.replace("-", "_")] = _command(_function)


def _provider_stack(thread, info):
    """The `stack` reply for `bt`'s Python frames (crashcatch_lldb_frames, lldb 22+): with
    crashcatch's own unwind of `thread` from the registers in `info`, which the provider
    reads from its own input frames (Lldb.thread_stack would ask the thread for the frames
    lldb is asking the provider for)."""
    adapter = Lldb(None, None, None, target=thread.GetProcess().GetTarget())
    return bridge.request(adapter, "stack", thread=info, **adapter._unwind_fields())


def __lldb_init_module(debugger, internal_dict):
    interpreter = debugger.GetCommandInterpreter()
    for name, _ in bridge.COMMANDS:
        add = "command script add -f %s.cmd_%s %s" % (__name__, name.replace("-", "_"), name)
        # -o: a second import replaces the commands (lldb 14+); older lldb lacks the option.
        for command in (add.replace(" add ", " add -o ", 1), add):
            result = lldb.SBCommandReturnObject()
            interpreter.HandleCommand(command, result)
            if result.Succeeded():
                break
        else:
            sys.stderr.write("crashcatch: cannot add the lldb command %s: %s\n" % (name, result.GetError()))
    crashcatch_lldb_frames.install(debugger, internal_dict, _provider_stack, _native_frames)
