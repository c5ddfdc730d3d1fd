"""`crashcatch symbolize` on dumps made to attack whoever reads them:
- strings carrying terminal escape sequences (a real crash whose argv, annotation, thread
  names, function name, script file name and source line carry them) reach the terminal
  escaped in the text output, and exactly as they were in the JSON;
- dumps rewritten to make per-thread or per-frame work quadratic (tens of thousands of
  threads; a cyclic frame list whose code has a line table megabytes long) are read within
  a bounded time, saying what was left out."""
import json
import os
import signal
import subprocess

import pytest

from crashlib import run_script
from hostile_dumps import hostile, thread_list
from interpreters import REPO

SYMBOLIZE = os.path.join(REPO, "target", "release", "crashcatch-symbolize")

# An OSC window-title sequence, erase-line, carriage return, an 8-bit CSI (C1) and a
# right-to-left override. In the script's text they are Python escapes; the script builds
# the real characters.
HOSTILE = "<\\x1b]0;pwned\\x07\\x1b[2K\\r\\x9bX\\u202e>"
HOSTILE_CHARS = "<\x1b]0;pwned\x07\x1b[2K\r\x9bX\u202e>"
# A carriage return ends a source line (for Python as for any reader): not in the line.
SOURCE_CHARS = HOSTILE_CHARS.replace("\r", "")
# What the OS keeps of a thread name: 15 bytes.
OS_NAME = "\x1b]0;pwned\x07"
# Raw bytes that must never reach a terminal from the dump.
RAW = [b"\x1b", b"\r", b"\x07", b"\x9b", "\u202e".encode()]

CODE = f"""
import ctypes, os, runpy, sys, threading
H = "{HOSTILE}"
# The crashing code lives in a file whose name and crashing line carry H.
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "evil" + H + ".py")
with open(path, "w", encoding="utf-8") as f:
    f.write("import buggyext, sys\\n"
            "def crash():\\n"
            "    return buggyext.segfault(1)  # " + H.replace("\\r", "") + "\\n"
            "fields = dict(co_name=H, co_qualname=H) if sys.version_info >= (3, 11) else dict(co_name=H)\\n"
            "crash.__code__ = crash.__code__.replace(**fields)\\n"
            "crash()\\n")
threading.current_thread().name = H
import crashcatch
crashcatch.enable()
crashcatch.annotate(H, H)
ready, stop = threading.Event(), threading.Event()
def worker():
    ctypes.CDLL(None).prctl(15, b"\\x1b]0;pwned\\x07", 0, 0, 0)  # PR_SET_NAME
    ready.set()
    stop.wait()
threading.Thread(target=worker, name=H, daemon=True).start()
ready.wait()
runpy.run_path(path, init_globals={{"H": H}})
"""


def symbolize(interp, dump, *args, timeout=120):
    """`crashcatch symbolize` as installed in the interpreter's venv; output as bytes."""
    inner = dump[len(interp.root):] if interp.root else dump
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    return interp.run([crashcatch, "symbolize", inner, *args], text=False, timeout=timeout)


def test_escape_sequences_from_the_dump_never_reach_the_terminal(interp):
    r = run_script(interp, CODE, args=[HOSTILE_CHARS])
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    text = symbolize(interp, r.dumps[0])
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert [raw for raw in RAW if raw in out] == [], out
    shown = out.decode()
    escaped = "<\\x1b]0;pwned\\x07\\x1b[2K\\r\\x9bX\\u202e>"
    assert f"command: {interp.venv_python} {r.script} {escaped}" in shown, shown
    assert f"annotations: {escaped}={escaped}" in shown, shown
    assert f'"{escaped}" (crashed' in shown, shown  # the main thread's Python name
    assert f'File "{os.path.dirname(r.script)}/evil{escaped}.py", line 3, in {escaped}' in shown, shown
    assert "return buggyext.segfault(1)  # " + escaped.replace("\\r", "") in shown, shown

    doc = symbolize(interp, r.dumps[0], "--json")
    assert doc.returncode == 0, doc.stderr
    assert [raw for raw in RAW if raw in doc.stdout] == [], doc.stdout
    doc = json.loads(doc.stdout)
    assert doc["process"]["argv"][-1] == HOSTILE_CHARS
    assert doc["annotations"] == {HOSTILE_CHARS: HOSTILE_CHARS}
    crashed = doc["threads"][0]
    assert crashed["python_name"] == HOSTILE_CHARS
    frame = crashed["python_frames"][0]
    assert (frame["function"], frame["name"]) == (HOSTILE_CHARS, HOSTILE_CHARS), frame
    assert frame["file"] == f"{os.path.dirname(r.script)}/evil{HOSTILE_CHARS}.py", frame
    assert frame["source"] == "    return buggyext.segfault(1)  # " + SOURCE_CHARS, frame
    worker = [t for t in doc["threads"][1:] if t["python_name"] == HOSTILE_CHARS]
    assert [t["name"] for t in worker] == [OS_NAME], doc["threads"]


