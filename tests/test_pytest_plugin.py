"""The pytest plugin (`pytest --crashcatch`), run by each interpreter's own pytest (and
pytest-xdist, installed in the test venvs by prepare_envs.py) on a small test project
with a test that segfaults in buggyext.

Truth: the project's own test ids and lines, buggyext's functions in the C stack, the dump
read by the `minidump` crate (tests/dumpcheck: its annotations name the test), and pytest's
JUnit XML for what passed."""
import os
import re
import signal
import textwrap
import xml.etree.ElementTree as ET

import pytest

from crashlib import c_stack, peer_c_stacks, prepare_script, run_script, script_line, thread_blocks
from prepare_envs import PYTEST_NOTE
from test_minidump import check

TESTS = """
import ctypes, json, os, sys
import faulthandler
import buggyext

def test_before():
    cc = sys.modules.get("crashcatch")
    with open(os.environ["STATE_FILE"], "w") as f:
        json.dump({"crashcatch": bool(cc and cc.is_enabled()), "faulthandler": faulthandler.is_enabled()}, f)

def test_crash():
    buggyext.segfault(2)  # @crash

def test_after():
    pass
"""

HANGS = """
import ctypes

def test_hang():
    # The timeout's C-stack request (a signal) ends the sleep early: nonzero seconds left.
    assert ctypes.CDLL(None).sleep(60) > 0  # @hang
"""


def need_pytest(interp):
    """Skips, saying why, when prepare_envs.py could not install pytest in the venv."""
    for note in interp.notes:
        if note.startswith(PYTEST_NOTE):
            pytest.skip(note)


class Project:
    """A test project in the interpreter's scratch space, and pytest runs on it."""

    def __init__(self, interp, files, env=None):
        need_pytest(interp)
        self.interp = interp
        self.prepared = prepare_script(interp, "")
        # The outer pytest's own settings must not reach the inner one.
        for name in list(self.prepared.env):
            if name.startswith("PYTEST_") or name in ("PYTHONFAULTHANDLER", "CRASHCATCH"):
                del self.prepared.env[name]
        self.prepared.env.update(env or {})
        self.prepared.env["STATE_FILE"] = self.prepared.cwd + "/state.json"
        # The project is its own rootdir (node ids relative to it), as a real one with its
        # pytest.ini is: the scratch space may lie under this repository's pyproject.toml.
        files = {"pytest.ini": "[pytest]\n", **files}
        for name, code in files.items():
            with open(os.path.join(self.prepared.host_dir(interp), name), "w") as f:
                f.write(textwrap.dedent(code).lstrip())

    def path(self, name):
        return self.prepared.cwd + "/" + name

    def pytest(self, *args):
        argv = [self.interp.venv_python, "-m", "pytest", "-p", "no:cacheprovider", *args]
        return self.interp.run(argv, cwd=self.prepared.cwd, env=self.prepared.env, timeout=240)

    def read(self, name):
        path = self.interp.host_path(self.path(name))
        return open(path).read() if os.path.exists(path) else None

    def dumps(self):
        return self.prepared.dumps(self.interp)

    def junit(self):
        """{test name: failure text or None} from the JUnit XML of the run (xdist's crash
        report, having no phase, is written as an error)."""
        results = {}
        for case in ET.fromstring(self.read("junit.xml")).iter("testcase"):
            problems = [p.text or "" for p in case if p.tag in ("failure", "error")]
            results[case.get("name")] = "\n".join(problems) if problems else None
        return results


def assert_names_crash_with_c_frames(text, project):
    """The merged report names test_crash by its frame and has buggyext's C frames."""
    where = f'File "{project.path("test_crashes.py")}", line {script_line(TESTS, "crash")}'
    assert re.search(re.escape(where) + r",? in test_crash$", text, re.M), text


def test_crash_without_xdist_names_the_test_and_prints_the_dump(interp):
    project = Project(interp, {"test_crashes.py": TESTS})
    r = project.pytest("--crashcatch")
    assert r.returncode == -signal.SIGSEGV, r.stdout + r.stderr
    assert re.search(r"^test_crashes\.py \.$", r.stdout, re.M), r.stdout  # test_before passed
    # One report (pytest's faulthandler would print a second, Python-only one), with C frames.
    assert r.stderr.count("Fatal Python error: Segmentation fault") == 1, r.stderr
    assert_names_crash_with_c_frames(r.stderr, project)
    assert "deref_null" in [f.get("sym") for f in c_stack(r.stderr)], r.stderr
    # The report's last lines: the test's id, then the dump's path.
    dumps = project.dumps()
    # `python -m pytest` names the dump after pytest, not its __main__.py.
    assert len(dumps) == 1 and os.path.basename(dumps[0]).startswith("pytest-"), dumps
    assert r.stderr.endswith(
        "\ncrashcatch: running test test_crashes.py::test_crash\n"
        f"crashcatch: minidump written to {project.path('dumps')}/{os.path.basename(dumps[0])}\n"), r.stderr
    annotations = check(dumps[0])["metadata"]["annotations"]
    assert annotations.get("pytest.test") == "test_crashes.py::test_crash", annotations
    # During the run crashcatch, not faulthandler, was on.
    assert project.read("state.json") == '{"crashcatch": true, "faulthandler": false}'


