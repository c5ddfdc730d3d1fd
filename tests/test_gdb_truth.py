"""The C stack of a report, checked against gdb on the very same crash: gdb stops the
process at the fault, prints its own unwind (through gdb's Python API, so inlined and
tail-call frames, which gdb rebuilds from DWARF and no stack walk can see, are told
apart), then lets the signal through to crashcatch's handler. And the symbolizer's native
frames, checked against gdb's `bt` on a kernel core of the same crash."""
import json
import os
import re

import pytest

from crashlib import FATAL_CALLS, c_stack, run_script

GDB_SCRIPT = r"""
set pagination off
set confirm off
run
python
f = gdb.newest_frame()
while f is not None:
    # Inlined and tail-call frames are reconstructed from DWARF: no stack frame exists.
    kind = {gdb.INLINE_FRAME: "inline", gdb.TAILCALL_FRAME: "tailcall"}.get(f.type(), "real")
    lib = gdb.solib_name(f.pc()) or gdb.current_progspace().filename
    print("GDBFRAME %s 0x%x %s %s" % (kind, f.pc(), f.name() or "?", lib))
    f = f.older()
end
continue
"""


def gdb_available(interp):
    return os.path.exists(interp.host_path("/usr/bin/gdb"))


def test_c_stack_matches_gdb(interp):
    if not gdb_available(interp):
        pytest.skip(f"gdb is not installed for {interp.name}")
    code = """
    import crashcatch, buggyext
    crashcatch.enable()
    buggyext.segfault(2)
    """
    # Write the gdb command file next to the script, then run the script under gdb.
    runner = f"""
import os, subprocess, sys
cmds = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cmds.gdb")
with open(cmds, "w") as f:
    f.write({GDB_SCRIPT!r})
target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "target.py")
with open(target, "w") as f:
    f.write({code!r}.replace("\\n    ", "\\n").strip() + "\\n")
r = subprocess.run(["gdb", "-nx", "-batch", "-x", cmds, "--args", sys.executable, target],
                   capture_output=True, text=True, timeout=120)
sys.stdout.write(r.stdout)
sys.stderr.write(r.stderr)
"""
    r = run_script(interp, runner, timeout=180)
    gdb_frames = [line.split(" ", 4)[1:] for line in r.stdout.splitlines() if line.startswith("GDBFRAME ")]
    assert gdb_frames, f"gdb printed no frames:\n{r.stdout}\n{r.stderr}"
    ours = c_stack(r.stderr)
    assert ours and ours[-1].get("raw") == "  <end of stack>", r.stderr
    ours = ours[:-1]

    real = [(int(pc, 16), name, lib) for kind, pc, name, lib in gdb_frames if kind == "real"]
    # Every frame gdb found, we found at the same address, in the same order, to the end.
    assert [int(f["addr"], 16) for f in ours] == [pc for pc, _, _ in real], (r.stdout, r.stderr)
    # In the extension (full DWARF and .symtab), the names agree too.
    for f, (pc, name, lib) in zip(ours, real):
        if "buggyext" in lib:
            assert f["sym"] == name, (f, name)
    # gdb sees the inlined frame (inlined_helper) that a symbol table cannot show; the
    # symbolizer (DWARF) reports it. Here we only check it is where DWARF says.
    inline = [name for kind, _, name, lib in gdb_frames if kind == "inline" and "buggyext" in lib]
    assert "inlined_helper" in inline or not inline, gdb_frames
    assert re.search(r"at deref_null\+0x[0-9a-f]+ ", r.stderr), r.stderr


CORE_SCRIPT = r"""
python
f = gdb.newest_frame()
# A fault the kernel raised happens again after crashcatch's handler returns, so the core
# starts at the faulting frame; a signal queued by software (abort) is queued again from
# inside the handler: then start below its signal frame.
g = f
while g is not None and g.type() != gdb.SIGTRAMP_FRAME:
    g = g.older()
f = g.older() if g is not None else f
while f is not None:
    kind = {gdb.INLINE_FRAME: "inline", gdb.TAILCALL_FRAME: "tailcall"}.get(f.type(), "real")
    sal = f.find_sal()
    file = sal.symtab.filename if sal.symtab else "-"
    print("COREFRAME %s 0x%x %s %s %d" % (kind, f.pc(), f.name() or "??", file, sal.line))
    f = f.older()
end
"""


