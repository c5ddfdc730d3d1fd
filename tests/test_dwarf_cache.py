"""The inflated-DWARF cache (symbolizer/src/dwarf_cache.rs): whatever state it is in (off,
empty, filled, corrupt, unwritable), `crashcatch symbolize` prints the same report; and
`--python-only` opens no debug file at all."""
import glob
import os
import signal

import pytest

from crashlib import THREADED_CRASH, run_script
from test_launcher import console_script, inner

# Into libc: os.abort() (libc's debug file, when installed, is the compressed one).
CODE = THREADED_CRASH.format(call="__import__('os').abort()")


def symbolize(interp, dump, cache, *extra):
    env = dict(os.environ, NO_COLOR="1", DEBUGINFOD_URLS="", CRASHCATCH_DWARF_CACHE=cache)
    r = interp.run([console_script(interp), "symbolize", *extra, dump], env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_report_is_the_same_whatever_the_cache_holds(interp):
    r = run_script(interp, CODE)
    assert r.returncode == -signal.SIGABRT and len(r.dumps) == 1, r.stderr
    dump = inner(interp, r.dumps[0])
    cache = os.path.dirname(dump) + "/dwarf-cache"
    host_cache = interp.host_path(cache)
    plain = symbolize(interp, dump, "")
    assert "abort" in plain and "outer" in plain, plain
    assert not os.path.exists(host_cache)
    assert symbolize(interp, dump, cache) == plain  # fills it (if a debug file is compressed)
    assert symbolize(interp, dump, cache) == plain  # reads it
    assert symbolize(interp, dump, cache, "--json") == symbolize(interp, dump, "", "--json")
    entries = glob.glob(host_cache + "/*/*")
    for entry in entries:
        with open(entry, "r+b") as f:
            f.seek(os.path.getsize(entry) // 2)
            f.write(b"\xff\x00garbage\x00\xff")
    assert symbolize(interp, dump, cache) == plain
    unwritable = os.path.dirname(dump) + "/not-a-directory"
    with open(interp.host_path(unwritable), "w") as f:
        f.write("a file where the cache should be\n")
    assert symbolize(interp, dump, unwritable) == plain


def debug_files_opened(interp, dump, *extra):
    """The files under /usr/lib/debug that `crashcatch-symbolize symbolize` opens (strace)."""
    r = interp.run([interp.venv_python, "-c", "import crashcatch, os; print(os.path.dirname(crashcatch.__file__))"])
    assert r.returncode == 0, r.stderr
    symbolizer = r.stdout.strip() + "/_bin/crashcatch-symbolize"
    env = dict(os.environ, NO_COLOR="1", DEBUGINFOD_URLS="", CRASHCATCH_DWARF_CACHE="")
    r = interp.run(["strace", "-f", "-qq", "-e", "trace=open,openat", symbolizer, "symbolize", *extra, dump], env=env)
    assert r.returncode == 0, r.stderr
    return [line for line in r.stderr.splitlines() if '"/usr/lib/debug/' in line and "ENOENT" not in line]


def test_python_only_opens_no_debug_file(interp):
    if interp.run(["strace", "-V"]).returncode != 0:
        pytest.skip(f"strace is not installed for {interp.name}")
    r = run_script(interp, CODE)
    assert r.returncode == -signal.SIGABRT and len(r.dumps) == 1, r.stderr
    dump = inner(interp, r.dumps[0])
    if not debug_files_opened(interp, dump):
        pytest.skip(f"no debug file under /usr/lib/debug for {interp.name}'s modules")
    assert debug_files_opened(interp, dump, "--python-only") == []
    only = symbolize(interp, dump, "", "--python-only")
    assert "outer" in only and "libc.so.6+" not in only, only