def test_crash_in_xdist_worker_is_a_failure_with_the_dump(interp):
    project = Project(interp, {"test_crashes.py": TESTS})
    r = project.pytest("--crashcatch", "-n", "2", "--junitxml=junit.xml")
    assert r.returncode == 1, r.stdout + r.stderr
    results = project.junit()
    assert results["test_before"] is None and results["test_after"] is None, results
    failure = results["test_crash"]
    assert re.search(r"worker 'gw\d+' crashed while running 'test_crashes.py::test_crash'", failure), failure
    dumps = project.dumps()
    assert len(dumps) == 1, (dumps, r.stdout, r.stderr)
    assert f"crashcatch: minidump written to {project.path('dumps')}/{os.path.basename(dumps[0])}\n" in failure, \
        failure
    # The symbolized crashing thread: the dump's summary (its annotation names the test)
    # and the merged Python and C stack.
    assert "annotations: " in failure and "pytest.test=test_crashes.py::test_crash" in failure, failure
    assert_names_crash_with_c_frames(failure, project)
    assert re.search(r"^  deref_null at .*buggyext\.c:\d+ ", failure, re.M), failure
    assert check(dumps[0])["metadata"]["annotations"].get("pytest.test") == "test_crashes.py::test_crash"
    # The terminal shows it too (the failures section).
    assert "pytest.test=test_crashes.py::test_crash" in r.stdout, r.stdout


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_without_the_option_pytest_behaves_as_before(interp, xdist):
    project = Project(interp, {"test_crashes.py": TESTS})
    r = project.pytest(*(["-n", "2"] if xdist else []))
    if xdist:
        assert r.returncode == 1 and re.search(r"worker 'gw\d+' crashed while running 'test_crashes.py::test_crash'",
                                               r.stdout), r.stdout
        assert "crashcatch:" not in r.stdout, r.stdout
    else:
        assert r.returncode == -signal.SIGSEGV, r.stderr
        assert project.read("state.json") == '{"crashcatch": false, "faulthandler": true}'
    # faulthandler's report (3.14+ has a C stack of its own), not crashcatch's.
    assert "Fatal Python error: Segmentation fault" in r.stderr, r.stderr
    assert "crashcatch:" not in r.stderr and project.dumps() == [], r.stderr


def test_ini_setting_turns_it_on(interp):
    project = Project(interp, {"test_crashes.py": TESTS, "pytest.ini": "[pytest]\ncrashcatch = true\n"})
    r = project.pytest("-k", "before")
    assert r.returncode == 0, r.stdout + r.stderr
    assert project.read("state.json") == '{"crashcatch": true, "faulthandler": false}'


@pytest.mark.parametrize("before, option", [("PYTHONFAULTHANDLER", "--crashcatch"), ("CRASHCATCH", "--crashcatch"),
                                            ("CRASHCATCH", None)])
def test_one_report_whichever_handler_was_there_first(interp, before, option):
    """faulthandler (PYTHONFAULTHANDLER=1) or crashcatch (CRASHCATCH=1) enabled before
    pytest starts: still one report with C frames, on the terminal, and one dump;
    CRASHCATCH=1 turns the plugin on by itself (else pytest's capturing would swallow the
    report crashcatch writes to the stderr it had at start-up)."""
    project = Project(interp, {"test_crashes.py": TESTS}, env={before: "1"})
    r = project.pytest(*([option] if option else []))
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert r.stderr.count("Fatal Python error: Segmentation fault") == 1, r.stderr
    assert "deref_null" in [f.get("sym") for f in c_stack(r.stderr)] and len(project.dumps()) == 1, r.stderr
    assert project.read("state.json") == '{"crashcatch": true, "faulthandler": false}'


def test_faulthandler_timeout_shows_python_and_c_stacks(interp):
    project = Project(interp, {"test_hangs.py": HANGS, "pytest.ini": "[pytest]\nfaulthandler_timeout = 0.5\n"})
    r = project.pytest("--crashcatch")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Timeout (0:00:00.500000)!\n" in r.stderr, r.stderr
    report = r.stderr[r.stderr.index("Timeout ("):]
    main = [frames for frames in thread_blocks(report).values()
            if frames and frames[0][2] == "test_hang"]
    assert main and main[0][0] == (project.path("test_hangs.py"), str(script_line(HANGS, "hang")), "test_hang"), report
    sleeps = {"sleep", "usleep", "nanosleep", "__nanosleep", "clock_nanosleep", "__clock_nanosleep"}
    assert any(sleeps & {f.get("sym") for f in frames[:4]} for frames in peer_c_stacks(report).values()), report


IN_PROCESS = """
import faulthandler, os, sys
for name in [n for n in os.environ if n.startswith("PYTEST_")]:
    del os.environ[name]
import pytest
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "test_ok.py"), "w") as f:
    f.write("def test_ok():\\n    pass\\n")
code = pytest.main(["-q", "-p", "no:cacheprovider", "--crashcatch", os.path.join(here, "test_ok.py")])
import crashcatch
print(int(code), faulthandler.is_enabled(), crashcatch.is_enabled(), flush=True)
import buggyext
buggyext.segfault(2)
"""


@pytest.mark.parametrize("before, after", [(None, "0 False False"), ("PYTHONFAULTHANDLER", "0 True False"),
                                           ("CRASHCATCH", "0 False True")])
def test_the_session_puts_back_what_was_there(interp, before, after):
    """pytest.main() in a process: afterwards faulthandler and crashcatch are as they were,
    and a crash reports as it would have without the session (no test named)."""
    need_pytest(interp)
    r = run_script(interp, IN_PROCESS, env={before: "1"} if before else {})
    assert r.returncode == -signal.SIGSEGV, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == after, r.stdout
    assert "running test" not in r.stderr, r.stderr
    if before == "CRASHCATCH":
        assert "deref_null" in [f.get("sym") for f in c_stack(r.stderr)] and len(r.dumps) == 1, r.stderr
    else:
        assert "crashcatch:" not in r.stderr and r.dumps == [], r.stderr
    assert r.stderr.count("Fatal Python error: Segmentation fault") == (0 if before is None else 1), r.stderr
