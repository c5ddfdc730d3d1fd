"""The `crashcatch` console script: `crashcatch symbolize` and `crashcatch core` exec the native
program without importing the crashcatch package (its extension, threading, argparse: tens of
ms of start-up), and print what `python -m crashcatch` prints for the same dump."""
import os
import re
import signal

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


def test_console_script_execs_the_symbolizer_without_importing_crashcatch(interp):
    """The imports the console script makes before the symbolizer replaces it, as
    PYTHONPROFILEIMPORTTIME reports them: its launcher, and nothing of the package."""
    dump = crash_dump(interp)
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1", **PLAIN)
    r = interp.run([console_script(interp), "symbolize", dump], env=env)
    assert r.returncode == 0 and "deref_null" in r.stdout, r.stderr
    modules = imported_modules(r.stderr)
    assert "crashcatch_launcher" in modules, r.stderr
    package = [m for m in modules if m == "crashcatch" or m.startswith("crashcatch.")]
    assert package == [], package
    # Other commands still get the whole command line interface.
    r = interp.run([console_script(interp), "debugger-scripts"], env=env)
    assert r.returncode == 0 and r.stdout.strip().endswith("crashcatch_gdb.py"), r.stderr
    assert "crashcatch.__main__" in imported_modules(r.stderr)


def test_console_script_core_converts_without_importing_crashcatch(interp):
    dump = crash_dump(interp)
    core = dump[:-len(".dmp")] + ".core"
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1", **PLAIN)
    r = interp.run([console_script(interp), "core", dump, "-o", core], env=env)
    assert r.returncode == 0 and "wrote" in r.stdout, r.stderr
    assert not [m for m in imported_modules(r.stderr) if m.split(".")[0] == "crashcatch"]
    with open(interp.host_path(core), "rb") as f:
        assert f.read(4) == b"\x7fELF"
