"""The dump helper under hostile or heavy conditions: source files it must not read whole,
secrets in the environment, size caps. One crash (or live process) per child, on every
interpreter; dumps are read with the independent `minidump` crate (tests/dumpcheck)."""
import os
import signal
import time

import pytest

from crashlib import run_script
from test_minidump import check

# A crash two frames deep in code compiled under the file name `path`.
CRASH_IN_FILE = """
import os, resource, time, crashcatch, buggyext
crashcatch.enable()
d = os.path.dirname(os.path.abspath(__file__))
kind = os.environ["SOURCE_KIND"]
if kind == "fifo":
    path = os.path.join(d, "source.fifo")
    os.mkfifo(path)
elif kind == "dev_zero":
    path = "/dev/zero"
else:
    path = os.path.join(d, "huge.py")
    with open(path, "wb") as f:
        f.truncate(2 << 30)
# The helper inherits this: a helper that reads /dev/zero until its allocations fail stops
# at a few GiB rather than at the machine's memory.
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
code = compile("import buggyext\\ndef crash():\\n    buggyext.segfault()\\ncrash()\\n", path, "exec")
print(path, time.time(), flush=True)
exec(code)
"""


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "sparse_2g"])
def test_unreadable_source_files_do_not_stall_or_bloat_the_helper(interp, kind):
    r = run_script(interp, CRASH_IN_FILE, env={"SOURCE_KIND": kind}, timeout=60, measure_rss=True)
    ended = time.time()
    assert r.returncode == -signal.SIGSEGV, r.stderr
    # The helper (and the script) stayed small: no file was read whole.
    assert r.max_rss_kib < 256 * 1024, r.max_rss_kib
    path, started = r.stdout.split()
    # Well under the 10 s deadline the helper would otherwise run into.
    assert ended - float(started) < 4, (ended - float(started), r.stderr)
    assert len(r.dumps) == 1, r.stderr
    assert r.stderr.rstrip("\n").splitlines()[-1].startswith("crashcatch: minidump written to "), r.stderr
    meta = check(r.dumps[0])["metadata"]
    assert meta["report"].startswith("Fatal Python error:")
    src = meta["source"][0]
    assert src["file"] == path and src["function"] == "crash" and src["line"] == 3, src
    if kind == "sparse_2g":
        # A regular file is read, but only up to the per-file cap: one long line of NULs.
        assert len(src["lines"]) == 1 and len(src["lines"][0]) == 400, src
    else:
        assert src["lines"] == [], src


ENV_CRASH = """
import os, crashcatch, buggyext
crashcatch.enable(dump_environ={mode})
buggyext.segfault()
"""
SECRET_ENV = {"MY_API_KEY": "s3cret", "FOO": "visible", "CC_PW_HOLDER": "https://user:hunter2@example.org/"}


@pytest.mark.parametrize("mode", ["default", "True", "False"])
def test_environment_in_the_dump(interp, mode):
    code = ENV_CRASH.format(mode='"redact"' if mode == "default" else mode)
    if mode == "default":
        code = code.replace('dump_environ="redact"', "")
    r = run_script(interp, code, env=SECRET_ENV)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    info = check(r.dumps[0])
    raw = open(r.dumps[0], "rb").read()
    environ, meta = info["environ"], info["metadata"]["environ"]
    if mode == "True":
        assert "MY_API_KEY=s3cret" in environ and "FOO=visible" in environ, environ
        assert meta["mode"] == "keep" and meta["redacted"] == []
    elif mode == "False":
        assert environ is None, environ
        assert meta["mode"] == "drop" and not meta["stream"]
        # Not in the stream, and not in the main thread's stack copy either.
        assert b"FOO=visible" not in raw and b"s3cret" not in raw
    else:
        assert "FOO=visible" in environ and "MY_API_KEY=<redacted>" in environ, environ
        assert "CC_PW_HOLDER=<redacted>" in environ, environ
        assert meta["mode"] == "redact"
        assert {"MY_API_KEY", "CC_PW_HOLDER"} <= set(meta["redacted"]) and "FOO" not in meta["redacted"]
        # Anywhere in the file: the stream, the stack copy of the environment block.
        assert b"s3cret" not in raw and b"hunter2" not in raw
        assert b"FOO=visible" in raw


