"""`crashcatch symbolize`: the stacks read back from a minidump alone, on every interpreter,
checked against the script's own lines; bad input gets a clear message and status 2."""
import json
import os
import random
import signal
import struct
import subprocess

import pytest

from crashlib import FATAL_CALLS, THREADED_CRASH, compile_buggyext, crash_segfault_importing_from, run_script, script_line
from interpreters import REPO

SYMBOLIZE = os.path.join(REPO, "target", "release", "crashcatch-symbolize")

CODE = """
import threading, crashcatch, buggyext
crashcatch.enable()
crashcatch.annotate("ticket", "CC-42")
stop = threading.Event()
t = threading.Thread(target=stop.wait, name="waiter")
t.start()

def callback():
    return buggyext.segfault(1)  # @callback

def main():
    return buggyext.call_back(callback)  # @main

main()  # @module
"""


def symbolize(*args):
    return subprocess.run([SYMBOLIZE, "symbolize", *args], capture_output=True, text=True, timeout=60)


def symbolize_in(interp, dump, *args, env=None):
    """`crashcatch symbolize` as installed in the interpreter's venv, run in its own world
    (inside the chroot for the sid interpreters, where the dumped module files are)."""
    inner = dump[len(interp.root):] if interp.root else dump
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    return interp.run([crashcatch, "symbolize", inner, *args], env=env, timeout=120)


