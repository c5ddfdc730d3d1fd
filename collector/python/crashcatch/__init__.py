"""crashcatch: crash reports for Python processes that die in C, C++ or Rust extensions.

The API is faulthandler's, name for name::

    import crashcatch
    crashcatch.enable()          # report fatal signals (SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL)

A report starts exactly like faulthandler's for the running Python version (the Python
traceback of every thread) and goes on with the crashing thread's full C stack.
"""

from __future__ import annotations

import sys as _sys
import threading as _threading
import _thread

from . import _native

__all__ = [
    "enable", "disable", "is_enabled", "dump_traceback", "dump_c_stack",
    "dump_traceback_later", "cancel_dump_traceback_later", "register", "unregister",
    "write_minidump", "annotate", "default_dump_dir",
]

import os as _os
import re as _re

# faulthandler keeps a reference to the file objects it will write to, so that their file
# descriptors stay open; so do we, per use. The native functions resolve `file` exactly as
# faulthandler does and return the object to keep.
_files: dict = {}

_MAX_THREADS = 100
# PY_TIMEOUT_MAX in microseconds is at least this on every supported Linux build.
_TIMEOUT_MAX_US = 2**63 // 1000 - 1

# Native, so that no crashcatch frame shows up in the dump it writes.
dump_traceback = _native.dump_traceback
dump_c_stack = _native.dump_c_stack


# The helper that writes minidumps, shipped inside this package.
_HELPER = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_bin", "crashcatch-dump")
_DEFAULT_DUMP_TIMEOUT = 10.0
# Live dumps (registered signals, timeouts) at most once per this many seconds.
_DEFAULT_LIVE_DUMP_INTERVAL = 60.0
_SOURCE_CONTEXT_LINES = 3
# A dump is never larger than this (0: no limit); live dumps stop once the dump directory's
# *.dmp files take this many times as much.
_DEFAULT_MAX_DUMP_SIZE = 64 * 1024 * 1024
_DIR_SIZE_FACTOR = 20
# handoff::EnvironMode
_ENVIRON_MODES = {"redact": 0, True: 1, False: 2}
_dumps_configured = False
_dump_dir_in_use = None
_minidumps_on = False
# enable() leaves this many of crashcatch's dumps in the dump directory (0: no limit).
_DEFAULT_MAX_DUMPS = 50
# The names the dump helper gives the dumps it writes into the dump directory.
_DUMP_NAME = _re.compile(r"-[0-9]+-([0-9]{8}T[0-9]{6}\.[0-9]{3}Z)\.dmp\Z")


def default_dump_dir():
    """$CRASHCATCH_DUMP_DIR, else $XDG_CACHE_HOME/crashcatch/dumps (~/.cache/crashcatch/dumps)."""
    explicit = _os.environ.get("CRASHCATCH_DUMP_DIR")
    if explicit:
        return explicit
    cache = _os.environ.get("XDG_CACHE_HOME") or _os.path.join(_os.path.expanduser("~"), ".cache")
    return _os.path.join(cache, "crashcatch", "dumps")


def _minidumps_default():
    """Minidumps are on unless CRASHCATCH_MINIDUMP=0 says otherwise."""
    return _os.environ.get("CRASHCATCH_MINIDUMP", "1") != "0"


def _environ_mode(dump_environ):
    # `is` rather than ==: 1 and 0 must not pass for True and False.
    for value, mode in _ENVIRON_MODES.items():
        if dump_environ is value or (isinstance(value, str) and dump_environ == value):
            return mode
    raise ValueError(f"dump_environ must be 'redact', True or False, not {dump_environ!r}")


