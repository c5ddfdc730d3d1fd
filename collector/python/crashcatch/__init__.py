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
]

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


def enable(file=None, all_threads=True, c_stack=True, *, max_threads=_MAX_THREADS):
    """Report fatal signals (SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL) to ``file``
    (default: sys.stderr).

    ``all_threads``: the Python traceback of every thread, not only the crashing one.
    ``c_stack``: append the crashing thread's C stack.
    """
    _files["fatal"] = _native.enable(file, bool(all_threads), bool(c_stack), max_threads)
    _hook_thread_start()


def disable():
    """Restore the signal handlers that were there before enable(). True if enabled."""
    was = _native.disable()
    _files.pop("fatal", None)
    return was


def is_enabled():
    """Whether enable() is in effect."""
    return _native.is_enabled()


def dump_traceback_later(timeout, repeat=False, file=None, exit=False, *, max_threads=_MAX_THREADS):
    """Dump every thread's traceback after ``timeout`` seconds (again every ``timeout``
    seconds if ``repeat``), then exit the process with status 1 if ``exit``."""
    timeout_us = int(float(timeout) * 1e6)
    if timeout_us <= 0:
        raise ValueError("timeout must be greater than 0")
    if timeout_us > _TIMEOUT_MAX_US:
        raise OverflowError("timeout value is too large")
    _files["later"] = _native.dump_traceback_later(timeout_us, bool(repeat), file, bool(exit), max_threads)


def cancel_dump_traceback_later():
    """Cancel the previous dump_traceback_later()."""
    _native.cancel_dump_traceback_later()
    _files.pop("later", None)


def register(signum, file=None, all_threads=True, chain=False, *, max_threads=_MAX_THREADS):
    """Dump the traceback(s) to ``file`` whenever signal ``signum`` arrives; the process
    goes on. ``chain``: also call the handler that was there before."""
    _files[("user", signum)] = _native.register(signum, file, bool(all_threads), bool(chain), max_threads)


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


import atexit as _atexit  # noqa: E402

_atexit.register(_cancel_at_exit)
