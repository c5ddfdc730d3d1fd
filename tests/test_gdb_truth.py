"""The C stack of a report, checked against gdb on the very same crash: gdb stops the
process at the fault, prints its own unwind (through gdb's Python API, so inlined and
tail-call frames, which gdb rebuilds from DWARF and no stack walk can see, are told
apart), then lets the signal through to crashcatch's handler."""
import os
import re

import pytest

from crashlib import c_stack, run_script

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
