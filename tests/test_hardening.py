"""First, do no harm: enabling crashcatch never leaves a program worse off than not enabling
it. One crash (or live dump) per child process, on every interpreter."""
import os
import signal
import subprocess
import time

import pytest

from crashlib import (C_HEADER, c_stack, current_thread_frames, prepare_script, run_script,
                      script_line, strace_script)

STALL = {"CRASHCATCH_TEST_HELPER_STALL_MS": "20000"}
MALLOC_DEBUG = "/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"


def threads_of(pid):
    try:
        return os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []


def thread_states(pid, but=None):
    """The state letter of each thread of `pid` (but the thread `but`)."""
    states = []
    for tid in threads_of(pid):
        if tid == str(but):
            continue
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return states


def helper_of(pid):
    """The pid of the crashcatch-dump helper that `pid` started, or None."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and comm == "crashcatch-dump":
            return int(entry)
    return None


def wait_for(what, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = what()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def start(interp, prepared):
    return subprocess.Popen(interp.command(prepared.argv, prepared.cwd), env=prepared.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_helper_while_it_holds_every_thread(proc, crash=False):
    """Waits until the helper has suspended every thread of `proc` (ptrace stop 't'), then
    SIGKILLs it: the worst moment for the helper to die. A crash's helper never stops the
    crashing thread (here the main one): its registers and stack are the crash's, and it
    writes its report meanwhile."""
    helper = wait_for(lambda: helper_of(proc.pid))
    but = proc.pid if crash else None
    wait_for(lambda: (s := thread_states(proc.pid, but)) and all(x == "t" for x in s))
    os.kill(helper, signal.SIGKILL)


def finish(proc, timeout=20):
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        states = thread_states(proc.pid)
        proc.kill()
        proc.communicate()
        raise AssertionError(f"the process did not finish; its threads' states: {states}")


def test_helper_killed_mid_dump_never_leaves_the_crashed_process_stopped(interp):
    code = """
    import threading, time
    import crashcatch, buggyext
    crashcatch.enable(dump_timeout=60)
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    buggyext.segfault()
    """
    prepared = prepare_script(interp, code, env=STALL)
    proc = start(interp, prepared)
    kill_helper_while_it_holds_every_thread(proc, crash=True)
    _, err = finish(proc)
    # It resumes and dies of its own signal, long before the 60 s dump deadline.
    assert proc.returncode == -signal.SIGSEGV, err
    assert "crashcatch: no minidump: the dump helper died of signal 9" in err, err
    assert prepared.dumps(interp) == []


def test_a_crash_kills_a_helper_stuck_while_holding_the_other_threads_at_its_deadline(interp):
    """A crash's helper stops every thread but the crashing one, which keeps its own
    deadline: a helper stuck while it holds the others is killed then, and they go."""
    code = """
    import threading, time
    import crashcatch, buggyext
    crashcatch.enable(dump_timeout=1)
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    buggyext.segfault()
    """
    r = run_script(interp, code, env={"CRASHCATCH_TEST_HELPER_STALL_MS": "120000"}, timeout=30)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert "crashcatch: no minidump: the dump helper did not finish within 1000 ms and was killed" in r.stderr, r.stderr
    assert r.dumps == []  # nothing half-written is left behind


def test_a_crash_whose_report_pipe_a_program_thread_drains_is_not_stuck(interp):
    """The crash's stderr is a pipe that a thread of the program itself drains, and the
    report is larger than the pipe's buffer: the crashing thread (which released the GIL,
    so the drain can run) can finish it only while that thread runs. A crash's helper must
    have let the threads it stopped go before it waits for the report (it once waited with
    them still stopped: a hang, its deadline not armed then)."""
    code = """
    import os, threading, crashcatch, buggyext
    r, w = os.pipe()
    out = open(os.environ["FILE_err"], "wb")
    def drain():
        while data := os.read(r, 65536):
            out.write(data)
            out.flush()
    threading.Thread(target=drain, daemon=True).start()
    os.dup2(w, 2)
    crashcatch.enable()
    ready = threading.Barrier(98)
    def deep(n):
        return deep(n - 1) if n else (ready.wait(), threading.Event().wait())
    for _ in range(97):
        threading.Thread(target=deep, args=(90,), daemon=True).start()
    ready.wait()
    buggyext.segfault_without_gil()
    """
    r = run_script(interp, code, files=["err"], timeout=60)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    # More than a pipe buffer of report went through the drain during the crash; what it had
    # not written out yet when the process died (up to a buffer's worth) is lost with it.
    report = r.files["err"]
    assert len(report) > 2 * 64 * 1024 and report.count("in deep") >= 97 * 90 // 2, len(report)
    assert len(r.dumps) == 1, report[-2000:]


# A live dump whose failure the program sees, and goes on.
LIVE_DUMP = """
import crashcatch
crashcatch.enable(dump_timeout={timeout})
try:
    crashcatch.write_minidump()
