"""The pytest plugin: ``pytest --crashcatch`` (or ``crashcatch = true`` in the ini file).

- crashcatch takes over from pytest's faulthandler plugin: the crash report goes where
  faulthandler's would (a duplicate of the test process's stderr), and
  ``faulthandler_timeout`` dumps every thread's Python and C stacks;
- every minidump is annotated with the running test's node id (``pytest.test``);
- with pytest-xdist, every worker is enabled too, and the failure of a test whose worker
  died carries the dump's path and its symbolized crashing thread;
- the fatal report names the running test (`crashcatch: running test NODEID`, just before
  the dump's path), so without xdist the terminal says which test crashed.

Off unless asked (the option, the ini setting, or CRASHCATCH=1 in the environment):
installed, it only adds the option and the ini setting; `-p no:crashcatch` removes it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

# The minidump annotation that names the running test.
TEST_ANNOTATION = "pytest.test"
_WORKER_ANNOTATION = "pytest.xdist_worker"
# How long the controller waits for the symbolizer on a crashed worker's dump.
_SYMBOLIZE_TIMEOUT = 120
_STATE = pytest.StashKey["_Session"]()
# The native report note's limit, in bytes.
_NOTE_MAX = 1024


def pytest_addoption(parser):
    group = parser.getgroup("crashcatch", "crash reports with C stacks (crashcatch)")
    group.addoption("--crashcatch", action="store_true", default=None, dest="crashcatch",
                    help="report crashes with C stacks and minidumps (crashcatch), in place of "
                         "pytest's faulthandler; also in pytest-xdist workers")
    parser.addini("crashcatch", "same as --crashcatch", type="bool", default=False)


def _active(config):
    # CRASHCATCH=1 (crashcatch/_autoenable.py) enabled crashcatch at start-up, writing to
    # the stderr descriptor that pytest's capturing takes over during each test: the plugin
    # moves the report to where it stays visible.
    auto = os.environ.get("CRASHCATCH", "0") not in ("", "0")
    return auto or bool(config.getoption("crashcatch")) or config.getini("crashcatch")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    # Before pytest_configure: pytest's faulthandler plugin would print a second,
    # Python-only report of each crash and its own Python-only timeout dumps. Blocking it
    # here (also in xdist workers, which run this hook) is what `-p no:faulthandler` does.
    if _active(config):
        config.pluginmanager.set_blocked("faulthandler")


def _stderr_fileno():
    """The test process's stderr as a descriptor; xdist workers replace sys.stderr by an
    object without one, sys.__stderr__ is then the real one."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            fd = stream.fileno()
        except (AttributeError, ValueError, OSError):
            continue
        if fd >= 0:
            return fd
    raise pytest.UsageError("crashcatch: no standard error descriptor to write crash reports to")


def _ini_or(config, name, default):
    """An ini value of pytest's faulthandler plugin (registered even when the plugin is
    blocked); `default` when this pytest does not have the setting."""
    try:
        return config.getini(name)
    except ValueError:
        return default


class _Session:
    """What the plugin changed in this process, to put back at the end."""

    def __init__(self, config):
        import crashcatch
        import faulthandler

        self.config = config
        self.fd = os.dup(_stderr_fileno())
        self.faulthandler_was_enabled = faulthandler.is_enabled()
        # Enabled before pytest (CRASHCATCH=1, sitecustomize): its handlers stay where they
        # are in the chain, only the report moves to our descriptor for the session.
        self.crashcatch_file_before = crashcatch._files.get("fatal") if crashcatch.is_enabled() else None
        self.crashcatch_was_enabled = crashcatch.is_enabled()
        if self.faulthandler_was_enabled and not self.crashcatch_was_enabled:
            # Enabled before pytest (PYTHONFAULTHANDLER, -X faulthandler): off for the
            # session, as pytest's plugin would redirect it; one report per crash.
            faulthandler.disable()
        self.dump_dir = crashcatch.default_dump_dir()
        crashcatch.enable(file=self.fd, dump_dir=self.dump_dir)
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None:
            crashcatch.annotate(_WORKER_ANNOTATION, workerinput.get("workerid", "?"))
            state_dir = workerinput.get("crashcatch_state_dir")
            if state_dir:
                # What the controller needs to find this worker's dump if it dies. A worker
                # on another host cannot reach the directory: its crash gets xdist's message.
                try:
                    with open(os.path.join(state_dir, workerinput["workerid"] + ".json"), "w") as f:
                        json.dump({"pid": os.getpid(), "dump_dir": self.dump_dir}, f)
                except OSError:
                    pass

    def close(self):
        import crashcatch
        import faulthandler

        crashcatch.cancel_dump_traceback_later()
        crashcatch.annotate(TEST_ANNOTATION, None)
        _note_test(None)
        if self.crashcatch_was_enabled:
            crashcatch.enable(file=self.crashcatch_file_before)
        else:
            crashcatch.disable()
            if self.faulthandler_was_enabled:
                faulthandler.enable(file=_stderr_fileno())
        os.close(self.fd)