def test_symbolize_json_matches_the_script(interp):
    r = run_script(interp, CODE)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    out = symbolize_in(interp, r.dumps[0], "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "crashcatch-symbolize/2"
    assert doc["event"] == {"kind": "fatal-signal", "exits_after_dump": True, "signal": 11, "signal_name": "SIGSEGV",
                            "fault_address": 0, "thread": doc["threads"][0]["tid"]}
    assert doc["annotations"] == {"ticket": "CC-42"}
    crashed = doc["threads"][0]
    assert crashed["crashed"] and crashed["python_name"] == "MainThread" and crashed["holds_gil"]
    frames = [(f["file"], f["line"], f["function"]) for f in crashed["python_frames"]]
    assert frames == [(r.script, script_line(CODE, "callback"), "callback"),
                      (r.script, script_line(CODE, "main"), "main"),
                      (r.script, script_line(CODE, "module"), "<module>")]
    # Source lines travel in the dump.
    assert "buggyext.segfault(1)" in crashed["python_frames"][0]["source"]
    waiter = [t for t in doc["threads"] if t["python_name"] == "waiter"]
    assert len(waiter) == 1 and waiter[0]["python_frames"], doc["threads"]
    assert not waiter[0]["crashed"] and not waiter[0]["holds_gil"]


def test_symbolize_text_and_last(interp):
    r = run_script(interp, CODE)
    assert len(r.dumps) == 1, r.stderr
    inner_dir = os.path.dirname(r.dumps[0])[len(interp.root):] if interp.root else os.path.dirname(r.dumps[0])
    env = dict(os.environ, CRASHCATCH_DUMP_DIR=inner_dir)
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    out = interp.run([crashcatch, "symbolize", "--last"], env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("Process crashed with SIGSEGV (signal 11)\n"), text
    assert "\x1b[" not in text  # no colour when piped
    assert 'Thread ' in text and '"MainThread" (crashed, holds the GIL)' in text
    # Most recent call last, each frame with its source line.
    lines = text.splitlines()
    i = lines.index(f'  File "{r.script}", line {script_line(CODE, "callback")}, in callback')
    assert lines[i + 1].strip() == "return buggyext.segfault(1)  # @callback"
    # One merged stack: the extension's call_back sits between main and callback.
    assert lines[i - 1].startswith("  call_back "), lines[i - 3:i + 1]
    assert lines[i - 3] == f'  File "{r.script}", line {script_line(CODE, "main")}, in main'
    assert "interpreter frames hidden, --native-all shows them" in text


def test_output_into_a_closed_pipe_ends_quietly(interp):
    """`crashcatch symbolize DUMP | head -n 1`: the reader went away. The command ends of
    SIGPIPE, as C tools do, with nothing on stderr (it panicked with a backtrace)."""
    r = run_script(interp, CODE)
    assert len(r.dumps) == 1, r.stderr
    inner = r.dumps[0][len(interp.root):] if interp.root else r.dumps[0]
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    for args in ([], ["--json"]):
        p = subprocess.Popen(interp.command([crashcatch, "symbolize", inner, *args]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.close()  # gone before a byte is written: the first write fails
        err = p.stderr.read()
        p.wait(timeout=120)
        assert p.returncode == -signal.SIGPIPE, (args, p.returncode, err)
        assert err == b"", (args, err)


@pytest.mark.parametrize("content", ["empty", "junk", "truncated", "missing", "directory"])
def test_bad_input_is_a_clear_error(tmp_path, content):
    path = tmp_path / "x.dmp"
    if content == "empty":
        path.write_bytes(b"")
    elif content == "junk":
        path.write_bytes(os.urandom(4096))
    elif content == "truncated":
        path.write_bytes(b"MDMP\x93\xa7\x00\x00" + b"\x05\x00\x00\x00\x20\x00\x00\x00")
    elif content == "directory":
        path.mkdir()
    out = symbolize(str(path))
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert out.stderr.startswith("crashcatch: ") and "panicked" not in out.stderr, out.stderr


def test_fuzzed_dumps_never_panic_or_hang(tmp_path):
    """Mutations of a real dump: every run ends with status 0 or 2, within the timeout."""
    from conftest import INTERPRETERS
    interp = INTERPRETERS[0]
    r = run_script(interp, CODE)
    original = open(r.dumps[0], "rb").read()
    rng = random.Random(1234)
    for i in range(60):
        data = bytearray(original)
        for _ in range(rng.randint(1, 40)):
            pos = rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        if i % 5 == 0:
            data = data[: rng.randrange(len(data))]
        path = tmp_path / f"fuzz{i}.dmp"
        path.write_bytes(bytes(data))
        out = symbolize(str(path), "--json")
        assert out.returncode in (0, 2), (i, out.returncode, out.stderr[-2000:])
        assert "panicked" not in out.stderr, (i, out.stderr[-2000:])


def test_native_stack_from_the_dump_matches_the_report(interp):
    """The symbolizer unwinds the dump with the module files' CFI (independently of the
    in-process unwinder, itself checked against gdb): the crashing thread's frames are the
    report's C-stack frames, address for address, with DWARF names, lines and the inlined
    frame the report cannot show."""
    code = """
    import crashcatch, buggyext
    crashcatch.enable()
    buggyext.segfault(2)
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    out = symbolize_in(interp, r.dumps[0], "--json")
    assert out.returncode == 0, out.stderr
    crashed = json.loads(out.stdout)["threads"][0]
    native = crashed["native_frames"]
    assert all(f["trust"] in ("context", "cfi") for f in native), native
    from crashlib import c_stack
    report = [int(f["addr"], 16) for f in c_stack(r.stderr) if "addr" in f]
    assert [f["address"] for f in native if not f["inlined"]] == report, (native, r.stderr)
    ext = [f for f in native if f["module"] and f["module"].startswith("buggyext")]
    names = [f["function"] for f in ext]
    assert names[:6] == ["deref_null", "deref_null", "deref_null", "inlined_helper", "buggy_entry", "segfault"], ext
    assert [f["inlined"] for f in ext[:6]] == [False, False, False, True, False, False]
    assert all(f["file"].endswith("buggyext.c") and f["line"] for f in ext), ext
    # The interpreter's own frames are named too (DWARF, or the symbol table of a stripped
    # interpreter, including Debian's non-PIE python3.11).
    assert "Py_RunMain" in [f["function"] for f in native], native


def test_merged_stack_interleaves_python_and_native_frames(interp):
    """Python -> C -> Python -> C: the crashing thread's one stack has every frame in true
    call order (checked against the script's lines and the extension's functions), with the
    interpreter's glue marked; --native-all shows the glue, the default text hides it."""
    r = run_script(interp, CODE)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    out = symbolize_in(interp, r.dumps[0], "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    for t in doc["threads"]:
        assert t["stack"] == "merged" and t["merge_problem"] is None, (t["tid"], t["merge_problem"])
        # Nothing lost, nothing invented: the merged stack is both stacks, interleaved.
        assert [f for f in t["frames"] if f["kind"] == "python"] == t["python_frames"]
        assert [{k: v for k, v in f.items() if k != "plumbing"} for f in t["frames"] if f["kind"] == "native"] \
            == [{k: v for k, v in f.items() if k != "plumbing"} for f in t["native_frames"]]
    crashed = doc["threads"][0]
    shown = [f for f in crashed["frames"] if not f.get("plumbing")]
    ext = "buggyext."
    seen = [(f["kind"], f["function"]) for f in shown if f["kind"] == "python" or (f["module"] or "").startswith(ext)]
    assert seen == [("native", "deref_null"), ("native", "deref_null"), ("native", "inlined_helper"),
                    ("native", "buggy_entry"), ("native", "segfault"), ("python", "callback"),
                    ("native", "call_back"), ("python", "main"), ("python", "<module>")], shown
    # Nothing else is left between the frames the user cares about.
    assert len(shown) == len(seen), shown
    glue = [f["function"] for f in crashed["frames"] if f.get("plumbing")]
    glue_total = sum(1 for t in doc["threads"] for f in t["frames"] if f.get("plumbing"))
    if interp.root == "" and not interp.name.startswith("debian"):
        assert "_PyEval_EvalFrameDefault" in glue, glue   # DWARF-named interpreter
    text = symbolize_in(interp, r.dumps[0]).stdout
    every = symbolize_in(interp, r.dumps[0], "--native-all").stdout
    assert "deref_null" in text and "_start" not in text and "_start" in every, (text, every)
    assert len(every.splitlines()) == len(text.splitlines()) + glue_total, every
    only = json.loads(symbolize_in(interp, r.dumps[0], "--json", "--python-only").stdout)["threads"][0]
    assert only["stack"] == "python-only" and not only["native_frames"]
    assert only["frames"] == only["python_frames"] == crashed["python_frames"]


def test_symbols_path_finds_moved_modules_and_refuses_wrong_builds(tmp_path):
    """The dump is read where the extension file is gone: --symbols-path finds a copy, a
    file with another build id placed first is refused."""
    from conftest import INTERPRETERS
    interp = INTERPRETERS[0]
    import tempfile
    private_host = tempfile.mkdtemp(prefix="moved-", dir=interp.host_path(interp.work_dir))
    private = interp.work_dir + "/" + os.path.basename(private_host)
    ext = [n for n in os.listdir(interp.host_path(interp.ext_dir)) if n.startswith("buggyext")][0]
    subprocess.run(["cp", interp.host_path(interp.ext_dir + "/" + ext), interp.host_path(private)], check=True)
    r = crash_segfault_importing_from(interp, private, 1)
    # Move the extension away; keep a good copy and build a different one.
    good, wrong = tmp_path / "good", tmp_path / "wrong"
    good.mkdir()
    wrong.mkdir()
    os.rename(interp.host_path(private + "/" + ext), good / ext)
    compile_buggyext(interp, str(wrong / ext), "-O0", "-DOTHER_BUILD")

    def ext_frames(*args):
        out = symbolize(r.dumps[0], "--json", *args)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        frames = [f for f in doc["threads"][0]["native_frames"] if (f["module"] or "").startswith("buggyext")]
        return doc, frames

    doc, frames = ext_frames()
    assert frames and not any(f["file"] for f in frames), frames
    assert any(ext in p for p in doc["modules_without_symbols"]), doc["modules_without_symbols"]
    doc, frames = ext_frames("--symbols-path", str(wrong), "--symbols-path", str(good))
    assert [f["function"] for f in frames][:2] == ["deref_null", "deref_null"], frames
    assert all(f["file"].endswith("buggyext.c") for f in frames), frames
    assert not any(ext in p for p in doc["modules_without_symbols"]), doc["modules_without_symbols"]
    # Only the wrong build: refused, and said so.
    doc, frames = ext_frames("--symbols-path", str(wrong))
    assert not any(f["file"] for f in frames)
    assert any("is not the dump's" in p and str(wrong) in p for p in doc["modules_without_symbols"])


def test_layout_comes_from_the_dumps_own_debug_offsets(interp, tmp_path):
    """3.13+ runtimes record their own structure offsets; the symbolizer reads them from the
    dump and prefers them to the built-in table. A deliberately wrong table given with
    --layout-table is corrected field by field on 3.13+ (and said so), and is trusted — so
    decoding fails — on older versions, which record nothing."""
    r = run_script(interp, CODE)
    assert len(r.dumps) == 1, r.stderr
    out = symbolize_in(interp, r.dumps[0], "--json")
    doc = json.loads(out.stdout)
    expected = [(r.script, script_line(CODE, m), f) for m, f in
                (("callback", "callback"), ("main", "main"), ("module", "<module>"))]
    frames = lambda d: [(f["file"], f["line"], f["function"]) for f in d["threads"][0]["python_frames"]]  # noqa: E731
    assert frames(doc) == expected
    modern = interp.minor >= 13
    assert doc["python"]["layout"] == {"source": "table + debug offsets" if modern else "table", "differences": []}

    table = json.load(open(os.path.join(REPO, "pylayout", "data", "layouts.json")))
    key = f"3.{interp.minor}"
    for field in ("tstate.next", "iframe.previous", "frame.back", "code.filename"):
        if field in table[key]:
            table[key][field] += 8
    skewed = interp.host_path(interp.work_dir) + "/skewed-layouts.json"
    with open(skewed, "w") as f:
        json.dump(table, f)
    inner = interp.work_dir + "/skewed-layouts.json"
    out = symbolize_in(interp, r.dumps[0], "--json", "--layout-table", inner)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    if modern:
        assert frames(doc) == expected
        assert doc["python"]["layout"]["source"] == "debug offsets"
        fixed = sorted(d.split(":")[0] for d in doc["python"]["layout"]["differences"])
        assert fixed == ["code.filename", "iframe.previous", "tstate.next"], doc["python"]["layout"]
    else:
        assert frames(doc) != expected
    bad = symbolize_in(interp, r.dumps[0], "--layout-table", interp.work_dir + "/no-such-table.json")
    assert bad.returncode == 2 and "cannot read the layout table" in bad.stderr, bad.stderr


@pytest.mark.parametrize("kind", FATAL_CALLS)
def test_every_crash_kind_gives_one_merged_stack(interp, kind):
    """Each fatal signal: the crashing thread's merged stack is the extension's frames, then
    the script's Python frames, in call order; every thread's stacks merge."""
    call, signo, ext_frames = FATAL_CALLS[kind]
    code = THREADED_CRASH.format(call=call)
    r = run_script(interp, code)
    assert r.returncode == -signo and len(r.dumps) == 1, r.stderr
    out = symbolize_in(interp, r.dumps[0], "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["event"]["signal"] == signo
    assert all(t["stack"] == "merged" for t in doc["threads"]), [(t["tid"], t["merge_problem"]) for t in doc["threads"]]
    crashed = doc["threads"][0]
    seen = [f["function"] if f["kind"] == "native" else (f["file"], f["line"], f["function"])
            for f in crashed["frames"]
            if f["kind"] == "python" or (f["module"] or "").startswith("buggyext.")]
    assert seen == ext_frames + [(r.script, script_line(code, m), f) for m, f in
                                 (("inner", "inner"), ("outer", "outer"), ("module", "<module>"))], seen
    if signo == signal.SIGABRT:
        # abort() and the C library's signal raising sit above the extension, shown.
        shown = [f["function"] for f in crashed["frames"] if not f.get("plumbing")]
        assert shown.index("do_abort") >= 1 and any("abort" in (n or "") for n in shown[:shown.index("do_abort")]), shown
    workers = [t for t in doc["threads"] if (t["python_name"] or "").startswith("worker-")]
    assert len(workers) == 3 and all(t["python_frames"] for t in workers), doc["threads"]


def test_deep_python_to_c_recursion_merges_and_the_text_keeps_both_ends(interp):
    """400 levels of Python -> C -> Python: 400 eval-loop calls to line up; the JSON has every
    frame, the text the two ends with how many frames it leaves out."""
    code = """
    import sys, crashcatch, buggyext
    sys.setrecursionlimit(5000)
    crashcatch.enable()

    def level(n):
        if n == 0:
            return buggyext.segfault(1)  # @bottom
        return buggyext.call_back(lambda: level(n - 1))  # @level

    level(400)  # @module
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr[-3000:]
    doc = json.loads(symbolize_in(interp, r.dumps[0], "--json").stdout)
    crashed = doc["threads"][0]
    assert crashed["stack"] == "merged", crashed["merge_problem"]
    calls = [f for f in crashed["frames"] if f["function"] == "call_back" and f["kind"] == "native"]
    levels = [f for f in crashed["frames"] if f["kind"] == "python" and f["function"] == "level"]
    assert len(calls) == 400 and len(levels) == 401, (len(calls), len(levels))
    text = symbolize_in(interp, r.dumps[0]).stdout
    assert "frames not shown; --json lists them all" in text
    assert f'line {script_line(code, "module")}, in <module>' in text and "deref_null" in text


def test_a_crash_during_garbage_collection_says_so(interp):
    """A finalizer that crashes while gc.collect() runs: the dump records that the collector
    was running, and the symbolizer says it (JSON and text)."""
    code = """
    import gc, crashcatch, buggyext
    crashcatch.enable()

    class Node:
        def __del__(self):
            buggyext.segfault(1)  # @del

    node = Node()
    node.cycle = node
    del node
    gc.collect()  # @collect
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr[-3000:]
    doc = json.loads(symbolize_in(interp, r.dumps[0], "--json").stdout)
    assert doc["python"]["gc_collecting"] is True, doc["python"]
    functions = [f["function"] for f in doc["threads"][0]["python_frames"]]
    assert functions[0].endswith("__del__") and functions[-1] == "<module>", functions
    assert "the garbage collector was running" in symbolize_in(interp, r.dumps[0]).stdout


@pytest.mark.parametrize("where", ["empty", "missing"])
def test_last_without_dumps_says_what_to_do(tmp_path, where):
    d = tmp_path / "dumps"
    if where == "empty":
        d.mkdir()
    out = subprocess.run([SYMBOLIZE, "symbolize", "--last"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, CRASHCATCH_DUMP_DIR=str(d)))
    assert out.returncode == 2 and out.stderr.startswith("crashcatch: "), out.stderr
    assert str(d) in out.stderr and "CRASHCATCH_DUMP_DIR" in out.stderr, out.stderr


@pytest.mark.parametrize("damage", ["unknown_python_version", "no_memory"])
def test_undecodable_python_stacks_print_what_they_can_and_exit_2(tmp_path, damage):
    """A dump whose Python stacks cannot be decoded at all — a Python version crashcatch
    does not know, no memory in the dump — still shows what happened and the native stacks,
    then says why on stderr and exits with status 2."""
    from conftest import INTERPRETERS
    interp = INTERPRETERS[0]
    r = run_script(interp, CODE)
    data = bytearray(open(r.dumps[0], "rb").read())
    if damage == "unknown_python_version":
        version = f'"version":"3.{interp.minor}.'.encode()
        at = data.index(version)
        data[at:at + len(version)] = f'"version":"9.{interp.minor}.'.encode()
    else:
        # Retype the memory-list stream (type 5) in the stream directory.
        count, directory = struct.unpack_from("<II", data, 8)
        for i in range(count):
            if struct.unpack_from("<I", data, directory + 12 * i)[0] == 5:
                struct.pack_into("<I", data, directory + 12 * i, 0x7FFF0005)
    path = tmp_path / "damaged.dmp"
    path.write_bytes(bytes(data))
    out = symbolize(str(path))
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stderr.startswith("crashcatch: ") and "no Python stack could be decoded" in out.stderr, out.stderr
    assert "panicked" not in out.stderr
    assert out.stdout.startswith("Process crashed with SIGSEGV"), out.stdout[:500]
    if damage == "unknown_python_version":
        assert "9." in out.stderr and "3.12" in out.stderr, out.stderr  # the known versions are listed
        assert "deref_null" in out.stdout  # the native stack is all there


@pytest.mark.parametrize("no_color", [False, True])
def test_colour_on_a_terminal_unless_no_color(no_color):
    """On a terminal the text is coloured (the crash in red, names in bold); NO_COLOR turns
    it off. (Piped output is plain: test_symbolize_text_and_last.)"""
    import pty
    from conftest import INTERPRETERS
    r = run_script(INTERPRETERS[0], CODE)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if no_color:
        env["NO_COLOR"] = "1"
    leader, follower = pty.openpty()
    with os.fdopen(leader, "rb", buffering=0) as tty:
        proc = subprocess.Popen([SYMBOLIZE, "symbolize", r.dumps[0]], stdout=follower, env=env)
        os.close(follower)
        text = b""
        while True:
            try:
                chunk = tty.read(65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            text += chunk
        assert proc.wait(timeout=60) == 0
    text = text.decode()
    if no_color:
        assert "\x1b[" not in text and "Process crashed with SIGSEGV" in text
    else:
        assert "\x1b[1m\x1b[31mProcess crashed with SIGSEGV" in text, text[:200]
        assert "\x1b[1mderef_null\x1b[0m" in text, text


def test_a_module_without_a_build_id_is_recognised_by_its_text_hash(interp):
    """minidump-writer identifies a module that has no build-id note (a vendored library in
    a wheel) by a hash of its first text page; the symbolizer computes the same, so it uses
    the right file (DWARF names and lines) instead of refusing it."""
    private = interp.work_dir + "/no-build-id-" + os.urandom(4).hex()
    os.makedirs(interp.host_path(private))
    inc = interp.run([interp.python, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"])
    source = os.path.dirname(interp.ext_dir) + "/examples/buggyext/buggyext.c"
    ext = [n for n in os.listdir(interp.host_path(interp.ext_dir)) if n.startswith("buggyext")][0]
    cc = interp.run(["cc", "-shared", "-fPIC", "-g", "-Wl,--build-id=none", "-I", inc.stdout.strip(), source,
                     "-o", private + "/" + ext])
    assert cc.returncode == 0, cc.stderr
    notes = subprocess.run(["readelf", "-n", interp.host_path(private + "/" + ext)], capture_output=True, text=True)
    assert "Build ID" not in notes.stdout, notes.stdout
    r = crash_segfault_importing_from(interp, private, 1)
    out = symbolize_in(interp, r.dumps[0], "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    frames = [f for f in doc["threads"][0]["native_frames"] if (f["module"] or "").startswith("buggyext")]
    assert frames and frames[0]["function"] == "deref_null", frames
    assert frames[0]["file"] and frames[0]["file"].endswith("buggyext.c"), frames
    assert not any(ext in p for p in doc["modules_without_symbols"]), doc["modules_without_symbols"]