except RuntimeError as e:
    print("error:", e)
print("still running")
"""


def test_a_helper_stuck_while_holding_every_thread_ends_itself_at_the_deadline(interp):
    """While a live dump's helper holds every thread in a ptrace stop, the requesting
    thread's own deadline cannot fire: the helper ends itself then."""
    r = run_script(interp, LIVE_DUMP.format(timeout=1), env={"CRASHCATCH_TEST_HELPER_STALL_MS": "120000"},
                   timeout=30)
    assert r.returncode == 0, r.stderr
    assert "the dump helper died of signal 14" in r.stdout, (r.stdout, r.stderr)
    assert r.dumps == []  # nothing half-written is left behind


def test_helper_killed_mid_live_dump_lets_the_program_go_on(interp):
    proc = start(interp, prepare_script(interp, LIVE_DUMP.format(timeout=60), env=STALL))
    kill_helper_while_it_holds_every_thread(proc)
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert "error: no minidump: the dump helper died of signal 9" in out, out
    assert out.rstrip().endswith("still running"), out


def run_in_interactive_shell(command, replies=(), timeout=60):
    """Runs `command` in an interactive bash with job control on a pty, sends `replies`
    as terminal input, and returns what the terminal showed up to the exit status line."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["PS1"] = "$ "
        os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
    shown = b""
    try:
        os.write(fd, command.encode() + b'; echo "STATUS=$?"\n')
        for reply in replies:
            time.sleep(1.0)
            os.write(fd, reply.encode())
        end = time.monotonic() + timeout
        while b"STATUS=" not in shown.split(b"STATUS=$?", 1)[-1] and time.monotonic() < end:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    shown += os.read(fd, 4096)
                except OSError:
                    break
        time.sleep(0.3)
        while select.select([fd], [], [], 0.2)[0]:
            try:
                shown += os.read(fd, 4096)
            except OSError:
                break
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    return shown.decode(errors="replace").split('echo "STATUS=$?"', 1)[-1]


def shell_command(interp, prepared):
    import shlex
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in prepared.env.items()
                   if k.startswith(("CRASHCATCH", "PYTHONPATH", "FILE_")))
    return f"env {env} " + shlex.join(interp.command(prepared.argv, prepared.cwd))


def test_a_crash_under_job_control_is_not_reported_as_stopped(interp):
    code = """
    import crashcatch, buggyext
    crashcatch.enable()
    buggyext.segfault()
    """
    p = prepare_script(interp, code)
    shown = run_in_interactive_shell(shell_command(interp, p))
    assert "Stopped" not in shown, shown
    assert "STATUS=139" in shown, shown
    assert "minidump written" in shown, shown
    assert len(p.dumps(interp)) == 1


def test_a_live_dump_keeps_the_terminal_of_a_foreground_program(interp):
    code = """
    import crashcatch
    crashcatch.enable()
    crashcatch.write_minidump()
    print("got", input("say something: "))
    """
    p = prepare_script(interp, code)
    shown = run_in_interactive_shell(shell_command(interp, p), replies=["hello\n"])
    assert "Stopped" not in shown, shown
    assert "got hello" in shown and "STATUS=0" in shown, shown
    assert len(p.dumps(interp)) == 1


def assert_full_report(report, script, code, marker, innermost):
    """Header, the crashing thread's Python frames, a C stack from the faulting function
    to the thread's start, and the minidump line."""
    assert report.startswith("Fatal Python error: Segmentation fault\n\n"), report
    frames = current_thread_frames(report)
    assert frames and frames[0] == (script, str(script_line(code, marker)), "<module>"), report
    stack = c_stack(report)
    assert stack and stack[-1].get("raw") == "  <end of stack>", report
    syms = [f.get("sym") for f in stack]
    assert innermost in syms, report
    assert "crashcatch: minidump written to " in report, report


