"""The hard cases: stack overflows, concurrent crashers, a corrupt heap, threads Python
never saw, a crash inside the handler. One crash per child process, every interpreter."""
import re
import signal

import pytest

from crashlib import c_stack, current_thread_frames, run_script, script_line, thread_blocks

REPEAT = 3  # runs per interpreter of the cases faulthandler gets wrong only sometimes


def assert_complete_c_stack(report, innermost, outermost):
    """The C stack runs from `innermost` to the thread's start: the unwinder reached a frame
    whose CFI ends the stack. `outermost`: "_start" (main thread) or "thread" (libc's
    clone3, unnamed in Debian's stripped libc)."""
    frames = c_stack(report)
    assert frames, f"no C stack:\n{report}"
    assert frames[-1].get("raw") == "  <end of stack>", report
    frames = frames[:-1]
    assert all("raw" not in f or re.match(r"  <\d+ frames omitted>", f["raw"]) for f in frames), report
    assert frames[0].get("sym") == innermost, report
    if outermost == "_start":
        assert frames[-1].get("sym") == "_start", report
    else:
        assert "libc.so" in frames[-1].get("path", ""), report
    return frames


@pytest.mark.parametrize("run", range(REPEAT))
def test_stack_overflow_in_main_thread(interp, run):
    code = """
    import crashcatch, buggyext
    crashcatch.enable()
    buggyext.stack_overflow()  # @call
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert r.stderr.startswith("Fatal Python error: Segmentation fault\n\n"), r.stderr
    assert current_thread_frames(r.stderr) == [(r.script, str(script_line(code, "call")), "<module>")], r.stderr
    frames = assert_complete_c_stack(r.stderr, "recurse", "_start")
    # Thousands of recursive frames: the middle is elided, both ends are kept.
    assert any(re.match(r"  <\d+ frames omitted>", f.get("raw", "")) for f in frames), r.stderr
    assert [f.get("sym") for f in frames].count("recurse") > 200, r.stderr
    assert any(f.get("sym") == "stack_overflow" for f in frames), r.stderr


@pytest.mark.parametrize("run", range(REPEAT))
def test_stack_overflow_in_python_thread(interp, run):
    """faulthandler reports this 0-2 times out of 10: its alternate stack covers only the
    thread that called enable(). Threads started after crashcatch.enable() get their own."""
    code = """
    import threading
    import crashcatch, buggyext
    crashcatch.enable()

    def worker():
        buggyext.stack_overflow()  # @call

    t = threading.Thread(target=worker, name="overflower")
    t.start()
    t.join()
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    frames = current_thread_frames(r.stderr)
    assert frames and frames[0] == (r.script, str(script_line(code, "call")), "worker"), r.stderr
    assert_complete_c_stack(r.stderr, "recurse", "thread")


@pytest.mark.parametrize("nthreads", [4, 16])
def test_concurrent_crashes_give_one_coherent_report(interp, nthreads):
    code = f"""
    import threading
    import crashcatch, buggyext
    crashcatch.enable()
    barrier = threading.Barrier({nthreads})

    def crasher():
        barrier.wait()
        buggyext.segfault_without_gil()

    threads = [threading.Thread(target=crasher) for _ in range({nthreads})]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    report = r.stderr
    assert report.count("Fatal Python error") == 1, report
    assert report.startswith("Fatal Python error: Segmentation fault\n\n"), report
    assert report.count("Current thread 0x") == 1, report
    assert report.count("Current thread's C stack trace") == 1, report
    assert report.count("crashcatch: minidump written to") == 1 and len(r.dumps) == 1, report
    # Every line is one of the report's own kinds: nothing interleaved. The other threads
    # are still running while it is written, so a frame caught mid-change may print as
    # faulthandler prints an unreadable one (`File ???, line ??? in ???`).
    allowed = re.compile(
        r'^(Fatal Python error: .*|(Current thread|Thread) 0x[0-9a-f]+( \[.*\])? \(most recent call first\):'
        r'|  File (".*"|\?\?\?), line (\d+|\?\?\?) in .*|  \.\.\.|Current thread\'s C stack trace .*'
        r'|  Binary file ".*|  <.*>|Extension modules: .*|crashcatch: minidump written to .*|)$')
    bad = [line for line in report.splitlines() if not allowed.match(line)]
    assert not bad, f"unexpected lines {bad} in:\n{report}"
    assert len(thread_blocks(report)) >= nthreads, report
    assert_complete_c_stack(report, "deref_null", "thread")


def test_crash_after_heap_corruption(interp):
    code = """
    import crashcatch, buggyext
    crashcatch.enable()
    buggyext.heap_scribble()  # @call
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert current_thread_frames(r.stderr) == [(r.script, str(script_line(code, "call")), "<module>")], r.stderr
    frames = assert_complete_c_stack(r.stderr, "deref_null", "_start")
    assert "scribble" in [f.get("sym") for f in frames], r.stderr


