"""faulthandler's API, name for name: registered signals, timeouts, errors."""
import os
import signal
import textwrap

import pytest

from crashlib import c_stack, current_thread_frames, run_script, script_line, thread_blocks


def test_registered_signal_dumps_a_live_process_many_times(interp):
    code = """
    import os, signal
    import crashcatch
    crashcatch.register(signal.SIGUSR1)

    def work(i):
        os.kill(os.getpid(), signal.SIGUSR1)  # @kill

    for i in range(5):
        work(i)  # @loop
    print("still alive")
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "still alive\n"
    assert r.stderr.count("Current thread 0x") == 5, r.stderr
    assert "Fatal Python error" not in r.stderr
    # faulthandler's output and nothing else: minidumps only on request.
    assert "crashcatch:" not in r.stderr and r.dumps == [], r.stderr
    expected = [(r.script, str(script_line(code, "kill")), "work"),
                (r.script, str(script_line(code, "loop")), "<module>")]
    dumps = ["Current thread" + d for d in r.stderr.split("Current thread")[1:]]
    assert all(current_thread_frames(d) == expected for d in dumps), r.stderr


def test_registered_signal_chains_to_the_previous_handler(interp):
    code = """
    import os, signal
    import crashcatch
    seen = []
    signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    crashcatch.register(signal.SIGUSR2, chain=True)
    for _ in range(3):
        os.kill(os.getpid(), signal.SIGUSR2)
    print(len(seen))
    assert crashcatch.unregister(signal.SIGUSR2) is True
    assert crashcatch.unregister(signal.SIGUSR2) is False
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3", (r.stdout, r.stderr)
    assert r.stderr.count("Current thread 0x") == 3, r.stderr


def test_timeout_dumps_every_thread_and_exits(interp):
    code = """
    import time, threading
    import crashcatch
    ev = threading.Event()
    t = threading.Thread(target=ev.wait, daemon=True)
    t.start()
    crashcatch.dump_traceback_later(0.25, exit=True)
    time.sleep(30)  # @sleep
    """
    r = run_script(interp, code, timeout=60)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("Timeout (0:00:00.250000)!\n"), r.stderr
    assert "crashcatch:" not in r.stderr and r.dumps == [], r.stderr
    blocks = thread_blocks(r.stderr)
    assert len(blocks) == 2, r.stderr
    # The watchdog is nobody's current thread: every header is "Thread".
    assert all(h.startswith("Thread 0x") for h in blocks), r.stderr
    assert [(r.script, str(script_line(code, "sleep")), "<module>")] in blocks.values(), r.stderr


def test_timeout_repeat_and_cancel(interp):
    code = """
    import time
    import crashcatch
    crashcatch.dump_traceback_later(0.1, repeat=True)
    time.sleep(0.55)
    crashcatch.cancel_dump_traceback_later()
    time.sleep(0.3)
    print("done")
    """
    r = run_script(interp, code, timeout=60)
    assert r.returncode == 0, r.stderr
    assert 3 <= r.stderr.count("Timeout (0:00:00.100000)!") <= 6, r.stderr
    assert r.stdout == "done\n"


def test_errors_match_faulthandler(interp):
    code = """
    import faulthandler, signal, sys
    import crashcatch

    def error(fn, *args, **kw):
        try:
            fn(*args, **kw)
        except Exception as e:
            return type(e).__name__, str(e)
        return None

    cases = [
        ("register", (signal.SIGSEGV,), {}),
        ("register", (0,), {}),
        ("register", (99999,), {}),
        ("unregister", (-1,), {}),
        ("dump_traceback_later", (0,), {}),
        ("dump_traceback_later", (-1.5,), {}),
        ("enable", (), {"file": -1}),
        ("dump_traceback", (), {"file": object()}),
    ]
    for name, args, kw in cases:
        ours = error(getattr(crashcatch, name), *args, **kw)
        theirs = error(getattr(faulthandler, name), *args, **kw)
        print(name, args, ours, theirs)
        assert ours is not None and ours[0] == theirs[0], (name, args, ours, theirs)
    sys.stderr = None
    ours, theirs = error(crashcatch.enable), error(faulthandler.enable)
    assert ours == theirs == ("RuntimeError", "sys.stderr is None"), (ours, theirs)
    print("ok")
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.endswith("ok\n")


def test_enable_disable_is_enabled(interp):
    code = """
    import signal
    import crashcatch
    assert crashcatch.is_enabled() is False
    assert crashcatch.disable() is False
    before = signal.getsignal(signal.SIGSEGV)
    crashcatch.enable()
    crashcatch.enable()   # a second enable() only updates the options
    assert crashcatch.is_enabled() is True
    assert crashcatch.disable() is True
    assert crashcatch.is_enabled() is False
    assert signal.getsignal(signal.SIGSEGV) == before
    print("ok")
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"


