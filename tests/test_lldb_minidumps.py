"""A crashcatch minidump opened in a plain lldb (`lldb -c app.dmp`, no crashcatch plugin): what
lldb itself reads from it (tests/lldb_probe.py, through lldb's SB API). Truth: the crashing
script's own pid and thread ids, the dump's modules and memory as the file holds them
(tests/dumpcheck, hostile_dumps.memory_regions), and crashcatch's own unwind of the same dump
(`crashcatch symbolize --json`).

Each dump is opened by the newest lldb of the interpreter's own world (Debian's lldb-19 on the
host, lldb-22 in the sid chroot) and, for a host interpreter, also by the sid chroot's lldb,
with copies of the module files the dump names found through `target.exec-search-paths`:
lldb 21+ looks memory up differently from lldb 19 (docs/minidump.md, "Opening a dump in lldb").
"""
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from crashlib import run_script
from hostile_dumps import memory_regions, thread_list
from interpreters import SID_ROOT
from test_core_convert import crashcatch_command, dumpcheck, inner

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "lldb_probe.py")

# Python → C → Python → C (the crash), with three Python threads waiting; the script writes
# its own pid and thread ids first.
CODE = """
import crashcatch, buggyext, json, os, threading
crashcatch.enable()
ready = threading.Event()
def idle():
    ready.wait()
workers = [threading.Thread(target=idle, name="worker-%d" % i) for i in range(3)]
for w in workers:
    w.start()
with open(os.environ["FILE_ids"], "w") as f:
    json.dump({"pid": os.getpid(), "main": threading.get_native_id(),
               "workers": [w.native_id for w in workers]}, f)

def crash():
    return buggyext.segfault(2)

buggyext.call_back(crash)
"""
BUGGYEXT_FRAMES = ["deref_null"] * 3 + ["inlined_helper", "buggy_entry", "segfault"]
# lldb 21 and later read a minidump's memory through a sorted range table (LLVM PR #136040).
SORTED_MEMORY_LOOKUP = 21


def newest_lldb(root):
    """(path inside `root`, major version) of the newest /usr/lib/llvm-NN/bin/lldb there whose
    Python module is installed, or None."""
    found = []
    for path in glob.glob(root + "/usr/lib/llvm-*/bin/lldb"):
        m = re.search(r"/llvm-(\d+)/bin/lldb$", path)
        if m and glob.glob(root + f"/usr/lib/llvm-{m[1]}/lib/python3*/*-packages/lldb/__init__.py"):
            found.append((int(m[1]), path[len(root):]))
    if not found:
        return None
    version, path = max(found)
    return path, version


class LldbWorld:
    """Where lldb runs: a root ("" for the host), its lldb, and a scratch directory there."""

    def __init__(self, root, lldb, version, scratch):
        self.root, self.lldb, self.version, self.scratch = root, lldb, version, scratch

    def host(self, path):
        return self.root + path

    def run(self, argv, timeout=300):
        argv = (["chroot", self.root] if self.root else []) + argv
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def probe(world, dump, ranges, search_dir=None):
    """Opens `dump` (a path in `world`) in its lldb and returns tests/lldb_probe.py's report,
    with `ranges` read through lldb."""
    shutil.copy(PROBE, world.host(world.scratch + "/lldb_probe.py"))
    request, out = world.scratch + "/request.json", world.scratch + "/probe.json"
    with open(world.host(request), "w") as f:
        json.dump({"ranges": ranges}, f)
    argv = [world.lldb, "-b", "--no-lldbinit"]
    if search_dir:
        argv += ["-O", f"settings set target.exec-search-paths {search_dir}"]
    argv += ["-c", dump, "-o", f"command script import {world.scratch}/lldb_probe.py",
             "-o", f"script lldb_probe.report({out!r}, {request!r})"]
    r = world.run(argv)
    assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr, (r.stdout, r.stderr)
    with open(world.host(out)) as f:
        return json.load(f)


def machine_frames(frames):
    """crashcatch's native frames as one (module file name, address) per machine frame: a
    function's frame and the calls inlined into it, listed before it, share one."""
    return [(f["module"], f["address"]) for f in frames if not f["inlined"]]


def lldb_machine_frames(frames):
    """lldb's frames as one (module file name, pc) per machine frame: the frames that share a
    CFA are one function and the calls inlined into it; the innermost has the frame's pc
    (lldb gives the others the address where the inlined code starts)."""
    stack, cfa = [], None
    for f in frames:
        if f["cfa"] != cfa:
            stack.append((f["module"], f["pc"]))
            cfa = f["cfa"]
    return stack


def test_each_byte_of_memory_is_in_one_range(interp):
    """The dump's memory ranges are disjoint, every thread's stack whole among them (a Python
    structure on a C stack is read from the stack's range): what lldb 21+ needs to read a
    stack, checked without lldb."""
    r = run_script(interp, CODE, files=("ids",))
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    with open(r.dumps[0], "rb") as f:
        data = f.read()
    regions = memory_regions(data)
    spans = sorted((start, start + size) for start, size, _ in regions)
    overlaps = [(hex(a[0]), hex(a[1]), hex(b[0]), hex(b[1])) for a, b in zip(spans, spans[1:]) if b[0] < a[1]]
    assert not overlaps, overlaps
    stacks = [(t[5], t[6], t[7]) for t in thread_list(data)]
    assert len(stacks) == 4 and all(stack in regions for stack in stacks), (stacks, regions)