def test_extra_redaction_patterns(interp):
    code = """
    import crashcatch, buggyext
    crashcatch.enable(redact_environ=["foo"])
    buggyext.segfault()
    """
    r = run_script(interp, code, env=SECRET_ENV)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    info = check(r.dumps[0])
    assert "FOO=<redacted>" in info["environ"] and "MY_API_KEY=<redacted>" in info["environ"]
    assert info["metadata"]["environ"]["extra_patterns"] == ["FOO"]
    assert b"FOO=visible" not in open(r.dumps[0], "rb").read()


def test_options_are_checked(interp):
    code = """
    import crashcatch
    for kw in ({"dump_environ": "yes"}, {"dump_environ": 1}, {"max_dump_size": -1},
               {"max_dump_dir_size": 1.5}, {"redact_environ": "KEY"}, {"redact_environ": ["x" * 2000]}):
        try:
            crashcatch.enable(**kw)
            print("accepted", kw)
        except (ValueError, RuntimeError) as e:
            print("refused", type(e).__name__, e)
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 6 and all(line.startswith("refused") for line in lines), r.stdout


def test_a_tiny_max_dump_size_refuses_the_dump_with_a_clear_message(interp):
    code = """
    import crashcatch, buggyext
    crashcatch.enable(max_dump_size=4096)
    buggyext.segfault()
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    assert "Current thread's C stack trace" in r.stderr
    last = r.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("crashcatch: no minidump: the dump would take ") and \
        "more than max_dump_size (4096 bytes)" in last and "enable(max_dump_size=" in last, last
    assert r.dumps == []


def test_max_dump_size_drops_the_extra_memory_first(interp):
    """A cap just under a full dump's size: the Python memory goes, the dump stays."""
    code = """
    import os, json, crashcatch
    full = crashcatch.write_minidump()
    size = os.path.getsize(full)
    crashcatch.enable(max_dump_size=size - 2048)
    print(size - 2048, crashcatch.write_minidump())
    """
    r = run_script(interp, code)
    assert r.returncode == 0, r.stderr
    cap, path = r.stdout.split()
    host = interp.host_path(path)
    assert os.path.getsize(host) <= int(cap)
    info = check(host)
    limit = info["metadata"]["size_limit"]
    assert limit["max_dump_size"] == int(cap) and limit["extra_memory_dropped"], limit
    assert limit["full_size"] > int(cap), limit
    assert info["metadata"]["kind"] == "requested"


def test_live_dumps_stop_at_the_directory_cap_but_crashes_do_not(interp):
    code = """
    import os, crashcatch, buggyext
    first = crashcatch.write_minidump()
    size = os.path.getsize(first)
    crashcatch.enable(max_dump_dir_size=int(size * 2.5))
    crashcatch.write_minidump()  # 2 dumps: under the cap
    try:
        crashcatch.write_minidump()  # a third would pass it
        print("third written")
    except RuntimeError as e:
        print("refused:", e)
    buggyext.segfault()
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    out = r.stdout.strip()
    assert out.startswith("refused: no minidump: the dump directory ") and "max_dump_dir_size" in out, out
    assert "crash dumps are still written" in out, out
    assert r.stderr.rstrip("\n").splitlines()[-1].startswith("crashcatch: minidump written to "), r.stderr
    assert len(r.dumps) == 3
    kinds = sorted(check(d)["metadata"]["kind"] for d in r.dumps)
    assert kinds == ["fatal-signal", "requested", "requested"]



def test_a_helper_that_ends_early_never_kills_the_crash_with_sigpipe(interp):
    """The helper starts before the report is written and may end before its go-ahead (here
    the dump directory cannot be made). A program that restored SIGPIPE's default action
    still dies of its own signal, with the helper's reason as the report's last line: the
    go-ahead is sent without raising SIGPIPE."""
    code = """
    import signal, crashcatch, buggyext
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    crashcatch.enable(dump_dir="/dev/null/dumps")
    buggyext.segfault()
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr)
    last = r.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("crashcatch: no minidump: cannot create the dump directory /dev/null/dumps"), r.stderr
