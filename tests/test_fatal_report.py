"""Fatal-signal reports: one crash per child process, on every interpreter.

Truth comes from outside crashcatch: the exit status, the script's own line numbers, and
faulthandler of the same interpreter, enabled in the same process and chained after
crashcatch, whose report must equal ours once our C-stack section is removed."""
import json
import re
import signal

import pytest

from crashlib import (OUTER_HEADER, c_stack, current_thread_frames, run_script, script_line, signal_name,
                      strip_c_stack, thread_blocks)

# kind: (call inside the script, signal, innermost buggyext functions expected in the C stack)
KINDS = {
    "segfault": ("buggyext.segfault(2)", signal.SIGSEGV, ["deref_null", "deref_null", "deref_null", "buggy_entry", "segfault"]),
    "fpe": ("buggyext.fpe()", signal.SIGFPE, ["divide", "fpe"]),
    "abort": ("buggyext.sigabrt()", signal.SIGABRT, ["do_abort", "sigabrt"]),
    "sigill": ("buggyext.sigill()", signal.SIGILL, ["illegal_instruction", "sigill"]),
    "sigbus": ("buggyext.sigbus()", signal.SIGBUS, ["touch_truncated_mapping", "sigbus"]),
    "without_gil": ("buggyext.segfault_without_gil()", signal.SIGSEGV, ["deref_null", "deref_null", "buggy_entry", "segfault_without_gil"]),
    "python_sigsegv": ("faulthandler._sigsegv()", signal.SIGSEGV, []),
}

SCRIPT = """
import faulthandler, os
import crashcatch, buggyext
reference = open(os.environ["FILE_faulthandler"], "w")
faulthandler.enable(file=reference)   # the reference report, chained after ours
crashcatch.enable()

def outer():
    return inner()  # @outer

def inner():
    return {call}  # @inner

outer()  # @module
"""


def buggyext_functions(frames):
    return [f["sym"] for f in frames if "buggyext" in f.get("module", "") and f.get("sym")]


@pytest.mark.parametrize("kind", KINDS)
def test_fatal_signal_report(interp, kind):
    call, signo, native = KINDS[kind]
    code = SCRIPT.format(call=call)
    r = run_script(interp, code, files=["faulthandler"])
    assert r.returncode == -signo, f"exit status {r.returncode}, stderr:\n{r.stderr}"
    report = r.stderr
    assert report.startswith(f"Fatal Python error: {signal_name(signo, interp.minor)}\n\n"), report

    # Python frames: exactly the script's own lines.
    expected = [(r.script, str(script_line(code, m)), f) for m, f in
                [("inner", "inner"), ("outer", "outer"), ("module", "<module>")]]
    assert current_thread_frames(report) == expected, report

    # The C stack: from the faulting function to the thread's start.
    frames = c_stack(report)
    assert frames, report
    assert frames[-1].get("raw") == "  <end of stack>", report
    frames = frames[:-1]
    assert all("raw" not in f for f in frames), report
    got = buggyext_functions(frames)
    assert got[: len(native)] == native, report
    assert frames[-1]["sym"] == "_start", report

    # faulthandler of this interpreter wrote the same text (ours adds the C stack).
    reference = r.files["faulthandler"]
    assert reference, "faulthandler wrote nothing after crashcatch chained to it"
    assert strip_c_stack(report) == strip_c_stack(reference)


def test_python_and_c_calls_interleaved(interp):
    code = """
    import crashcatch, buggyext
    crashcatch.enable()

    def callback():
        return buggyext.segfault(0)  # @callback

    def main():
        return buggyext.call_back(callback)  # @main

    main()  # @module
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    expected = [(r.script, str(script_line(code, m)), f) for m, f in
                [("callback", "callback"), ("main", "main"), ("module", "<module>")]]
    assert current_thread_frames(r.stderr) == expected, r.stderr
    syms = [f.get("sym") for f in c_stack(r.stderr)[:-1]]
    # Python -> C (call_back) -> Python (callback) -> C (segfault): both C entries appear,
    # the inner one first.
    assert "segfault" in syms and "call_back" in syms, r.stderr
    assert syms.index("segfault") < syms.index("call_back"), r.stderr
    assert syms[-1] == "_start", r.stderr


def test_non_ascii_names_are_escaped_like_faulthandler(interp):
    code = """
    import faulthandler, os
    import crashcatch, buggyext
    faulthandler.enable(file=open(os.environ["FILE_faulthandler"], "w"))
    crashcatch.enable()

    def crash_\u00e9t\u00e9_\u6587\u5b57_\U00020000():
        buggyext.segfault()

    crash_\u00e9t\u00e9_\u6587\u5b57_\U00020000()
    """
    r = run_script(interp, code, files=["faulthandler"])
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert "in crash_\\xe9t\\xe9_\\u6587\\u5b57_\\U00020000\n" in r.stderr, r.stderr
    assert strip_c_stack(r.stderr) == strip_c_stack(r.files["faulthandler"])


def test_aliases_are_named_by_their_canonical_symbol(interp):
    """glibc exports `raise` (global) and its weak alias `gsignal` at one address; the
    report names it `raise`, as gdb does, not whichever alias the table lists first."""
    code = """
    import crashcatch, buggyext
    crashcatch.enable(minidump=False)
    buggyext.sigabrt()
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGABRT, r.stderr
    syms = [f.get("sym") for f in c_stack(r.stderr) or []]
    # abort() calls raise(), which sends the signal from an unnamed internal function.
    assert "gsignal" not in syms, r.stderr
    assert syms[syms.index("abort") - 1] == "raise", r.stderr