def _size(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a number of bytes >= 0 (0: no limit), not {value!r}")
    return value


def _count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a number >= 0 (0: no limit), not {value!r}")
    return value


def _remove_old_dumps(directory, keep):
    """Removes all but the `keep` newest of crashcatch's dumps in `directory` (by the time in
    their names; 0: none removed). Other files, and links, are left alone; a file another
    process removed first is no error."""
    if not keep:
        return
    try:
        entries = list(_os.scandir(directory))
    except OSError:
        return
    dumps = []
    for entry in entries:
        found = _DUMP_NAME.search(entry.name)
        if found and found.start() > 0 and entry.is_file(follow_symlinks=False):
            dumps.append((found.group(1), entry.name, entry.path))
    dumps.sort(reverse=True)
    for _, _, path in dumps[keep:]:
        try:
            _os.remove(path)
        except OSError:
            pass


def _configure_dumps(minidump=None, dump_dir=None, dump_timeout=_DEFAULT_DUMP_TIMEOUT, dump_environ="redact",
                     redact_environ=(), max_dump_size=_DEFAULT_MAX_DUMP_SIZE, max_dump_dir_size=None,
                     live_dump_interval=_DEFAULT_LIVE_DUMP_INTERVAL, dump_locals=False):
    global _dumps_configured, _dump_dir_in_use, _minidumps_on
    environ_mode = _environ_mode(dump_environ)
    if isinstance(redact_environ, (str, bytes)):
        raise ValueError("redact_environ must be a list of name patterns, not one string")
    patterns = [str(p) for p in redact_environ]
    max_dump_size = _size("max_dump_size", max_dump_size)
    if max_dump_dir_size is None:
        max_dump_dir_size = max_dump_size * _DIR_SIZE_FACTOR
    max_dump_dir_size = _size("max_dump_dir_size", max_dump_dir_size)
    if minidump is None:
        minidump = _minidumps_default()
    directory = _os.fspath(dump_dir) if dump_dir is not None else default_dump_dir()
    if minidump:
        try:
            _os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError:
            pass  # the helper retries, and its report line says why if it cannot
    prog = _os.path.basename(_sys.argv[0]) if _sys.argv and _sys.argv[0] not in ("", "-c", "-m") else ""
    if prog == "__main__.py":
        # `python -m pytest`: name the dumps after the package run (pytest), not its __main__.py.
        prog = _os.path.basename(_os.path.dirname(_sys.argv[0]))
    prog = prog or _os.path.basename(_sys.executable) or "python"
    _native.set_live_dump_interval(float(live_dump_interval))
    _native.configure_minidumps(bool(minidump), directory, _HELPER, float(dump_timeout), prog,
                                _SOURCE_CONTEXT_LINES, environ_mode, patterns, max_dump_size, max_dump_dir_size,
                                bool(dump_locals))
    _dumps_configured = True
    _dump_dir_in_use, _minidumps_on = directory, bool(minidump)


def enable(file=None, all_threads=True, c_stack=True, *, max_threads=_MAX_THREADS,
           minidump=None, dump_dir=None, dump_timeout=_DEFAULT_DUMP_TIMEOUT, dump_environ="redact",
           redact_environ=(), max_dump_size=_DEFAULT_MAX_DUMP_SIZE, max_dump_dir_size=None,
           live_dump_interval=_DEFAULT_LIVE_DUMP_INTERVAL, dump_locals=False, max_dumps=_DEFAULT_MAX_DUMPS):
    """Report fatal signals (SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL) to ``file``
    (default: sys.stderr).

    ``all_threads``: the Python traceback of every thread, not only the crashing one.
    ``c_stack``: append the crashing thread's C stack.
    ``minidump``: also write a minidump into ``dump_dir`` (default: default_dump_dir()),
    waiting at most ``dump_timeout`` seconds for it; the report's last line names it.
    Default: on, unless the environment has CRASHCATCH_MINIDUMP=0.
    ``dump_environ``: ``"redact"`` (default) keeps the environment but replaces the values
    of variables whose names look like secrets (docs/minidump.md gives the rule), ``True``
    keeps all of it, ``False`` none. ``redact_environ``: more name patterns to redact
    (case-insensitive substrings).
    ``dump_locals``: also keep the local variables of every Python frame of every thread
    (what py-locals shows on the dump converted with ``crashcatch core``). Off by default:
    local variables can hold passwords and tokens, and a dump is a file that travels.
    ``max_dump_size``: no dump is larger (bytes, default 64 MiB, 0: no limit).
    ``max_dump_dir_size``: live dumps (not crashes) are refused while the dump directory's
    dumps take more (default: 20 * max_dump_size, 0: no limit).
    ``live_dump_interval``: live dumps (register(), dump_traceback_later()) are written at
    most once per this many seconds (0: no limit); write_minidump() is not limited.
    ``max_dumps``: enable() removes the oldest of crashcatch's dumps in ``dump_dir`` so that
    the ``max_dumps`` newest are left (default 50, 0: no limit). Only files named as
    crashcatch names them (PROGRAM-PID-YYYYmmddTHHMMSS.mmmZ.dmp) are counted or removed;
    nothing is removed when the process crashes.
    """
    max_dumps = _count("max_dumps", max_dumps)
    _configure_dumps(minidump, dump_dir, dump_timeout, dump_environ, redact_environ, max_dump_size,
                     max_dump_dir_size, live_dump_interval, dump_locals)
    if _minidumps_on:
        _remove_old_dumps(_dump_dir_in_use, max_dumps)
    _files["fatal"] = _native.enable(file, bool(all_threads), bool(c_stack), max_threads)
    _hook_thread_start()


# write_minidump(path=None) -> str: write a minidump of this process now and return its
# path; the process goes on. ``path``: the file to create (never overwritten); default: a
# new file in the dump directory. Native, so that no crashcatch frame is in the dump.
write_minidump = _native.write_minidump


_annotations = {}
_MAX_ANNOTATION = 1024


def annotate(key, value):
    """Attach ``key: value`` (strings, at most 1 KiB each) to every later minidump;
    ``value=None`` removes the key."""
    key = str(key)
    if value is None:
        _annotations.pop(key, None)
    else:
        value = str(value)
        if len(key.encode()) > _MAX_ANNOTATION or len(value.encode()) > _MAX_ANNOTATION:
            raise ValueError("annotation keys and values are limited to 1 KiB")
        if "\0" in key or "\0" in value:
            raise ValueError("annotations cannot contain NUL characters")
        _annotations[key] = value
    packed = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in _annotations.items())
    try:
        _native.set_annotations(packed)
    except ValueError:
        _annotations.pop(key, None)
        raise