@pytest.mark.parametrize("order", ["crashcatch-first", "faulthandler-first"])
def test_faulthandler_in_either_order_gives_both_full_reports_and_the_dump(interp, order):
    """faulthandler installs its own ~12 KiB alternate stack; crashcatch's report must not
    run on it (it overflowed into the heap and lost the dump). Reached through faulthandler,
    our C stack goes through faulthandler's signal frame to the faulting code."""
    first, second = (("crashcatch", "faulthandler") if order == "crashcatch-first"
                     else ("faulthandler", "crashcatch"))
    code = f"""
    import faulthandler, os
    import crashcatch, buggyext
    {first}.enable(file=open(os.environ["FILE_{first}"], "w"))
    {second}.enable(file=open(os.environ["FILE_{second}"], "w"))
    buggyext.segfault()  # @call
    """
    # glibc's heap checks (MALLOC_CHECK_ needs libc_malloc_debug since glibc 2.34).
    env = {"MALLOC_CHECK_": "3", "MALLOC_PERTURB_": "165"}
    if os.path.exists(interp.host_path(MALLOC_DEBUG)):
        env["LD_PRELOAD"] = MALLOC_DEBUG
    r = run_script(interp, code, files=["crashcatch", "faulthandler"], env=env)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert_full_report(r.files["crashcatch"], r.script, code, "call", "deref_null")
    assert len(r.dumps) == 1, r.files["crashcatch"]
    fh = r.files["faulthandler"]
    assert fh.startswith("Fatal Python error: Segmentation fault\n\n"), fh
    assert current_thread_frames(fh)[0] == (r.script, str(script_line(code, "call")), "<module>"), fh


def test_the_report_stack_use_is_well_under_its_size(interp):
    """The handler's worst-case stack use, measured: a deep C stack, every thread's
    traceback, the module list, symbols from disk and a minidump."""
    code = """
    import threading
    import crashcatch, buggyext
    crashcatch.enable()
    ready = threading.Event()
    workers = [threading.Thread(target=ready.wait) for _ in range(20)]
    for w in workers:
        w.start()
    buggyext.call_back(lambda: buggyext.segfault(50))
    """
    r = run_script(interp, code, env={"CRASHCATCH_TEST_STACK_USE": "1"})
    assert r.returncode == -signal.SIGSEGV, r.stderr
    used = [int(line.split()[4]) for line in r.stderr.splitlines()
            if line.startswith("crashcatch: report stack used ")]
    assert used, r.stderr
    print(f"{interp.name}: report stack used {used[0]} bytes")
    # 512 KiB mapped (signal_safe/stack.rs): keep at least half of it as margin.
    assert 4096 < used[0] < 256 * 1024, used