# CPython's own fatal errors: Py_FatalError() prints the report, disables faulthandler and
# aborts. crashcatch must add only what faulthandler lacks (the C stack, the dump line).
FATAL_ERRORS = {
    # From an extension, with the GIL and Python frames on the stack.
    "main_thread": "ctypes.pythonapi.Py_FatalError(b'crashcatch test: fatal in C')  # @call",
    # From a thread C started, with no Python thread state (test_faulthandler's case).
    "c_thread": "faulthandler._fatal_error_c_thread(); time.sleep(30)  # @call",
}

FATAL_ERROR_SCRIPT = """
import ctypes, faulthandler, os, time
if os.environ["REPORTER"] == "crashcatch":
    import crashcatch
    crashcatch.enable()

def outer():
    {call}

outer()
"""


def normalized(run):
    """The run's stderr without what differs between runs: addresses and the script's path."""
    return re.sub(r"0x[0-9a-f]+", "0x?", run.stderr.replace(run.script, "SCRIPT"))


@pytest.mark.parametrize("where", FATAL_ERRORS)
def test_cpython_fatal_error_gets_no_second_header(interp, where):
    code = FATAL_ERROR_SCRIPT.format(call=FATAL_ERRORS[where])
    # CPython alone: its report is all faulthandler leaves too (fatal_error() disables it;
    # with faulthandler enabled, 3.12's c_thread case even dies of SIGSEGV after the report).
    reference = run_script(interp, code, env={"REPORTER": "none"})
    ours = run_script(interp, code, env={"REPORTER": "crashcatch"})
    assert reference.returncode == ours.returncode == -signal.SIGABRT, (reference, ours)
    assert reference.stderr.startswith("Fatal Python error: "), reference.stderr
    # CPython's report, then only our additions.
    assert normalized(ours).startswith(normalized(reference)), ours.stderr
    added = ours.stderr[len(reference.stderr):]
    assert "Fatal Python error" not in added, ours.stderr
    assert strip_c_stack(added).strip() == "", ours.stderr
    frames = c_stack(added)
    assert frames and frames[-1].get("raw") == "  <end of stack>", ours.stderr
    names = [f.get("sym") for f in frames]
    assert "abort" in names and {"_Py_FatalErrorFunc", "Py_FatalError"} & set(names), ours.stderr
    assert re.search(r"^crashcatch: minidump written to .*\.dmp$", added, re.M), ours.stderr
    assert len(ours.dumps) == 1, ours.dumps


SUBINTERPRETER_SCRIPT = """
import faulthandler, os
import crashcatch
try:
    import _interpreters as interpreters
except ImportError:
    import _xxsubinterpreters as interpreters
reference = open(os.environ["FILE_faulthandler"], "w")
faulthandler.enable(file=reference)   # the reference report, chained after ours
crashcatch.enable()
CODE = "import os, signal\\ndef f():\\n    os.kill(os.getpid(), signal.SIGSEGV)\\nf()\\n"

def outer():
    interpreters.run_string(interpreters.create(), CODE)  # @outer

outer()  # @module
"""


def test_crash_in_a_subinterpreter_shows_its_frames(interp):
    r = run_script(interp, SUBINTERPRETER_SCRIPT, files=["faulthandler"])
    assert r.returncode == -signal.SIGSEGV, r.stderr
    # faulthandler's text, whichever interpreter it shows (3.12+: the subinterpreter's).
    assert r.files["faulthandler"], r.stderr
    assert strip_c_stack(r.stderr) == strip_c_stack(r.files["faulthandler"])
    outer = [(r.script, str(script_line(SUBINTERPRETER_SCRIPT, m)), f) for m, f in
             [("outer", "outer"), ("module", "<module>")]]
    frames = current_thread_frames(r.stderr)
    if interp.minor >= 12:
        assert [(line, func) for _, line, func in frames] == [("3", "f"), ("4", "<module>")], r.stderr
        assert frames[0][0] in ("<string>", "<script>"), r.stderr
        # The frames that called into it follow, labelled.
        calling = r.stderr.split(OUTER_HEADER + "\n", 1)[1]
        assert thread_blocks("Thread 0x0 (most recent call first):\n" + calling) \
            == {"Thread 0x0 (most recent call first):": outer}, r.stderr
    else:
        # faulthandler before 3.12 shows the calling interpreter's frames; so do we.
        assert frames == outer, r.stderr
        assert OUTER_HEADER not in r.stderr


def test_subinterpreter_frames_in_the_dump(interp):
    """symbolize shows the subinterpreter's frames, labelled, then the frames that called it."""
    if interp.minor < 12:
        pytest.skip("before 3.12 a thread's own state is its first interpreter's (as faulthandler shows)")
    from test_symbolize import symbolize_in
    r = run_script(interp, SUBINTERPRETER_SCRIPT, files=["faulthandler"])
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    out = symbolize_in(interp, r.dumps[0], "--json")
    assert out.returncode == 0, out.stderr
    crashed = [t for t in json.loads(out.stdout)["threads"] if t["crashed"]][0]
    frames = [(f["line"], f["function"], f["subinterpreter"] is not None) for f in crashed["python_frames"]]
    assert frames == [(3, "f", True), (4, "<module>", True),
                      (script_line(SUBINTERPRETER_SCRIPT, "outer"), "outer", False),
                      (script_line(SUBINTERPRETER_SCRIPT, "module"), "<module>", False)], frames
    assert crashed["python_problem"] is None
    text = symbolize_in(interp, r.dumps[0]).stdout
    assert re.search(r'^  File "<(string|script)>", line 3, in f \[subinterpreter 0x[0-9a-f]+\]$', text, re.M), text