def test_disabled_crash_is_not_reported(interp):
    code = """
    import crashcatch, buggyext
    crashcatch.enable()
    crashcatch.disable()
    buggyext.segfault()
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV
    assert "Fatal Python error" not in r.stderr


def test_crashcatch_run_command(interp):
    """`crashcatch run script.py args` enables crashcatch before the script runs."""
    code = """
    import sys, buggyext

    def main():
        assert sys.argv[1:] == ["one", "two"], sys.argv
        buggyext.segfault()  # @crash

    main()  # @main
    """
    launcher = f"""
    import os, subprocess, sys
    target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "target.py")
    with open(target, "w") as f:
        f.write({textwrap.dedent(code).lstrip()!r})
    exe = os.path.join(os.path.dirname(sys.executable), "crashcatch")
    r = subprocess.run([exe, "run", target, "one", "two"], capture_output=True, text=True)
    sys.stderr.write(r.stderr)
    sys.exit(-r.returncode)
    """
    r = run_script(interp, launcher)
    assert r.returncode == int(signal.SIGSEGV), r.stderr
    frames = current_thread_frames(r.stderr)
    assert [(f, n) for _, f, n in frames[:2]] == [(str(script_line(code, "crash")), "main"),
                                                 (str(script_line(code, "main")), "<module>")], r.stderr
    # The dump is named after the program run, not after the crashcatch command.
    assert [os.path.basename(d).split("-")[0] for d in r.dumps] == ["target.py"], r.dumps


def test_crashcatch_run_reaches_python_children(interp):
    """The Python processes a `crashcatch run` program starts get reports and dumps too, and
    a sitecustomize of the user's still runs in them."""
    code = """
    import multiprocessing, subprocess, sys
    import buggyext

    def crash_in_child():
        buggyext.segfault()  # @spawn

    if __name__ == "__main__":
        child = multiprocessing.get_context("spawn").Process(target=crash_in_child)
        child.start()
        child.join()
        print("spawn", child.exitcode)
        r = subprocess.run([sys.executable, "-c", "import buggyext; buggyext.segfault()"])
        print("subprocess", r.returncode)
        r = subprocess.run([sys.executable, "-c", "import crashcatch, os; print(crashcatch.is_enabled(), os.environ['USER_SITE_RAN'])"],
                           capture_output=True, text=True)
        print("enabled, user sitecustomize:", r.stdout.strip())
    """
    launcher = f"""
    import os, subprocess, sys
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.path.join(here, "target.py")
    with open(target, "w") as f:
        f.write({textwrap.dedent(code).lstrip()!r})
    user_site = os.path.join(here, "user_site")
    os.mkdir(user_site)
    with open(os.path.join(user_site, "sitecustomize.py"), "w") as f:
        f.write("import os\\nos.environ['USER_SITE_RAN'] = 'yes'\\n")
    env = dict(os.environ, PYTHONPATH=user_site + os.pathsep + os.environ["PYTHONPATH"])
    exe = os.path.join(os.path.dirname(sys.executable), "crashcatch")
    r = subprocess.run([exe, "run", target], capture_output=True, text=True, env=env)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    sys.exit(r.returncode)
    """
    r = run_script(interp, launcher)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["spawn -11", "subprocess -11", "enabled, user sitecustomize: True yes"], \
        (r.stdout, r.stderr)
    assert r.stderr.count("Fatal Python error: Segmentation fault") == 2, r.stderr
    spawned = r.stderr.split("Fatal Python error: Segmentation fault")[1]
    assert f'line {script_line(code, "spawn")} in crash_in_child' in spawned, r.stderr
    assert len(r.dumps) == 2, (r.dumps, r.stderr)


@pytest.mark.parametrize("enabled", [True, False])
def test_dump_c_stack_in_a_thread_with_a_small_stack(interp, enabled):
    """dump_c_stack() needs more stack than a thread started with a small
    threading.stack_size() has: it must run on the report stack, not overflow the thread's."""
    code = f"""
    import threading
    import crashcatch
    if {enabled}:
        crashcatch.enable()
    threading.stack_size(64 * 1024)
    t = threading.Thread(target=crashcatch.dump_c_stack)
    t.start()
    t.join()
    print("survived")
    """
    r = run_script(interp, code)
    assert r.returncode == 0 and r.stdout.strip() == "survived", (r.returncode, r.stderr)
    frames = c_stack(r.stderr)
    assert frames and frames[-1].get("raw") == "  <end of stack>", r.stderr
    assert any(f.get("sym") == "dump_c_stack" or "_native" in f.get("module", "") for f in frames), r.stderr