def disable():
    """Restore the signal handlers that were there before enable(). True if enabled."""
    was = _native.disable()
    _files.pop("fatal", None)
    return was


def is_enabled():
    """Whether enable() is in effect."""
    return _native.is_enabled()


def dump_traceback_later(timeout, repeat=False, file=None, exit=False, *, max_threads=_MAX_THREADS,
                         minidump=False, c_stack=False):
    """Dump every thread's traceback after ``timeout`` seconds (again every ``timeout``
    seconds if ``repeat``), then exit the process with status 1 if ``exit``: exactly
    faulthandler's output. ``minidump=True``: also write a minidump each time (at most one
    per enable(live_dump_interval=) seconds); ``None``: as CRASHCATCH_MINIDUMP says.
    ``c_stack=True``: also write every other thread's C stack, to see where native code
    hangs (each thread is asked with a free real-time signal, which interrupts a sleep()
    in C early, as any signal does)."""
    timeout_us = int(float(timeout) * 1e6)
    if timeout_us <= 0:
        raise ValueError("timeout must be greater than 0")
    if timeout_us > _TIMEOUT_MAX_US:
        raise OverflowError("timeout value is too large")
    if minidump is None:
        minidump = _minidumps_default()
    if minidump and not _dumps_configured:
        _configure_dumps()
    _files["later"] = _native.dump_traceback_later(timeout_us, bool(repeat), file, bool(exit), max_threads,
                                                   bool(minidump), bool(c_stack))


def cancel_dump_traceback_later():
    """Cancel the previous dump_traceback_later()."""
    _native.cancel_dump_traceback_later()
    _files.pop("later", None)


def register(signum, file=None, all_threads=True, chain=False, *, max_threads=_MAX_THREADS,
             minidump=False):
    """Dump the traceback(s) to ``file`` whenever signal ``signum`` arrives; the process
    goes on: exactly faulthandler's output. ``chain``: also call the handler that was there
    before. ``minidump=True``: also write a minidump each time (at most one per
    enable(live_dump_interval=) seconds; settings from enable(), or the defaults)."""
    if minidump is None:
        minidump = _minidumps_default()
    if minidump and not _dumps_configured:
        _configure_dumps()
    _files[("user", signum)] = _native.register(signum, file, bool(all_threads), bool(chain), max_threads,
                                                bool(minidump))


def unregister(signum):
    """Undo register(signum). True if the signal was registered."""
    was = _native.unregister(signum)
    _files.pop(("user", signum), None)
    return was


_hooked = False


def _hook_thread_start():
    """Give every Python thread started from now on an alternate signal stack, so that a
    C stack overflow in it is still reported (faulthandler only covers one thread). The
    thread-start functions are wrapped natively, so no crashcatch frame appears in any
    thread's traceback."""
    global _hooked
    if _hooked:
        return
    _hooked = True
    for module in (_threading, _thread):
        for name in ("_start_new_thread", "_start_joinable_thread",
                     "start_new_thread", "start_new", "start_joinable_thread"):
            original = getattr(module, name, None)
            if original is not None and not isinstance(original, _native.ThreadStarter):
                setattr(module, name, _native.ThreadStarter(original))


def _cancel_at_exit():
    # Like faulthandler, stop the watchdog before the interpreter is torn down.
    cancel_dump_traceback_later()
    # A registered signal's dump is written by a thread of its own: let it finish.
    _native.wait_for_live_dump()


import atexit as _atexit  # noqa: E402

_atexit.register(_cancel_at_exit)
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_native.restart_dump_thread_after_fork)
