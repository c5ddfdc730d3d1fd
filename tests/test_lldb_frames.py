"""Python frames in lldb's own `bt` (gdb-scripts/crashcatch_lldb_frames.py: a scripted frame
provider, lldb 22+), run by `crashcatch lldb` in batch mode on every interpreter whose lldb
has frame providers (the sid chroot's lldb-22): stopped live at a SIGSEGV in buggyext called
back from Python (Python → C → Python → C), and on a crashcatch minidump of that crash opened
directly. Truth: the script's own lines, lldb's own unwind (`crashcatch-frames off`), and for
the minidump lldb's unwind of the same crash live. On an lldb without frame providers the
plugin must leave `bt` as it is.
"""
import re
import textwrap

import pytest

from crashlib import run_script, script_line
from test_gdb_scripts import CALLBACK, TRACEBACKS, marked_sections
from test_lldb_scripts import lldb_versions

# The same crash leaving a crashcatch minidump.
CALLBACK_DUMP = "import crashcatch\ncrashcatch.enable(minidump=True)\n" + textwrap.dedent(CALLBACK).lstrip()
# (function, marker) of its Python frames, innermost first, and how they group into the
# eval-loop calls running them (3.11+: one call runs the frames Python called directly).
PYTHON_RUNS = [[("crash", "crash"), ("callback", "callback")], [("main", "main"), ("<module>", "module")]]

FRAME_RE = re.compile(r"^\s+(?:\* )?frame #(?P<n>\d+): (?P<text>.*)$")
PYTHON_RE = re.compile(r"^\[Python\] (?P<func>\S+) at (?P<file>[^:]+):(?P<line>\d+) \[synthetic\]$")
# A native frame: `0x… module`function(args) at file:line [tags]` or `… + offset`.
NATIVE_RE = re.compile(r"^0x[0-9a-f]+ (?P<module>[^`]+)`(?P<func>[^( ]+)")


def lldb_path(interp):
    """The major version of the lldb `crashcatch lldb` picks in this interpreter's world
    (the newest with its Python module)."""
    versions = lldb_versions(interp)
    if not versions:
        pytest.skip(f"no lldb with its Python module for {interp.name}")
    return versions[-1]


def needs_providers(interp):
    if lldb_path(interp) < 22:
        pytest.skip(f"lldb {lldb_path(interp)} has no scripted frame providers (22+)")


def run_lldb(interp, code, commands, *, core=False, timeout=240):
    """Runs `code` under `crashcatch lldb -b -o run -k C…` (with `core`: runs it to its crash
    first, then `crashcatch lldb -c DUMP -o C…` on the minidump it left) inside the
    interpreter's world; {command: its output} for each of `commands` (a repeated command's
    later outputs get a `#n` suffix), and the whole output."""
    marked = []
    for i, c in enumerate(commands):
        marked += [f"script print('@@{i}')", c]
    marked.append(f"script print('@@{len(commands)}')")
    runner = f"""
import glob, os, subprocess, sys
here = os.path.dirname(os.path.abspath(__file__))
target = os.path.join(here, "target.py")
with open(target, "w") as f:
    f.write({textwrap.dedent(code).lstrip()!r})
env = dict(os.environ, LC_ALL="C.UTF-8")
argv = [sys.executable, "-m", "crashcatch", "lldb", "-b"]
if {core!r}:
    env["CRASHCATCH_DUMP_DIR"] = os.path.join(here, "target-dumps")
    subprocess.run([sys.executable, target], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dumps = glob.glob(os.path.join(here, "target-dumps", "*.dmp"))
    assert len(dumps) == 1, dumps
    argv += ["-c", dumps[0]]
    for c in {marked!r}:
        argv += ["-o", c]
else:
    argv += ["-o", "run"]
    for c in {marked!r}:
        argv += ["-k", c]
    argv += ["--", sys.executable, target]
r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout={timeout}, env=env)
sys.stdout.buffer.write(r.stdout)
"""
    r = run_script(interp, runner, timeout=timeout + 60)
    out = r.stdout
    assert r.returncode == 0, (r.stdout, r.stderr)
    for bad in TRACEBACKS:
        assert bad not in out, out
    return marked_sections(out, commands), out


