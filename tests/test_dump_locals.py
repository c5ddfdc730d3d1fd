"""`enable(dump_locals=True)`: the minidump keeps the memory the Python frames' local
variables need, so py-locals works in gdb on the core `crashcatch core` makes of it. Off by
default (locals can hold secrets): then py-locals says the dump holds none and how to get
them. Truth: the script's own values (test_gdb_cores.LOCALS), the dump's metadata
(tests/dumpcheck, the `minidump` crate)."""
import os
import re
import signal

import pytest

from crashlib import run_script
from test_gdb_cores import CODE, LOCALS, check_locals, crashcatch_command, inner
from test_gdb_scripts import gdb_available, run_gdb
from test_minidump import check

# crash → callback → known: py-up twice selects `known`, whose locals are LOCALS.
COMMANDS = ["py-up", "py-up", "py-locals"]
# Generous: the locals of a few small frames, not a copy of the heap.
MAX_ADDED = 4 << 20


def converted_core(interp, dump_locals):
    """(converted core inside the world, host path of the dump, its metadata)."""
    code, n = re.subn(r"crashcatch\.enable\([^)]*\)", f"crashcatch.enable(dump_locals={dump_locals})", CODE)
    assert n == 1, CODE
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    dump = inner(interp, r.dumps[0])
    core = os.path.dirname(r.script) + "/converted.core"
    c = interp.run([crashcatch_command(interp), "core", dump, "-o", core], timeout=120)
    assert c.returncode == 0, c.stderr
    return core, r.dumps[0], check(r.dumps[0])["metadata"]


def test_py_locals_on_a_converted_dump_with_dump_locals(interp):
    if not gdb_available(interp):
        pytest.skip(f"gdb is not installed for {interp.name}")
    core, dump, meta = converted_core(interp, True)
    kept = meta["locals"]
    assert kept["kept"] and kept["frames"] >= 4 and kept["locals"] >= len(LOCALS), kept
    assert kept["stopped"] is None and kept["frames_cut"] == 0, kept
    assert 0 < kept["bytes_added"] < MAX_ADDED, kept
    out, whole = run_gdb(interp, CODE, COMMANDS, core=core)
    check_locals(out["py-locals"])

    # The default: no locals in the dump, a one-line message naming the option.
    core_off, dump_off, meta_off = converted_core(interp, False)
    assert meta_off["locals"] == {"kept": False}, meta_off["locals"]
    out, whole = run_gdb(interp, CODE, COMMANDS, core=core_off)
    lines = out["py-locals"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("crashcatch: "), whole
    assert "not in memory" in lines[0] and "enable(dump_locals=True)" in lines[0], whole
    on, off = os.path.getsize(dump), os.path.getsize(dump_off)
    print(f"\n{interp.name}: dump {off} bytes without locals, {on} with "
          f"(+{on - off}; metadata: {kept['bytes_added']} bytes added, {kept['bytes_read']} read, "
          f"{kept['frames']} frames, {kept['locals']} locals)")
    # Two runs differ a little anyway (stack depths, heap layout): only a sanity bound.
    assert on - off < MAX_ADDED, (on, off)


def test_dump_locals_is_off_by_default(interp):
    code = "import inspect, crashcatch; print(inspect.signature(crashcatch.enable).parameters['dump_locals'])"
    r = interp.run([interp.venv_python, "-c", code], timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "dump_locals=False", (r.stdout, r.stderr)


# A secret built at run time (not a constant of the code object), and a local far larger
# than the per-frame cap: 32 × 32 distinct strings of 1025 four-byte characters (4 MiB).
SECRET_CODE = """
import crashcatch, buggyext
crashcatch.enable({options})
def work():
    token = "-".join(["tok3n", str(6007 * 7919), "s3cr3t"])
    huge = [[str(i) + "\\U0001F600" * 1024 for i in range(32)] for _ in range(32)]
    buggyext.segfault(0)
work()
"""
SECRET = b"tok3n-" + str(6007 * 7919).encode() + b"-s3cr3t"


@pytest.mark.parametrize("dump_locals", [False, True])
def test_secrets_in_locals_stay_out_unless_asked_and_the_frame_cap_holds(interp, dump_locals):
    options = "dump_locals=True" if dump_locals else ""
    r = run_script(interp, SECRET_CODE.format(options=options))
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    with open(r.dumps[0], "rb") as f:
        image = f.read()
    meta = check(r.dumps[0])["metadata"]["locals"]
    assert (SECRET in image) == dump_locals, meta
    if not dump_locals:
        assert meta == {"kept": False}
        return
    # `work` hit the 1 MiB per-frame cap; the other frames still had their turn.
    assert meta["frames_cut"] >= 1 and meta["stopped"] is None and meta["frames"] >= 2, meta
    assert meta["bytes_read"] <= meta["max_total_bytes"], meta
    assert meta["max_frame_bytes"] // 2 < meta["bytes_added"] <= meta["max_frame_bytes"] * meta["frames"], meta


def test_a_crash_rebuilt_under_max_dump_size_still_has_every_thread(interp):
    """A crash whose first image is over the cap is built again: the threads its first
    writer left stopped (it resumes only the crashing one) are let go first, so the second
    writer stops and copies every one of them again."""
    code = """
    import threading, crashcatch, buggyext
    crashcatch.enable(dump_locals=True, max_dump_size=600 * 1024)
    ready = threading.Barrier(4)
    def idle():
        ready.wait()
        threading.Event().wait()
    for _ in range(3):
        threading.Thread(target=idle, daemon=True).start()
    ready.wait()
    def work():
        huge = [[str(i) + "\\U0001F600" * 1024 for i in range(32)] for _ in range(32)]
        buggyext.segfault(0)
    work()
    """
    r = run_script(interp, code)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    info = check(r.dumps[0])
    assert info["metadata"]["locals"]["dropped_for_size"] > 600 * 1024, info["metadata"]["locals"]
    tids = {t["tid"] for t in info["threads"]}
    assert len(tids) >= 4 and tids == {t["tid"] for t in info["metadata"]["threads"]}, info["threads"]
    assert all(t["stack_size"] > 0 for t in info["threads"]), info["threads"]


def test_locals_go_first_when_the_dump_is_over_max_dump_size(interp):
    """With about 1 MiB of locals (the capped frame above) and max_dump_size well under
    that, the dump is rebuilt without the locals but keeps the memory the tracebacks need."""
    r = run_script(interp, SECRET_CODE.format(options=f"dump_locals=True, max_dump_size={600 * 1024}"))
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    info = check(r.dumps[0])
    meta = info["metadata"]
    assert meta["locals"]["dropped_for_size"] > 600 * 1024, meta["locals"]
    assert meta["size_limit"]["extra_memory_dropped"] is False, meta["size_limit"]
    assert os.path.getsize(r.dumps[0]) <= 600 * 1024
    with open(r.dumps[0], "rb") as f:
        assert SECRET not in f.read()
    # The Python stacks still decode from the dump alone.
    names = [f["name"] for t in info["python"]["threads"] for f in t["frames"]]
    assert "work" in names, info["python"]
