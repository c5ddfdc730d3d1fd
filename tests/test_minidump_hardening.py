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
# The helper inherits this: one that read the file whole would die of it.
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
code = compile("import buggyext\\ndef crash():\\n    buggyext.segfault()\\ncrash()\\n", path, "exec")
print(path, time.time(), flush=True)
exec(code)
"""


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "sparse_2g"])
def test_unreadable_source_files_do_not_stall_or_bloat_the_helper(interp, kind):
    r = run_script(interp, CRASH_IN_FILE, env={"SOURCE_KIND": kind}, timeout=60)
    ended = time.time()
    assert r.returncode == -signal.SIGSEGV, r.stderr
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