def frames(bt):
    """bt's frames, outermost last: ("py", function, file, line) or ("c", module, function,
    whether lldb marks it [synthetic]) or ("?", text)."""
    # lldb may show the stop again (its frame 0 alone) around bt's output, after
    # `crashcatch-frames on|off`: bt's thread block is the longest.
    blocks = [[]]
    for line in bt.splitlines():
        if line.startswith("* thread #"):
            blocks.append([])
        m = FRAME_RE.match(line)
        if m:
            blocks[-1].append(m)
    out = []
    for m in max(blocks, key=len):
        assert int(m["n"]) == len(out), bt
        text = m["text"]
        py, native = PYTHON_RE.match(text), NATIVE_RE.match(text)
        if py:
            out.append(("py", py["func"], py["file"], int(py["line"])))
        elif native:
            out.append(("c", native["module"], native["func"], "[synthetic]" in text))
        else:
            out.append(("?", text))
    return out


def check_python_frames(bt, code):
    """The script's Python frames, innermost first, at its lines; each eval-loop call's
    frames together, just inside one same native frame (the eval loop); between them the
    extension's call_back, and inside them its segfault."""
    got = frames(bt)
    python = [(i, f) for i, f in enumerate(got) if f[0] == "py"]
    want = [(func, "target.py", script_line(code, marker)) for run in PYTHON_RUNS for func, marker in run]
    assert [f[1:] for _, f in python] == want, bt
    names = [f[2] if f[0] == "c" else None for f in got]
    starts = [python[0][0], python[len(PYTHON_RUNS[0])][0]]
    ends = [python[len(PYTHON_RUNS[0]) - 1][0], python[-1][0]]
    assert ends[0] + 1 < starts[1], bt
    eval_loop = {names[e + 1] for e in ends}
    assert len(eval_loop) == 1 and None not in eval_loop, bt
    assert "segfault" in names[:starts[0]], bt
    assert "call_back" in names[ends[0] + 1:starts[1]], bt
    return got


def test_bt_live_shows_python_frames(interp):
    """Live, stopped at the SIGSEGV: `bt` has the Python frames inside lldb's own; with
    `crashcatch-frames off` exactly lldb's frames again, `on` brings them back."""
    needs_providers(interp)
    sections, out = run_lldb(interp, CALLBACK, ["bt", "crashcatch-frames off", "bt", "crashcatch-frames on", "bt"])
    got = check_python_frames(sections["bt"], CALLBACK)
    plain = frames(sections["bt#2"])
    assert not [f for f in plain if f[0] == "py"], sections["bt#2"]
    assert [f for f in got if f[0] != "py"] == plain, out
    assert frames(sections["bt#3"]) == got, out


def test_frame_select_lists_python_source(interp):
    """`frame select N` on a Python frame shows the script's line (lldb reads the source)."""
    needs_providers(interp)
    select = ("script lldb.debugger.HandleCommand('frame select %d' % next(f.GetFrameID() for f in lldb.thread"
              " if (f.GetFunctionName() or '').startswith('[Python]')))")
    sections, out = run_lldb(interp, CALLBACK, [select])
    line = script_line(CALLBACK, "crash")
    assert re.search(rf"^-> +{line}\s+return buggyext\.segfault\(2\)", sections[select], re.M), out


def test_bt_minidump_continues_past_lldb(interp):
    """A crashcatch minidump opened directly, after `crashcatch-frames on`: `bt` has the
    Python frames, and reaches the program's entry (`_start`) where lldb's own unwind of the
    dump may stop short."""
    needs_providers(interp)
    sections, out = run_lldb(interp, CALLBACK_DUMP, ["crashcatch-frames on", "bt", "crashcatch-frames off", "bt"],
                             core=True)
    got = check_python_frames(sections["bt"], CALLBACK_DUMP)
    assert got[-1][0] == "c" and got[-1][2] == "_start", sections["bt"]
    plain = frames(sections["bt#2"])
    # lldb's own frames come first, as lldb found them; crashcatch's continue the stack.
    lldb_own = [f for f in got if f[0] == "c" and not f[3]]
    assert lldb_own == [f for f in plain if f[0] == "c" and not f[3]][:len(lldb_own)], out


def test_older_lldb_leaves_bt_alone(interp):
    """On an lldb without frame providers the plugin loads (`crashcatch lldb` runs
    `crashcatch-frames auto` without a word), `bt` is lldb's and the other commands work;
    `crashcatch-frames on` says what is needed."""
    if lldb_path(interp) >= 22:
        pytest.skip(f"lldb {lldb_path(interp)} has frame providers")
    turn_on = "script lldb.debugger.HandleCommand('crashcatch-frames on')"
    sections, out = run_lldb(interp, CALLBACK, ["bt", "py-bt", turn_on])
    got = frames(sections["bt"])
    assert got and not [f for f in got if f[0] == "py"], out
    assert "Traceback (most recent call first):" in sections["py-bt"], out
    assert "crashcatch: Python frames in bt need lldb 22 or newer" in sections[turn_on], out