def pytest_configure(config):
    if not _active(config):
        return
    config.stash[_STATE] = _Session(config)
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_XdistController(), "crashcatch-xdist-controller")


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config):
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.close()
        del config.stash[_STATE]


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_protocol(item):
    state = item.config.stash.get(_STATE, None)
    if state is None:
        return (yield)
    import crashcatch

    crashcatch.annotate(TEST_ANNOTATION, item.nodeid)
    _note_test(item.nodeid)
    timeout = float(_ini_or(item.config, "faulthandler_timeout", 0) or 0)
    if timeout > 0:
        crashcatch.dump_traceback_later(timeout, file=state.fd,
                                        exit=bool(_ini_or(item.config, "faulthandler_exit_on_timeout", False)),
                                        c_stack=True)
    try:
        return (yield)
    finally:
        if timeout > 0:
            crashcatch.cancel_dump_traceback_later()
        crashcatch.annotate(TEST_ANNOTATION, None)
        _note_test(None)


def _note_test(nodeid):
    """The fatal report's last line before the dump's: `crashcatch: running test NODEID`."""
    from crashcatch import _native

    note = f"running test {nodeid}".encode() if nodeid is not None else b""
    # A very long id (parameters) is cut, whole characters only.
    _native.set_report_note(note[:_NOTE_MAX].decode(errors="ignore").encode())


def _cancel_timeout(config):
    if config.stash.get(_STATE, None) is not None:
        import crashcatch

        crashcatch.cancel_dump_traceback_later()


@pytest.hookimpl(tryfirst=True)
def pytest_enter_pdb(config):
    # A debugging session is not a hang.
    _cancel_timeout(config)


@pytest.hookimpl(tryfirst=True)
def pytest_exception_interact(node):
    _cancel_timeout(node.config)


class _XdistController:
    """In the xdist controller: each worker tells where its dumps go and its pid (a file
    in a directory of this session); a worker's death becomes a failure with its dump."""

    def __init__(self):
        self.state_dir = tempfile.mkdtemp(prefix="crashcatch-xdist-")

    def pytest_configure_node(self, node):
        node.workerinput["crashcatch_state_dir"] = self.state_dir

    def pytest_handlecrashitem(self, crashitem, report, sched):
        worker = getattr(getattr(report, "node", None), "gateway", None)
        details = self.crash_details(getattr(worker, "id", None))
        report.longrepr = f"{report.longrepr}\n{details}"

    def pytest_unconfigure(self, config):
        import shutil

        shutil.rmtree(self.state_dir, ignore_errors=True)

    def crash_details(self, worker_id):
        """The dump of the crashed worker and its crashing thread, or why there is none."""
        try:
            with open(os.path.join(self.state_dir, f"{worker_id}.json")) as f:
                info = json.load(f)
        except (OSError, ValueError, TypeError):
            return f"crashcatch: worker {worker_id} did not say where its dumps go (not enabled in it?)"
        dump = _dump_of(info["dump_dir"], info["pid"])
        if dump is None:
            return (f"crashcatch: no minidump of worker {worker_id} (pid {info['pid']}) in {info['dump_dir']}; "
                    "its report on stderr says why (CRASHCATCH_MINIDUMP=0?)")
        return f"crashcatch: minidump written to {dump}\n{_crashing_thread(dump)}"


def _dump_of(dump_dir, pid):
    """The newest dump of process `pid` in `dump_dir` (they are named PROGRAM-PID-TIME.dmp)."""
    try:
        names = [n for n in os.listdir(dump_dir) if n.endswith(".dmp") and f"-{pid}-" in n]
    except OSError:
        return None
    paths = [os.path.join(dump_dir, n) for n in names]
    return max(paths, key=os.path.getmtime) if paths else None


def _crashing_thread(dump):
    """What `crashcatch symbolize` says of the crash: the summary (signal, command, the
    annotations naming the test) and the crashing thread's merged Python and C stack."""
    from crashcatch.__main__ import _SYMBOLIZER

    try:
        r = subprocess.run([_SYMBOLIZER, "symbolize", dump], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=_SYMBOLIZE_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as e:
        return f"crashcatch: cannot symbolize it ({e}); try `crashcatch symbolize {dump}`"
    text = r.stdout.decode("utf-8", "replace")
    blocks = text.strip("\n").split("\n\n")
    kept = blocks[:1] + [b for b in blocks[1:] if b.startswith("Thread ") and "(crashed" in b.splitlines()[0]]
    if r.returncode != 0 or len(kept) < 2:
        return text + r.stderr.decode("utf-8", "replace")
    return "\n\n".join(kept)