@pytest.mark.parametrize("where", ["own", "sid"])
def test_plain_lldb_reads_a_crashcatch_minidump(interp, where):
    """lldb without any plugin on a crashcatch minidump: the process id, every thread, the
    crashing one selected with its signal, every module loaded from its file at the dump's
    address with the dump's build id, every byte of the dump's memory read back as the file
    holds it, and lldb's unwind the same frames as crashcatch's own: every thread's whole
    stack on lldb 21+; on lldb 19, whose own unwinder stops early in some interpreters' eval
    loops (live too), the crashing thread's as far as it goes, at least into the interpreter."""
    if where == "own":
        lldb = newest_lldb(interp.root)
        root = interp.root
    else:
        if interp.root:
            pytest.skip("the sid chroot's lldb is this interpreter's own")
        root = SID_ROOT
        lldb = newest_lldb(root) if os.path.isdir(root + "/tmp") else None
    if lldb is None:
        pytest.skip(f"no lldb with its Python module in {root or 'the host'}/usr/lib/llvm-*")
    r = run_script(interp, CODE, files=("ids",))
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    ids = json.loads(r.files["ids"])
    host_dump = r.dumps[0]
    checked = dumpcheck(host_dump)
    with open(host_dump, "rb") as f:
        data = f.read()
    regions = memory_regions(data)
    sym = interp.run([crashcatch_command(interp), "symbolize", inner(interp, host_dump), "--json"], timeout=120)
    assert sym.returncode == 0, sym.stderr
    symbolized = json.loads(sym.stdout)["threads"]
    crashed = symbolized[0]
    assert crashed["crashed"] and crashed["tid"] == ids["main"], crashed

    modules = [m for m in checked["modules"]
               if m["name"].startswith("/") and os.path.isfile(interp.host_path(m["name"]))]
    if where == "own":
        world = LldbWorld(root, lldb[0], lldb[1], os.path.dirname(r.script))
        dump, search_dir, scratch = inner(interp, host_dump), None, None
    else:
        # The dump and the module files it names, copied into the chroot: lldb finds the
        # copies by file name (and checks their build ids).
        scratch = tempfile.mkdtemp(prefix="lldb-minidump-", dir=root + "/tmp")
        world = LldbWorld(root, lldb[0], lldb[1], scratch[len(root):])
        search_dir = world.scratch + "/modules"
        os.mkdir(world.host(search_dir))
        for m in modules:
            shutil.copy(m["name"], world.host(search_dir))
        dump = world.scratch + "/app.dmp"
        shutil.copy(host_dump, world.host(dump))
    try:
        seen = probe(world, dump, [[start, size] for start, size, _ in regions], search_dir)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    # The process, its threads, the crash.
    assert seen["pid"] == ids["pid"], seen["pid"]
    tids = sorted(t["tid"] for t in checked["threads"])
    assert sorted(seen["tids"]) == tids == sorted([ids["main"]] + ids["workers"]), (seen["tids"], ids)
    assert seen["selected"] == ids["main"] and seen["signal"] == signal.SIGSEGV, seen

    # Every module of the dump whose file exists, loaded from its file, where the dump says.
    loaded = {os.path.basename(m["path"] or ""): m for m in seen["modules"]}
    assert len(modules) >= 5, checked["modules"]
    for m in modules:
        got = loaded.get(os.path.basename(m["name"]))
        assert got is not None, (m, seen["modules"])
        expected_path = m["name"] if where == "own" else search_dir + "/" + os.path.basename(m["name"])
        assert got["path"] == expected_path and got["base"] == m["base"], (m, got)
        assert got["symbols"] > 0, (m, got)
        if m["build_id"]:
            assert m["build_id"].startswith(got["uuid"].replace("-", "").lower()), (m, got)

    # Every byte of the dump's memory (stacks, Python structures) reads in lldb as the file
    # holds it.
    bad = []
    for (start, size, offset), got in zip(regions, seen["memory"]):
        want = hashlib.sha256(data[offset:offset + size]).hexdigest()
        if got["unreadable_count"] or got["sha256"] != want:
            bad.append((hex(start), size, got["unreadable_count"], [hex(a) for a in got["unreadable"]]))
    assert not bad, f"lldb {world.version} reads these ranges of the dump wrong: {bad}"

    # lldb's unwind of the crashing thread against crashcatch's.
    frames = seen["frames"][str(ids["main"])]
    ours = machine_frames(crashed["native_frames"])
    lldbs = lldb_machine_frames(frames)
    names = [f["function"] for f in frames]
    assert names[:6] == BUGGYEXT_FRAMES, names
    assert lldbs == ours[:len(lldbs)], (lldbs, ours)
    # Through buggyext's segfault() into the interpreter that called it.
    segfault = next(i for i, f in enumerate(lldbs) if f[1] == crashed["native_frames"][5]["address"])
    assert len(lldbs) > segfault + 1, (lldbs, ours)
    if world.version >= SORTED_MEMORY_LOOKUP:
        assert "call_back" in names, names
        # Every thread's whole stack, the waiting workers' too.
        for thread in symbolized:
            ours = machine_frames(thread["native_frames"])
            lldbs = lldb_machine_frames(seen["frames"][str(thread["tid"])])
            assert lldbs == ours, f"lldb {world.version}, thread {thread['tid']}: {lldbs} != {ours}"