def test_a_truncated_extension_on_the_stack_keeps_the_traceback(interp):
    """`cp` or `pip` over a running program's extension truncates its mapped file: reading
    its unwind tables would fault inside the handler and lose the whole report."""
    code = f"""
    import ctypes, os, shutil, sys
    shutil.copytree({interp.ext_dir!r}, "ext")
    sys.path.insert(0, os.path.abspath("ext"))
    import crashcatch, buggyext
    crashcatch.enable()

    def callback():
        # Half-copied over: its headers are still there, its unwind tables are not; its
        # call_back is on the C stack.
        os.truncate(buggyext.__file__, 4096)
        ctypes.string_at(0)  # @call

    buggyext.call_back(callback)  # @module
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert r.stderr.startswith("Fatal Python error: Segmentation fault"), r.stderr
    frames = current_thread_frames(r.stderr)
    assert frames and frames[-1] == (r.script, str(script_line(code, "module")), "<module>"), r.stderr
    assert (r.script, str(script_line(code, "call")), "callback") in frames, r.stderr
    assert "crash handler itself" not in r.stderr, r.stderr
    assert C_HEADER in r.stderr, r.stderr


def test_a_fault_inside_the_handler_still_prints_what_was_buffered(interp):
    code = """
    import crashcatch, buggyext
    crashcatch.enable()
    buggyext.sigabrt()  # @call
    """
    r = run_script(interp, code, env={"CRASHCATCH_TEST_FAULT_IN_HANDLER": "1"}, timeout=60)
    assert r.returncode == -signal.SIGABRT, r.stderr
    assert current_thread_frames(r.stderr) == [(r.script, str(script_line(code, "call")), "<module>")], r.stderr
    assert "crash handler itself received signal 11" in r.stderr, r.stderr


def test_the_helper_inherits_no_descriptors(interp):
    code = """
    import os, socket
    import crashcatch, buggyext
    crashcatch.enable(dump_timeout=60)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.set_inheritable(True)
    marker = open("marker.txt", "w")
    os.set_inheritable(marker.fileno(), True)
    buggyext.segfault()
    """
    proc = start(interp, prepare_script(interp, code, env=STALL))
    try:
        helper = wait_for(lambda: helper_of(proc.pid))
        wait_for(lambda: all(x == "t" for x in thread_states(proc.pid, but=proc.pid)))
        fd_dir = f"/proc/{helper}/fd"
        targets = {}
        for fd in os.listdir(fd_dir):
            try:
                targets[int(fd)] = os.readlink(f"{fd_dir}/{fd}")
            except FileNotFoundError:
                pass
        os.kill(helper, signal.SIGKILL)
    finally:
        finish(proc)
    # Its stdin is the go-ahead socket crashcatch made for it; nothing of the program's.
    assert targets.get(0, "").startswith("socket:"), targets
    inherited = [t for fd, t in targets.items() if fd != 0 and (t.startswith("socket:") or t.endswith("marker.txt"))]
    assert not inherited, targets


def test_closed_stdio_still_gets_the_dump_line(interp):
    code = """
    import os
    import crashcatch, buggyext
    report = open(os.environ["FILE_report"], "w")
    os.close(0)
    os.close(1)
    crashcatch.enable(file=report)
    buggyext.segfault()
    """
    r = run_script(interp, code, files=["report"])
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert r.files["report"].splitlines()[-1].startswith("crashcatch: minidump written to "), r.files
    assert len(r.dumps) == 1


@pytest.mark.parametrize("source", ["watchdog", "signal"])
def test_live_dumps_are_rate_limited(interp, source):
    trigger = {
        "watchdog": "crashcatch.dump_traceback_later(0.2, repeat=True, file=out, minidump=True)\n"
                    "    time.sleep(1.5)\n"
                    "    crashcatch.cancel_dump_traceback_later()",
        "signal": "crashcatch.register(signal.SIGUSR1, file=out, minidump=True)\n"
                  "    for _ in range(4):\n"
                  "        os.kill(os.getpid(), signal.SIGUSR1)\n"
                  "        time.sleep(0.1)",
    }[source]
    code = f"""
    import os, signal, time
    import crashcatch
    out = open(os.environ["FILE_out"], "w")
    crashcatch.enable(live_dump_interval=60)
    {trigger}
    """
    r = run_script(interp, code, files=["out"])
    assert r.returncode == 0, r.stderr
    assert len(r.dumps) == 1, r.files["out"]
    assert r.files["out"].count("minidump written to ") == 1, r.files["out"]
    assert "at most one live dump every 60 s (live_dump_interval)" in r.files["out"], r.files["out"]


def test_without_a_rate_limit_every_signal_dumps(interp):
    code = """
    import os, signal, time
    import crashcatch
    crashcatch.enable(live_dump_interval=0)
    crashcatch.register(signal.SIGUSR1, file=open(os.devnull, "w"), minidump=True)
    for _ in range(3):
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.1)
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    assert len(r.dumps) == 3


def test_chaining_hands_the_original_fault_to_the_default_action(interp, tmp_path):
    """The kernel core (the default action after crashcatch) records the original fault:
    si_code SEGV_MAPERR at the faulting address, not a signal crashcatch re-raised."""
    if not os.path.exists(interp.host_path("/usr/bin/gdb")):
        pytest.skip(f"gdb is not installed for {interp.name}")
    with open("/proc/sys/kernel/core_pattern") as f:
        if f.read().strip() != "core":
            pytest.skip("the kernel's core_pattern is not a plain 'core' file")
    code = """
    import crashcatch, buggyext
    crashcatch.enable()
    buggyext.segfault_at(0xdead0000)
    """
    r = run_script(interp, code, core=True)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    core = os.path.dirname(r.script) + "/core"
    g = interp.run(["gdb", "-nx", "-batch", "-ex", "p $_siginfo.si_code",
                    "-ex", "p/x $_siginfo._sifields._sigfault.si_addr", "-ex", "bt 1", interp.python, core])
    assert "$1 = 1\n" in g.stdout, g.stdout + g.stderr  # SEGV_MAPERR
    assert "$2 = 0xdead0000" in g.stdout, g.stdout
    assert "read_address" in g.stdout, g.stdout


