"""`crashcatch core DUMP -o FILE`: a crashcatch minidump as an ELF core that gdb opens with the
program. Checked with gdb itself (the interpreter's world's gdb, inside its chroot when it
has one) against independent truth: the symbolizer's native frames of the same dump, the
dump's thread list and memory as the `minidump` crate reads them (tests/dumpcheck), and the
bytes of the dump's own memory list."""
import json
import os
import re
import signal
import struct
import subprocess

import pytest

from crashlib import THREADED_CRASH, run_script
from hostile_dumps import MEMORY_LIST_STREAM, METADATA_STREAM, THREAD_LIST_STREAM, memory_regions, \
    replace_stream, streams
from interpreters import REPO
from test_gdb_truth import gdb_available, gdb_core_frames

DUMPCHECK = os.path.join(REPO, "target", "release", "dumpcheck")
SYMBOLIZER = os.path.join(REPO, "target", "release", "crashcatch-symbolize")
SYSTEM_INFO_STREAM = 7
DSO_DEBUG_STREAM = 0x4767000A

# Python → C → Python → C, with three waiting threads.
CODE = THREADED_CRASH.format(call="buggyext.call_back(lambda: buggyext.segfault(2))")

# What else the tests ask gdb: threads, libraries, and memory at addresses of the dump.
INFO_SCRIPT = r"""
info threads
info sharedlibrary
python
import gdb
print("RUNTIME 0x%x" % int(gdb.parse_and_eval("(unsigned long)&_PyRuntime")))
for addr in ADDRESSES:
    try:
        data = bytes(gdb.selected_inferior().read_memory(addr, 64))
        print("MEM 0x%x %s" % (addr, data.hex()))
    except gdb.MemoryError as e:
        print("MEM 0x%x unreadable %s" % (addr, e))
end
"""


