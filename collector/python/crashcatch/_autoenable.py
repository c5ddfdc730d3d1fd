"""CRASHCATCH=1: crashcatch enabled at interpreter start-up, in every Python process of an
environment that has crashcatch installed (and so in its subprocesses and multiprocessing
children, which inherit the environment).

Imported by the one line of ``crashcatch-autoenable.pth`` (installed next to the package in
site-packages) only when CRASHCATCH is set to something other than "" or "0": when it is
unset, start-up costs the evaluation of that line and nothing else.

    CRASHCATCH_DUMP_DIR   where minidumps go (default_dump_dir())
    CRASHCATCH_MINIDUMP   0: no minidumps, only the report on stderr
    CRASHCATCH_TIMEOUT    SECONDS: if the process still runs after that long, write every
                          thread's Python and C stacks to stderr once (a hang report)
    CRASHCATCH_TIMEOUT_EXIT
                          1: and then exit with status 1

Nothing here may stop the process from starting: a problem is one line on stderr.
"""
import os
import sys


def _timeout():
    """CRASHCATCH_TIMEOUT as seconds, or None when unset or empty."""
    value = os.environ.get("CRASHCATCH_TIMEOUT", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"CRASHCATCH_TIMEOUT must be a number of seconds, not {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"CRASHCATCH_TIMEOUT must be greater than 0, not {value!r}")
    return seconds


def enable_from_environment():
    """What CRASHCATCH=1 does at start-up."""
    try:
        import crashcatch

        timeout = _timeout()
        crashcatch.enable()
        if timeout is not None:
            crashcatch.dump_traceback_later(timeout, exit=os.environ.get("CRASHCATCH_TIMEOUT_EXIT") == "1",
                                            c_stack=True)
    except Exception as e:  # noqa: BLE001 - never let our start-up stop the program
        sys.stderr.write(f"crashcatch: CRASHCATCH is set but crashcatch is not enabled in process "
                         f"{os.getpid()}: {e}\n")


enable_from_environment()