def test_a_software_signal_is_passed_on_and_only_its_handler_restored(interp):
    """SIGABRT sent with kill() to a program with its own (Python) SIGABRT handler: the
    report, then that handler runs and the program goes on; crashcatch still handles the
    other fatal signals (faulthandler, too, restores only the signal that fired)."""
    code = """
    import ctypes, os, signal
    import crashcatch
    got = []
    signal.signal(signal.SIGABRT, lambda *a: got.append("python handler"))
    crashcatch.enable()
    os.kill(os.getpid(), signal.SIGABRT)
    print(got)
    def handler_of(signo):
        buf = ctypes.create_string_buffer(256)
        assert ctypes.CDLL(None).sigaction(signo, None, buf) == 0
        return int.from_bytes(buf.raw[:8], "little")
    print("SIGSEGV handled:", handler_of(signal.SIGSEGV) not in (0, 1))
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("Fatal Python error: Aborted\n\n"), r.stderr
    assert "['python handler']" in r.stdout, r.stdout
    assert "SIGSEGV handled: True" in r.stdout, r.stdout


def test_a_fork_during_a_live_dump_does_not_deadlock_the_child(interp):
    code = """
    import os, threading, time
    import crashcatch
    crashcatch.enable(dump_timeout=30)
    t = threading.Thread(target=crashcatch.write_minidump)
    t.start()
    time.sleep(1.0)  # the dump is in progress (its helper stalls)
    pid = os.fork()
    if pid == 0:
        os.environ.pop("CRASHCATCH_TEST_HELPER_DELAY_MS", None)
        try:
            print("child dump:", crashcatch.write_minidump(), flush=True)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    t.join()
    print("child status", status)
    """
    r = run_script(interp, code, env={"CRASHCATCH_TEST_HELPER_DELAY_MS": "3000"}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "child dump: " in r.stdout and "child status 0" in r.stdout, r.stdout + r.stderr
    assert len(r.dumps) == 2, r.stdout


def test_overlong_dump_paths_are_refused(interp):
    code = """
    import crashcatch
    for call in (lambda: crashcatch.enable(dump_dir="/tmp/" + "d" * 5000),
                 lambda: crashcatch.write_minidump("/tmp/" + "f" * 5000)):
        try:
            call()
            print("accepted")
        except Exception as e:
            print(type(e).__name__, e)
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "accepted" not in lines, r.stdout
    assert all("bytes long, more than the 4095 allowed" in line for line in lines), r.stdout