def gdb_core_frames(interp, core, work_dir):
    """gdb's frames of the crashing thread in a kernel core, from the faulting frame on."""
    with open(interp.host_path(work_dir + "/core.gdb"), "w") as f:
        f.write(CORE_SCRIPT)
    r = interp.run(["gdb", "-nx", "-batch", "-x", work_dir + "/core.gdb", interp.python, core], timeout=300)
    frames = []
    for line in r.stdout.splitlines():
        if line.startswith("COREFRAME "):
            _, kind, pc, func, file, lineno = line.split(" ")
            frames.append({"kind": kind, "pc": int(pc, 16), "function": None if func == "??" else func,
                           "file": None if file == "-" else file, "line": int(lineno) or None})
    assert frames, r.stdout + r.stderr
    return frames


@pytest.mark.parametrize("kind", FATAL_CALLS)
def test_symbolized_native_frames_match_gdb_on_a_core_of_the_same_crash(interp, kind):
    """The crash leaves both crashcatch's minidump and a kernel core. gdb's `bt` on the core
    and `crashcatch symbolize` on the minidump give the same frames — every frame, inlined
    ones included, with the same function names wherever both name it, and the same file:line
    for the extension's frames — then the Python frames are merged in between."""
    if not gdb_available(interp):
        pytest.skip(f"gdb is not installed for {interp.name}")
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    if pattern != "core":
        pytest.skip(f"the kernel's core_pattern is {pattern!r}, not a plain 'core' file")
    code = """
    import crashcatch, buggyext
    crashcatch.enable()

    def callback():
        return {call}

    buggyext.call_back(callback)
    """
    call, signo, ext_innermost = FATAL_CALLS[kind]
    code = code.replace("{call}", call)
    r = run_script(interp, code, core=True)
    assert r.returncode == -signo and len(r.dumps) == 1, r.stderr
    run_dir = os.path.dirname(r.script)
    core = run_dir + "/core"
    assert os.path.exists(interp.host_path(core)), "no kernel core was written"
    try:
        truth = gdb_core_frames(interp, core, run_dir)
        crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
        dump = r.dumps[0][len(interp.root):] if interp.root else r.dumps[0]
        out = interp.run([crashcatch, "symbolize", dump, "--json"], timeout=120)
    finally:
        os.unlink(interp.host_path(core))
    assert out.returncode == 0, out.stderr
    ours = json.loads(out.stdout)["threads"][0]["native_frames"]
    # gdb rebuilds tail-call frames from DWARF call-site data; no unwinder sees them (the
    # caller's frame is gone), so they are left out of the comparison.
    truth = [t for t in truth if t["kind"] != "tailcall"]
    assert [(f["address"], f["inlined"]) for f in ours] == \
        [(t["pc"], t["kind"] == "inline") for t in truth], (ours, truth)
    for mine, gdbs in zip(ours, truth):
        if mine["file"] and gdbs["file"] or (mine["module"] or "").startswith("buggyext"):
            # Both read DWARF: the same function and line. (With symbol tables only, two
            # names of one address, such as __libc_start_main and its _impl, can differ.)
            assert mine["function"] == gdbs["function"], (mine, gdbs)
            assert (os.path.basename(mine["file"]), mine["line"]) == \
                (os.path.basename(gdbs["file"]), gdbs["line"]), (mine, gdbs)
        elif gdbs["function"] and not gdbs["file"]:
            assert mine["function"] is not None, (mine, gdbs)
    names = [f["function"] for f in ours if (f["module"] or "").startswith("buggyext")]
    assert names[:len(ext_innermost)] == ext_innermost, names
    assert names[-1] == "call_back", names
    if kind == "segfault":
        assert ours[3]["inlined"] and not ours[4]["inlined"]