def dumpcheck(dump):
    r = subprocess.run([DUMPCHECK, dump], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def dump_bytes_at(dump_data, address, size):
    """`size` bytes at `address` from the dump's memory list (None if no one range holds them)."""
    for start, length, offset in memory_regions(dump_data):
        if start <= address and address + size <= start + length:
            return dump_data[offset + address - start:offset + address - start + size]
    return None


def crashcatch_command(interp):
    return os.path.join(os.path.dirname(interp.venv_python), "crashcatch")


def inner(interp, host_path):
    return host_path[len(interp.root):] if interp.root else host_path


def test_gdb_reads_a_converted_dump_like_the_crash(interp):
    """gdb on the converted core: its `bt` of the crashing thread is the symbolizer's native
    stack of the dump (every pc, inlined frames, names), `info threads` lists every thread of
    the dump with its LWP (crashing one current), `info sharedlibrary` finds the libraries
    with symbols, and Python's memory from the dump reads back byte for byte."""
    if not gdb_available(interp):
        pytest.skip(f"gdb is not installed for {interp.name}")
    r = run_script(interp, CODE)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    check_gdb_on_converted(interp, os.path.dirname(r.script), r.dumps[0])


def test_without_a_dso_debug_stream_the_library_list_comes_from_the_module_files(interp):
    """A dump without minidump-writer's LinuxDsoDebug stream (its directory entry made an
    unused stream): the loader's list is rebuilt from the module list and the files on disk,
    and gdb reads the core just as well."""
    if not gdb_available(interp):
        pytest.skip(f"gdb is not installed for {interp.name}")
    r = run_script(interp, CODE)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    with open(r.dumps[0], "rb") as f:
        data = f.read()
    stripped = r.dumps[0][:-len(".dmp")] + "-no-dso-debug.dmp"
    with open(stripped, "wb") as f:
        f.write(without_stream(data, DSO_DEBUG_STREAM))
    check_gdb_on_converted(interp, os.path.dirname(r.script), stripped)


def without_stream(dump, kind):
    """`dump` with stream `kind`'s directory entry made an UnusedStream."""
    data = bytearray(dump)
    _, _, count, directory = struct.unpack_from("<IIII", data, 0)
    found = False
    for i in range(count):
        if struct.unpack_from("<I", data, directory + 12 * i)[0] == kind:
            struct.pack_into("<I", data, directory + 12 * i, 0)
            found = True
    assert found, f"no stream {kind:#x}"
    return bytes(data)


def check_gdb_on_converted(interp, run_dir, host_dump):
    """Converts `host_dump` in the interpreter's world and checks gdb's view of the core."""
    dump = inner(interp, host_dump)
    core = run_dir + "/converted.core"
    out = interp.run([crashcatch_command(interp), "core", dump, "-o", core], timeout=120)
    assert out.returncode == 0, out.stderr
    assert "wrote " + core in out.stdout and "warning" not in out.stderr, (out.stdout, out.stderr)
    assert os.stat(interp.host_path(core)).st_mode & 0o777 == 0o600
    # Each module's first page is in the core, as the kernel writes it: the ELF header with
    # the build id the dump records (gdb, lldb and debuginfod read build ids there).
    with open(interp.host_path(core), "rb") as f:
        image = f.read()
    modules = [m for m in dumpcheck(host_dump)["modules"]
               if m["build_id"] and os.path.isfile(interp.host_path(m["name"]))]
    assert len(modules) >= 5, modules
    for m in modules:
        page = core_memory(image, m["base"], 4096)
        assert page is not None and page[:4] == b"\x7fELF", m
        assert bytes.fromhex(m["build_id"]) in page, m

    # The native frames: gdb's unwind of the core against the symbolizer's of the dump.
    truth = [t for t in gdb_core_frames(interp, core, run_dir) if t["kind"] != "tailcall"]
    sym = interp.run([crashcatch_command(interp), "symbolize", dump, "--json"], timeout=120)
    assert sym.returncode == 0, sym.stderr
    ours = json.loads(sym.stdout)["threads"][0]["native_frames"]
    assert [(f["address"], f["inlined"]) for f in ours] == \
        [(t["pc"], t["kind"] == "inline") for t in truth], (ours, truth)
    for mine, gdbs in zip(ours, truth):
        if mine["file"] and gdbs["file"] or (mine["module"] or "").startswith("buggyext"):
            assert mine["function"] == gdbs["function"], (mine, gdbs)
        elif gdbs["function"] and not gdbs["file"]:
            assert mine["function"] is not None, (mine, gdbs)
    names = [t["function"] for t in truth]
    assert names[:6] == ["deref_null"] * 3 + ["inlined_helper", "buggy_entry", "segfault"], names
    assert "call_back" in names, names

    # Threads, libraries, memory.
    checked = dumpcheck(host_dump)
    meta = checked["metadata"]
    tids = sorted(t["tid"] for t in checked["threads"])
    crashed = checked["exception"]["tid"]
    tstate = next(t["python"]["tstate"] for t in meta["threads"] if t["tid"] == crashed)
    runtime = meta["python"]["runtime"]
    with open(interp.host_path(run_dir + "/info.gdb"), "w") as f:
        f.write(INFO_SCRIPT.replace("ADDRESSES", repr([runtime, tstate])))
    g = interp.run(["gdb", "-nx", "-batch", "-x", run_dir + "/info.gdb", interp.python, core], timeout=300)
    text = g.stdout
    lwps = {int(m[2]): bool(m[1]) for m in re.finditer(r"^(\*)?\s+\d+\s+(?:Thread 0x[0-9a-f]+ \()?LWP (\d+)",
                                                       text, re.M)}
    assert sorted(lwps) == tids and len(tids) == 4, (tids, text)
    assert [t for t, current in lwps.items() if current] == [crashed], text
    libraries = {os.path.basename(m[2]): m[1] for m in re.finditer(r"^0x[0-9a-f]+\s+0x[0-9a-f]+\s+(Yes|No)(?: \(\*\))?\s+(\S+)$",
                                                                  text, re.M)}
    assert libraries.get("libc.so.6") == "Yes", text
    assert [v for k, v in libraries.items() if k.startswith("buggyext")] == ["Yes"], text
    # gdb's `_PyRuntime` (relocated through the rebuilt link map, or the executable's own
    # for a static interpreter) is the one the dump names, and its bytes and the crashing
    # thread's state are the dump's.
    assert re.search(r"^RUNTIME 0x([0-9a-f]+)$", text, re.M)[1] == f"{runtime:x}", text
    with open(host_dump, "rb") as f:
        data = f.read()
    for addr in (runtime, tstate):
        expected = dump_bytes_at(data, addr, 64)
        assert expected is not None, f"the dump does not hold {addr:#x}"
        assert f"MEM 0x{addr:x} {expected.hex()}" in text, text


# A worker thread crashes while the main thread waits for it.
WORKER_CRASH = """
import crashcatch, buggyext, threading
crashcatch.enable()
t = threading.Thread(target=buggyext.segfault_at, args=(0xdead0000,), name="crasher")
t.start()
t.join()
"""


def test_the_crashing_thread_comes_first_with_its_signal(tmp_path):
    """The core's first NT_PRSTATUS is the crashing thread's (here not the dump's first
    thread), with the signal; NT_SIGINFO holds si_code and the fault address."""
    from conftest import INTERPRETERS
    interp = next(i for i in INTERPRETERS if not i.root)
    r = run_script(interp, WORKER_CRASH)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    core = str(tmp_path / "c.core")
    out = subprocess.run([SYMBOLIZER, "core", r.dumps[0], "-o", core], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    notes = core_notes(open(core, "rb").read())
    checked = dumpcheck(r.dumps[0])
    prstatus = [desc for kind, desc in notes if kind == 1]
    assert len(prstatus) == len(checked["threads"])
    first_tid, cursig = struct.unpack_from("<I", prstatus[0], 32)[0], struct.unpack_from("<H", prstatus[0], 12)[0]
    assert (first_tid, cursig) == (checked["exception"]["tid"], signal.SIGSEGV)
    assert checked["threads"][0]["tid"] != first_tid, checked["threads"]
    assert sorted(struct.unpack_from("<I", p, 32)[0] for p in prstatus) == sorted(t["tid"] for t in checked["threads"])
    assert all(struct.unpack_from("<H", p, 12)[0] == 0 for p in prstatus[1:])
    # The registers are the fault's: rip, rsp as the dump's exception context records them.
    rip, rsp = struct.unpack_from("<Q", prstatus[0], 112 + 16 * 8)[0], struct.unpack_from("<Q", prstatus[0], 112 + 19 * 8)[0]
    assert (rip, rsp) == (checked["exception"]["context"]["rip"], checked["exception"]["context"]["rsp"])
    siginfo = next(desc for kind, desc in notes if kind == 0x53494749)
    signo, _, code, _, addr = struct.unpack_from("<iiiiQ", siginfo)
    assert (signo, code, addr) == (signal.SIGSEGV, 1, 0xdead0000)  # SEGV_MAPERR
    kinds = [kind for kind, _ in notes]
    assert {3, 6, 0x46494C45} <= set(kinds), kinds  # PRPSINFO, AUXV, FILE
    psargs = next(desc for kind, desc in notes if kind == 3)[56:136].rstrip(b"\0").decode()
    assert psargs.startswith(interp.venv_python), psargs


def core_memory(core, address, size):
    """`size` bytes at `address` from an ELF64 core's PT_LOADs (None if one does not hold them)."""
    phoff, = struct.unpack_from("<Q", core, 0x20)
    phnum, = struct.unpack_from("<H", core, 0x38)
    for i in range(phnum):
        p_type, _, offset, vaddr, _, filesz = struct.unpack_from("<IIQQQQ", core, phoff + 56 * i)
        if p_type == 1 and vaddr <= address and address + size <= vaddr + filesz:
            return core[offset + address - vaddr:offset + address - vaddr + size]
    return None


def core_notes(core):
    """[(type, desc)] of an ELF64 core's PT_NOTE segments."""
    phoff, = struct.unpack_from("<Q", core, 0x20)
    phnum, = struct.unpack_from("<H", core, 0x38)
    notes = []
    for i in range(phnum):
        p_type, _, offset, _, _, size = struct.unpack_from("<IIQQQQ", core, phoff + 56 * i)
        if p_type != 4:
            continue
        at = offset
        while at < offset + size:
            namesz, descsz, kind = struct.unpack_from("<III", core, at)
            desc_at = at + 12 + (namesz + 3) // 4 * 4
            notes.append((kind, core[desc_at:desc_at + descsz]))
            at = desc_at + (descsz + 3) // 4 * 4
    return notes


@pytest.fixture(scope="module")
def real_dump(tmp_path_factory):
    """A crashcatch dump of a threaded crash (first host interpreter), as bytes."""
    from conftest import INTERPRETERS
    interp = next(i for i in INTERPRETERS if not i.root)
    r = run_script(interp, CODE)
    assert r.returncode == -signal.SIGSEGV and len(r.dumps) == 1, r.stderr
    with open(r.dumps[0], "rb") as f:
        return f.read()


def damaged(dump):
    """name -> bytes: files `crashcatch core` must refuse."""
    out = {"empty": b"", "text": b"not a minidump\n", "truncated": dump[:len(dump) // 2],
           "header-only": dump[:32]}
    # A stream reaching past the end of the file (its directory entry's size made huge).
    grown = bytearray(dump)
    _, _, count, directory = struct.unpack_from("<IIII", grown, 0)
    for i in range(count):
        if struct.unpack_from("<I", grown, directory + 12 * i)[0] == MEMORY_LIST_STREAM:
            struct.pack_into("<I", grown, directory + 12 * i + 4, 0x7FFFFFFF)
    out["stream-past-end"] = bytes(grown)
    # A memory list that claims more ranges than its stream holds.
    out["memory-list-count"] = replace_stream(dump, MEMORY_LIST_STREAM, struct.pack("<I", 1000) + bytes(16))
    out["no-threads"] = replace_stream(dump, THREAD_LIST_STREAM, struct.pack("<I", 0))
    # An ARM64 dump (processor architecture 12).
    rva, _ = streams(dump)[SYSTEM_INFO_STREAM]
    arm = bytearray(dump)
    struct.pack_into("<H", arm, rva, 12)
    out["arm64"] = bytes(arm)
    return out


EXPECTED = {
    "empty": "not a minidump", "text": "not a minidump", "truncated": "not a minidump",
    "header-only": "not a minidump", "stream-past-end": "truncated or damaged",
    "memory-list-count": "damaged memory list", "no-threads": "no thread with registers",
    "arm64": "only x86-64 Linux dumps",
}


def test_bad_input_exits_2_with_a_message_and_leaves_no_file(real_dump, tmp_path):
    for name, data in damaged(real_dump).items():
        dump = tmp_path / f"{name}.dmp"
        dump.write_bytes(data)
        core = tmp_path / f"{name}.core"
        r = subprocess.run([SYMBOLIZER, "core", str(dump), "-o", str(core)], capture_output=True, text=True)
        assert r.returncode == 2, (name, r.returncode, r.stderr)
        assert r.stderr.startswith(f"crashcatch: {dump}: ") and EXPECTED[name] in r.stderr, (name, r.stderr)
        assert "panicked" not in r.stderr and not core.exists(), name
    # Only the dumps are left: no temporary file either.
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".dmp"] * len(EXPECTED)


def test_unwritable_output_exits_2_and_an_existing_file_is_kept(real_dump, tmp_path):
    dump = tmp_path / "ok.dmp"
    dump.write_bytes(real_dump)
    for out in (tmp_path / "missing-dir" / "x.core", tmp_path):
        r = subprocess.run([SYMBOLIZER, "core", str(dump), "-o", str(out)], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.startswith(f"crashcatch: cannot write {out}: "), r.stderr
    # A failed conversion leaves what was at the output path as it was.
    kept = tmp_path / "kept.core"
    kept.write_bytes(b"previous")
    bad = tmp_path / "bad.dmp"
    bad.write_bytes(real_dump[:100])
    r = subprocess.run([SYMBOLIZER, "core", str(bad), "-o", str(kept)], capture_output=True, text=True)
    assert r.returncode == 2 and kept.read_bytes() == b"previous", r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dmp", "kept.core", "ok.dmp"]


def test_a_minidump_without_crashcatch_metadata_converts(real_dump, tmp_path):
    """The metadata stream is optional: without it (its directory entry made an unused
    stream) the core has the same threads and memory, and gdb unwinds it the same way."""
    cores = {}
    for name, dump_data in (("with", real_dump), ("without", without_stream(real_dump, METADATA_STREAM))):
        dump = tmp_path / f"{name}.dmp"
        dump.write_bytes(dump_data)
        core = tmp_path / f"{name}.core"
        r = subprocess.run([SYMBOLIZER, "core", str(dump), "-o", str(core)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        cores[name] = [(kind, desc) for kind, desc in core_notes(core.read_bytes())]
    # Only the thread pointers (which the metadata gives) differ.
    strip = [(k, d[:112 + 21 * 8] + d[112 + 22 * 8:] if k == 1 else d) for k, d in cores["with"]]
    assert strip == [(k, d[:112 + 21 * 8] + d[112 + 22 * 8:] if k == 1 else d) for k, d in cores["without"]]


def test_a_live_dump_converts_without_a_signal(tmp_path):
    """`write_minidump()` from a worker thread: no signal in the core (no NT_SIGINFO,
    pr_cursig 0 everywhere), and the requesting thread first."""
    from conftest import INTERPRETERS
    interp = next(i for i in INTERPRETERS if not i.root)
    r = run_script(interp, """
    import crashcatch, threading
    t = threading.Thread(target=crashcatch.write_minidump, name="dumper")
    t.start()
    t.join()
    """)
    assert r.returncode == 0 and len(r.dumps) == 1, r.stderr
    core = tmp_path / "live.core"
    out = subprocess.run([SYMBOLIZER, "core", r.dumps[0], "-o", str(core)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    notes = core_notes(core.read_bytes())
    prstatus = [desc for kind, desc in notes if kind == 1]
    requesting = dumpcheck(r.dumps[0])["metadata"]["requesting_tid"]
    assert struct.unpack_from("<I", prstatus[0], 32)[0] == requesting
    assert all(struct.unpack_from("<H", p, 12)[0] == 0 for p in prstatus)
    assert 0x53494749 not in [kind for kind, _ in notes]