def test_dumps_with_tens_of_thousands_of_threads_are_read_quickly(tmp_path):
    """A real crash's dump, its threads multiplied to 50 000 (distinct, the crashing one
    repeated, or each with a native stack 65 536 frames deep): read within a minute, with
    what was left out said."""
    from conftest import INTERPRETERS
    from crashlib import THREADED_CRASH
    interp = next(i for i in INTERPRETERS if not i.root)
    r = run_script(interp, THREADED_CRASH.format(call="buggyext.segfault(1)"))
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    original = open(r.dumps[0], "rb").read()
    cut = "left out: native stacks cut: at most 131072 native frames are read for all threads together"
    said = {"many-threads": ["left out: only 4096 of the dump's 50000 threads are read", cut],
            "repeated-thread": ["left out: 50000 repeated thread entries of the dump ignored"],
            # 50 000 more threads each with a frame-pointer chain 65 536 frames long.
            "deep-native": [f"left out: only 4096 of the dump's {len(thread_list(original)) + 50_000} threads "
                            "are read", cut]}
    for name, data in hostile(original, 50_000).items():
        path = tmp_path / f"{name}.dmp"
        path.write_bytes(data)
        for args in ([], ["--json"]):
            out = subprocess.run([SYMBOLIZE, "symbolize", str(path), *args], capture_output=True, timeout=60)
            assert out.returncode in (0, 2) and b"panicked" not in out.stderr, (name, args, out.stderr[-2000:])
            if not args:
                assert all(note in out.stdout.decode() for note in said[name]), (name, out.stdout[:3000])
            else:
                left_out = " ".join(json.loads(out.stdout)["left_out"])
                assert all(note[len("left out: "):] in left_out for note in said[name]), (name, left_out)


def test_a_long_line_table_shared_by_a_cyclic_frame_list_is_read_once(tmp_path):
    """A frame list that loops on itself whose code's line table is 4 MiB that never reach
    the frame's instruction: the loop is recognised (the frame is shown once, and the
    problem says so) and the table read once, within a minute. Before loops were
    recognised the walk decoded 10 000 copies of the frame here, each line looked up once."""
    from conftest import INTERPRETERS
    from hostile_dumps import regressions
    interp = next((i for i in INTERPRETERS if not i.root and i.minor <= 10), None)
    if interp is None:
        pytest.skip("needs a host interpreter with frame objects (3.9 or 3.10)")
    r = run_script(interp, "import crashcatch, buggyext\ncrashcatch.enable()\nbuggyext.segfault(1)\n")
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    path = tmp_path / "long-line-table.dmp"
    path.write_bytes(regressions(open(r.dumps[0], "rb").read(), 4 << 20)["long-line-table"])
    out = subprocess.run([SYMBOLIZE, "symbolize", str(path), "--json"], capture_output=True, timeout=60)
    assert out.returncode in (0, 2) and b"panicked" not in out.stderr, out.stderr[-2000:]
    crashed = json.loads(out.stdout)["threads"][0]
    assert len(crashed["python_frames"]) == 1 and crashed["python_frames"][0]["line"], crashed["python_problem"]
    assert "the frame chain loops back to frame 0x" in crashed["python_problem"], crashed["python_problem"]
