"""The inflated-DWARF cache (symbolizer/src/dwarf_cache.rs): whatever state it is in (off,
empty, filled, corrupt, unwritable), `crashcatch symbolize` prints the same report."""
import glob
import os
import signal

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
