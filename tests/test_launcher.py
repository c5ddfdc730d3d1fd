"""The installed `crashcatch` command: a native program (launcher/) that execs the symbolizer
for `crashcatch symbolize` and `crashcatch core` without starting Python at all (a console
script cost ~30 ms of Python start-up), prints what `python -m crashcatch` prints for the
same dump, and runs the Python-front commands with the venv's Python."""
import os
import re
import signal

import pytest

from crashlib import THREADED_CRASH, run_script

CODE = THREADED_CRASH.format(call="buggyext.call_back(lambda: buggyext.segfault(2))")
PLAIN = {"NO_COLOR": "1", "DEBUGINFOD_URLS": ""}


def console_script(interp):
    return os.path.join(os.path.dirname(interp.venv_python), "crashcatch")


def inner(interp, host_path):
    return host_path[len(interp.root):] if interp.root else host_path


def imported_modules(importtime_stderr):
    """Module names from `-X importtime` lines ("import time: self | cumulative | name")."""
    return [m.group(1).strip() for m in re.finditer(r"^import time:[^|]*\|[^|]*\|(.*)$", importtime_stderr, re.M)]


def crash_dump(interp):
    r = run_script(interp, CODE)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    return inner(interp, r.dumps[0])


def test_console_script_symbolizes_as_python_m_crashcatch_does(interp):
    dump = crash_dump(interp)
    env = dict(os.environ, **PLAIN)
    script = interp.run([console_script(interp), "symbolize", dump], env=env)
    module = interp.run([interp.venv_python, "-m", "crashcatch", "symbolize", dump], env=env)
    assert script.returncode == 0, script.stderr
    assert module.returncode == 0, module.stderr
    assert "deref_null" in script.stdout and "outer" in script.stdout, script.stdout
    assert script.stdout == module.stdout
    # --json goes through the same launcher.
    as_json = interp.run([console_script(interp), "symbolize", "--json", dump], env=env)
    assert as_json.returncode == 0 and as_json.stdout.lstrip().startswith("{"), as_json.stderr


def test_installed_command_is_native_and_runs_no_python(interp):
    """The command in the venv's bin directory is an ELF program, and `crashcatch symbolize`
    runs no Python: with PYTHONPROFILEIMPORTTIME, nothing reports an import."""
    with open(interp.host_path(console_script(interp)), "rb") as f:
        assert f.read(4) == b"\x7fELF", "the installed crashcatch is not a native program"
    dump = crash_dump(interp)
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1", **PLAIN)
    r = interp.run([console_script(interp), "symbolize", dump], env=env)
    assert r.returncode == 0 and "deref_null" in r.stdout, r.stderr
    assert imported_modules(r.stderr) == [], r.stderr
    # The commands Python runs get the venv's Python and the whole command line interface.
    r = interp.run([console_script(interp), "debugger-scripts"], env=env)
    assert r.returncode == 0 and r.stdout.strip().endswith("crashcatch_gdb.py"), r.stderr
    assert "crashcatch.__main__" in imported_modules(r.stderr)
    assert r.stdout.startswith(os.path.dirname(os.path.dirname(console_script(interp)))), r.stdout


def test_installed_command_core_converts_without_python(interp):
    dump = crash_dump(interp)
    core = dump[:-len(".dmp")] + ".core"
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1", **PLAIN)
    r = interp.run([console_script(interp), "core", dump, "-o", core], env=env)
    assert r.returncode == 0 and "wrote" in r.stdout, r.stderr
    assert imported_modules(r.stderr) == [], r.stderr
    with open(interp.host_path(core), "rb") as f:
        assert f.read(4) == b"\x7fELF"


def test_crashcatch_python_without_crashcatch_says_what_to_do(interp, tmp_path):
    """CRASHCATCH_PYTHON names a Python that cannot import crashcatch (the interpreter's own,
    with the venv's site-packages out of reach): a message naming it and the fix, exit 2."""
    env = dict(os.environ, CRASHCATCH_PYTHON=interp.python, PYTHONNOUSERSITE="1", **PLAIN)
    env.pop("PYTHONPATH", None)
    probe = interp.run([interp.python, "-c", "import crashcatch"], env=env)
    if probe.returncode == 0:
        pytest.skip(f"{interp.python} itself has crashcatch installed")
    r = interp.run([console_script(interp), "debugger-scripts"], env=env)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert f"{interp.python} cannot import crashcatch" in r.stderr and "CRASHCATCH_PYTHON" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    # A CRASHCATCH_PYTHON that does not exist, or that is this very command: a message, no loop.
    for python in ("/nonexistent/python3", console_script(interp)):
        r = interp.run([console_script(interp), "run", "x.py"], env=dict(env, CRASHCATCH_PYTHON=python), timeout=60)
        assert r.returncode == 2 and "found no Python to run crashcatch" in r.stderr, (python, r.stderr)