def test_crash_in_a_thread_python_never_saw(interp):
    code = """
    import crashcatch, buggyext
    crashcatch.enable()
    buggyext.crash_in_c_thread()  # @call
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    report = r.stderr
    assert report.startswith("Fatal Python error: Segmentation fault\n\n"), report
    # No Python thread is current: the main thread is listed as a plain "Thread".
    assert "Current thread 0x" not in report, report
    blocks = thread_blocks(report)
    assert [(r.script, str(script_line(code, "call")), "<module>")] in blocks.values(), report
    frames = assert_complete_c_stack(report, "deref_null", "thread")
    assert "c_thread_main" in [f.get("sym") for f in frames], report


def test_crash_inside_the_handler_falls_back_to_the_default_action(interp):
    code = """
    import crashcatch, buggyext
    crashcatch.enable()
    buggyext.sigabrt()
    """
    r = run_script(interp, code, env={"CRASHCATCH_TEST_FAULT_IN_HANDLER": "1"}, timeout=60)
    # The process dies of the original signal, not of the handler's own fault, and says so.
    assert r.returncode == -signal.SIGABRT, r.stderr
    assert r.stderr.startswith("Fatal Python error: Aborted\n\n"), r.stderr
    assert "crash handler itself received signal 11" in r.stderr, r.stderr


def test_exit_status_and_previous_handler_see_the_crash(interp):
    """After the report the previous handler runs: here a Python-level SIGSEGV handler can't
    run (it would be deferred), so install faulthandler as the previous one and check both."""
    code = """
    import faulthandler, os
    import crashcatch, buggyext
    faulthandler.enable(file=open(os.environ["FILE_previous"], "w"))
    crashcatch.enable()
    buggyext.fpe()
    """
    r = run_script(interp, code, files=["previous"])
    assert r.returncode == -signal.SIGFPE, r.stderr
    assert "Fatal Python error: Floating" in r.stderr
    assert r.files["previous"].startswith("Fatal Python error: Floating"), r.files


def test_faulthandler_enabled_after_crashcatch_runs_first_then_chains(interp):
    code = """
    import faulthandler, os
    import crashcatch, buggyext
    crashcatch.enable(file=open(os.environ["FILE_crashcatch"], "w"))
    faulthandler.enable(file=open(os.environ["FILE_faulthandler"], "w"))
    buggyext.segfault()
    """
    r = run_script(interp, code, files=["crashcatch", "faulthandler"])
    assert r.returncode == -signal.SIGSEGV, r.stderr
    for name in ("crashcatch", "faulthandler"):
        assert (r.files[name] or "").startswith("Fatal Python error: Segmentation fault"), r.files
    assert c_stack(r.files["crashcatch"]), r.files["crashcatch"]


def test_handler_neither_allocates_nor_locks(interp):
    """Under an LD_PRELOADed watcher armed by the crashing thread just before the crash,
    any malloc/free, pthread lock or stdio call in that thread (i.e. in our handler) ends
    the process with status 99."""
    code = """
    import threading
    import crashcatch, buggyext
    crashcatch.enable()
    t = threading.Thread(target=lambda: None)
    t.start(); t.join()
    buggyext.armed_segfault()  # @call
    """
    r = run_script(interp, code, env={"LD_PRELOAD": interp.ext_dir + "/noalloc.so"})
    assert "NOALLOC VIOLATION" not in r.stderr, r.stderr
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert current_thread_frames(r.stderr) == [(r.script, str(script_line(code, "call")), "<module>")], r.stderr
    assert_complete_c_stack(r.stderr, "deref_null", "_start")


def test_noalloc_watcher_catches_an_allocation(interp):
    """The watcher itself works: an allocation by the armed thread trips it."""
    code = """
    import ctypes
    ctypes.CDLL(None).noalloc_arm()
    ctypes.CDLL(None).malloc(16)
    """
    r = run_script(interp, code, env={"LD_PRELOAD": interp.ext_dir + "/noalloc.so"})
    assert r.returncode == 99 and "NOALLOC VIOLATION" in r.stderr, (r.returncode, r.stderr)


def test_crash_in_a_forked_child_reports_the_child(interp):
    code = """
    import os
    import crashcatch, buggyext
    crashcatch.enable()

    def child_work():
        buggyext.segfault()  # @child

    pid = os.fork()
    if pid == 0:
        child_work()  # @fork
    _, status = os.waitpid(pid, 0)
    print("child signal", os.WTERMSIG(status))
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"child signal {int(signal.SIGSEGV)}"
    expected = [(r.script, str(script_line(code, "child")), "child_work"),
                (r.script, str(script_line(code, "fork")), "<module>")]
    assert current_thread_frames(r.stderr) == expected, r.stderr
    assert_complete_c_stack(r.stderr, "deref_null", "_start")