def test_a_non_dumpable_process_is_reported_without_a_dump(interp):
    code = """
    import ctypes
    import crashcatch, buggyext
    crashcatch.enable()
    PR_SET_DUMPABLE = 4
    assert ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    buggyext.segfault()
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert "crashcatch: no minidump: the process is not dumpable" in r.stderr, r.stderr
    assert C_HEADER in r.stderr
    assert r.dumps == []


def test_the_ptracer_setting_is_left_alone_without_yama(interp, tmp_path):
    """Without Yama's restricted mode nothing needs PR_SET_PTRACER; before, every dump let
    any process of the user attach (PR_SET_PTRACER_ANY) and then wiped the program's own
    setting. With ptrace_scope 1, only the helper's pid is named (see docs/minidump.md)."""
    scope = "/proc/sys/kernel/yama/ptrace_scope"
    if os.path.exists(scope) and open(scope).read().strip() == "1":
        pytest.skip("Yama's ptrace_scope is 1 here: the helper is named as ptracer")
    code = """
    import crashcatch
    crashcatch.enable()
    crashcatch.write_minidump()
    """
    p = prepare_script(interp, code)
    r, calls = strace_script(interp, p, "prctl", tmp_path / "prctl.trace", timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(p.dumps(interp)) == 1, r.stderr
    assert "PR_GET_DUMPABLE" in calls, calls  # the trace did see the dump's prctl calls
    assert "PR_SET_PTRACER" not in calls, calls


def test_a_crash_while_enable_installs_its_handlers_reaches_the_previous_handler(interp):
    """A crash right after our handler is installed (test hook) already finds the previous
    handler (here faulthandler's) to chain to; it used to be published only afterwards, and
    the handler chained to itself."""
    code = """
    import faulthandler, os
    import crashcatch
    faulthandler.enable(file=open(os.environ["FILE_faulthandler"], "w"))
    crashcatch.enable()  # @enable
    """
    r = run_script(interp, code, files=["faulthandler"],
                   env={"CRASHCATCH_TEST_RAISE_DURING_ENABLE": str(int(signal.SIGSEGV))})
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert r.stderr.startswith("Fatal Python error: Segmentation fault\n\n"), r.stderr
    assert "crash handler itself" not in r.stderr, r.stderr
    fh = r.files["faulthandler"]
    assert fh and fh.startswith("Fatal Python error: Segmentation fault\n\n"), r.files
    assert current_thread_frames(fh)[-1] == (r.script, str(script_line(code, "enable")), "<module>"), fh


def test_crashcatch_threads_take_no_signal(interp):
    """The watchdog and the dump thread block every signal, as faulthandler's watchdog does:
    a process-directed signal that landed on one ran a `register()`ed handler where no
    Python thread is current (the report lost its "Current thread" line: a SIGUSR1 sent
    right after `dump_traceback_later()` was taken by the starting watchdog, 5 to 10 in 160
    runs on a busy machine). Read from the kernel's view of each thread, once both have
    named themselves (a thread starts with its creator's name)."""
    code = """
    import os, signal, time, crashcatch
    crashcatch.register(signal.SIGUSR1, file=open(os.devnull, "w"), minidump=True)
    crashcatch.dump_traceback_later(1000, file=open(os.devnull, "w"))
    def threads():
        found = []
        for tid in os.listdir("/proc/self/task"):
            try:
                status = open(f"/proc/self/task/{tid}/status").read()
            except OSError:
                continue  # gone
            fields = dict(line.split(":\\t", 1) for line in status.splitlines() if ":\\t" in line)
            found.append((fields["Name"].strip(), fields["SigBlk"].strip()))
        return found
    deadline = time.monotonic() + 30
    while not {"crashcatch-dump", "crashcatch-watc"} <= {name for name, _ in threads()}:
        assert time.monotonic() < deadline, threads()
        time.sleep(0.01)
    for name, mask in threads():
        print(name, mask)
    crashcatch.cancel_dump_traceback_later()
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    threads = [line.split() for line in r.stdout.splitlines()]
    catchable = [s for s in range(1, 65) if s not in (signal.SIGKILL, signal.SIGSTOP)
                 and not 32 <= s < signal.SIGRTMIN]  # glibc keeps 32 and 33 for itself
    ours = [(name, int(mask, 16)) for name, mask in threads if name.startswith("crashcatch-")]
    # comm is cut to 15 characters.
    assert sorted(name for name, _ in ours) == ["crashcatch-dump", "crashcatch-watc"], threads
    for name, mask in ours:
        assert all(mask >> (s - 1) & 1 for s in catchable), (name, hex(mask))


def test_a_timeout_during_a_signal_dump_does_not_overwrite_its_report(interp):
    """The watchdog's text goes through the report buffer that a dump in progress copies into
    its metadata: it waits for the report lock instead of overwriting the buffer."""
    code = """
    import os, signal, time
    import crashcatch
    crashcatch.enable(live_dump_interval=0, dump_timeout=30)
    crashcatch.register(signal.SIGUSR1, file=open(os.devnull, "w"), minidump=True)
    crashcatch.dump_traceback_later(0.5, file=open(os.devnull, "w"), minidump=False)
    os.kill(os.getpid(), signal.SIGUSR1)  # its helper waits 2 s; the timeout fires meanwhile
    time.sleep(1)
    """
    r = run_script(interp, code, env={"CRASHCATCH_TEST_HELPER_DELAY_MS": "2000"})
    assert r.returncode == 0, r.stderr
    assert len(r.dumps) == 1, r.stderr
    from test_minidump import check
    report = check(r.dumps[0])["metadata"]["report"]
    assert report.startswith("Current thread 0x"), report
    assert "Timeout (" not in report, report
