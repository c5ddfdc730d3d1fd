"""CRASHCATCH=1: crashcatch enabled at start-up (the crashcatch-autoenable.pth line) in a
script that never imports it, in its subprocess child and its multiprocessing children
(fork and spawn); unset, not even imported.

Truth: the crashing process's own pid (printed by its parent) in the dump's name, the
script's lines in the report, buggyext's functions in the C stack, and the dump read by the
`minidump` crate (tests/dumpcheck)."""
import os
import re
import signal

import pytest

from crashlib import c_stack, current_thread_frames, peer_c_stacks, run_script, script_line, thread_blocks
from test_minidump import check

SEGFAULT = """
import buggyext
buggyext.segfault(2)  # @crash
"""


def auto_env(**more):
    env = {"CRASHCATCH": "1"}
    env.update(more)
    return env


def native_functions(report):
    return [f.get("sym") for f in c_stack(report) or []]


def test_script_that_never_imports_crashcatch_gets_report_and_dump(interp):
    r = run_script(interp, SEGFAULT, env=auto_env())
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert current_thread_frames(r.stderr)[0] == (r.script, str(script_line(SEGFAULT, "crash")), "<module>"), \
        r.stderr
    assert "deref_null" in native_functions(r.stderr), r.stderr
    assert len(r.dumps) == 1 and re.search(r"^crashcatch: minidump written to .*\.dmp$", r.stderr, re.M), r.stderr
    assert check(r.dumps[0])["metadata"]["signal"] == signal.SIGSEGV


def test_minidump_variable_turns_dumps_off(interp):
    r = run_script(interp, SEGFAULT, env=auto_env(CRASHCATCH_MINIDUMP="0"))
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert "deref_null" in native_functions(r.stderr), r.stderr
    assert r.dumps == [], r.stderr


LOADED = """
import sys
print("crashcatch" in sys.modules, "crashcatch" in sys.modules and sys.modules["crashcatch"].is_enabled())
"""


@pytest.mark.parametrize("value, loaded", [(None, "False False"), ("0", "False False"), ("", "False False"),
                                           ("1", "True True")])
def test_nothing_is_loaded_unless_asked(interp, value, loaded):
    env = {} if value is None else {"CRASHCATCH": value}
    r = run_script(interp, LOADED, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == loaded, (value, r.stdout, r.stderr)
    assert r.stderr == ""


CHILD = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import buggyext; buggyext.segfault(2)"])
print(child.pid, child.wait())
"""

MULTIPROCESSING = """
import multiprocessing, sys
import buggyext

def crash():
    buggyext.segfault(2)

if __name__ == "__main__":
    child = multiprocessing.get_context(sys.argv[1]).Process(target=crash)
    child.start()
    child.join()
    print(child.pid, child.exitcode)
"""


def crashed_child(r):
    """The child's pid, after checking it died of SIGSEGV leaving one dump, its own."""
    assert r.returncode == 0, r.stderr
    pid, status = map(int, r.stdout.split())
    assert status == -signal.SIGSEGV, r.stdout
    # Dumps are named PROGRAM-PID-TIME.dmp.
    names = [os.path.basename(d) for d in r.dumps]
    assert len(names) == 1 and f"-{pid}-" in names[0], (pid, names, r.stderr)
    assert "deref_null" in native_functions(r.stderr), r.stderr
    return pid


def test_subprocess_child_inherits_it(interp):
    r = run_script(interp, CHILD, env=auto_env())
    crashed_child(r)
    assert current_thread_frames(r.stderr)[0] == ("<string>", "1", "<module>"), r.stderr


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children_inherit_it(interp, method):
    r = run_script(interp, MULTIPROCESSING, env=auto_env(), args=[method])
    crashed_child(r)
    assert current_thread_frames(r.stderr)[0][2] == "crash", r.stderr


HANG = """
import ctypes
ctypes.CDLL(None).sleep(60)  # @sleep
"""


def test_timeout_variable_dumps_python_and_c_stacks(interp):
    r = run_script(interp, HANG, env=auto_env(CRASHCATCH_TIMEOUT="0.5", CRASHCATCH_TIMEOUT_EXIT="1"))
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("Timeout (0:00:00.500000)!\n"), r.stderr
    blocks = list(thread_blocks(r.stderr).values())
    assert len(blocks) == 1 and blocks[0][0] == (r.script, str(script_line(HANG, "sleep")), "<module>"), r.stderr
    stacks = list(peer_c_stacks(r.stderr).values())
    assert len(stacks) == 1 and {"sleep", "__nanosleep", "nanosleep", "clock_nanosleep", "__clock_nanosleep"} & \
        {f.get("sym") for f in stacks[0]}, r.stderr


def test_bad_timeout_is_one_line_and_the_program_runs(interp):
    r = run_script(interp, "print('ran')\n", env=auto_env(CRASHCATCH_TIMEOUT="soon"))
    assert r.returncode == 0 and r.stdout == "ran\n", r.stderr
    assert re.fullmatch(r"crashcatch: CRASHCATCH is set but crashcatch is not enabled in process \d+: "
                        r"CRASHCATCH_TIMEOUT must be a number of seconds, not 'soon'\n", r.stderr), r.stderr
