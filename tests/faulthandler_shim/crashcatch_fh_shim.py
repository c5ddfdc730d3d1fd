"""Test-only: with CRASHCATCH_AS_FAULTHANDLER=1 in the environment, replace faulthandler's
public functions by crashcatch's at interpreter start, so CPython's own test_faulthandler
exercises crashcatch. Its private crash helpers (faulthandler._sigsegv() …) stay as they are.
Installed into the test venvs only (as a .pth hook), never shipped."""
import os

if os.environ.get("CRASHCATCH_AS_FAULTHANDLER") == "1":
    # With crashcatch's defaults: fatal errors also write a minidump (into the dump
    # directory the test runner chose), registered signals and timeouts print exactly
    # faulthandler's output.
    import crashcatch
    import faulthandler

    for _name in ("enable", "disable", "is_enabled", "dump_traceback", "dump_c_stack",
                  "dump_traceback_later", "cancel_dump_traceback_later", "register", "unregister"):
        if hasattr(faulthandler, _name):
            setattr(faulthandler, _name, getattr(crashcatch, _name))
