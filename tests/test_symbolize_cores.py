"""`crashcatch symbolize CORE` on the kernel's core files. Truth: the crashcatch minidump of the
same crash (one crash with crashcatch enabled and cores allowed leaves both): every thread's
merged stack — Python frames, native frames (function, module, offset, file:line, inlined,
hidden or not), in the same order — must be the same; and the script's own lines for a
process that never imported crashcatch. Also zstd-, lz4- and xz-compressed cores (whole, and
cut in half), a truncated core, and bad input (an ELF file that is not a core, a core without
notes, a core of a process without Python): a clear message and status 2, never a panic.

For an interpreter in a chroot, `crashcatch symbolize` runs inside it (the core's NT_FILE
paths are the chroot's)."""
import json
import os
import shutil
import signal
import struct
import subprocess
import textwrap

import pytest

from crashlib import FATAL_CALLS, THREADED_CRASH, run_script, script_line
from interpreters import REPO
from test_gdb_cores import CODE as CHAIN, kernel_core_pattern

SYMBOLIZE = os.path.join(REPO, "target", "release", "crashcatch-symbolize")

# The same crash chain, without crashcatch: Python → C → Python → C in the main thread, three
# named Python threads waiting.
WITHOUT_CRASHCATCH = """
import buggyext, threading, sys
assert "crashcatch" not in sys.modules
ready = threading.Event()
workers = [threading.Thread(target=ready.wait, name="worker-%d" % i) for i in range(3)]
for w in workers:
    w.start()

def crash():
    return buggyext.segfault(2)  # @crash

def main():
    return buggyext.call_back(crash)  # @main

main()  # @module
"""


def symbolize(interp, path, *args):
    """`crashcatch symbolize` as installed in the interpreter's venv, in its own world."""
    inner = path[len(interp.root):] if interp.root else path
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    return interp.run([crashcatch, "symbolize", inner, *args], timeout=120)


def symbolize_json(interp, path):
    r = symbolize(interp, path, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def kernel_core(interp, code, *, crashcatch=True):
    """Runs `code` with cores allowed; (run, host path of the kernel's core). Skips when the
    kernel writes no core file in the run's directory."""
    why = kernel_core_pattern()
    if why:
        pytest.skip(why)
    r = run_script(interp, code, core=True)
    assert r.returncode < 0, r.stderr
    assert len(r.dumps) == (1 if crashcatch else 0), r.stderr
    core = interp.host_path(os.path.dirname(r.script) + "/core")
    if not os.path.exists(core):
        pytest.skip("the kernel wrote no core (RLIMIT_CORE, a non-dumpable process?)")
    return r, core


def frame_key(f):
    if f["kind"] == "python":
        return ("python", f["file"], f["line"], f["function"])
    return ("native", f["module"], f["module_offset"], f["function"], f["file"], f["line"], f["inlined"],
            f["plumbing"])


def stacks(doc):
    """tid → (Python name, holds the GIL, merge status, merged frames)."""
    return {t["tid"]: (t["python_name"], t["holds_gil"], t["stack"], [frame_key(f) for f in t["frames"] or []])
            for t in doc["threads"]}


def without_handler(frames):
    """The crashed thread's frames from the outermost to where the signal was raised: a raised
    signal (abort) reaches the kernel's core only after crashcatch's handler re-raised it, so the
    core's innermost frames are the handler's, then the kernel's signal frame."""
    return frames[[f[3] for f in frames].index("do_abort"):]


CRASHES = {kind: (THREADED_CRASH.format(call=call), signo) for kind, (call, signo, _) in FATAL_CALLS.items()}
CRASHES["chain"] = (CHAIN, signal.SIGSEGV)


@pytest.mark.parametrize("kind", sorted(CRASHES))
def test_the_kernel_core_gives_the_minidumps_stacks(interp, kind):
    code, signo = CRASHES[kind]
    r, core = kernel_core(interp, code)
    dump, got = symbolize_json(interp, r.dumps[0]), symbolize_json(interp, core)
    assert (dump["source"], got["source"]) == ("minidump", "core")
    assert got["event"]["signal"] == signo == dump["event"]["signal"]
    assert got["event"]["thread"] == dump["event"]["thread"] == got["threads"][0]["tid"]
    # ≤3.10 has no Py_Version: the core's comes from the version string in the interpreter's file.
    assert got["python"]["version"] == dump["python"]["version"]
    if signo in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE):
        assert got["event"]["fault_address"] == dump["event"]["fault_address"]
    want, have = stacks(dump), stacks(got)
    assert sorted(have) == sorted(want)
    assert all(s[2] == "merged" for s in have.values()), {t: s[2] for t, s in have.items()}
    crashed = got["threads"][0]["tid"]
    for tid in want:
        if tid == crashed and signo == signal.SIGABRT:
            assert have[tid][:3] == want[tid][:3]
            # The kernel's copy of the stack goes on into crashcatch's handler, which re-raised.
            assert without_handler(have[tid][3]) == without_handler(want[tid][3])
            continue
        assert have[tid] == want[tid], tid
    python = [f for f in have[crashed][3] if f[0] == "python"]
    assert python and all(f[1] == r.script for f in python), python
    # Source lines of the crashing thread come from the script on disk.
    innermost = next(f for f in got["threads"][0]["frames"] if f["kind"] == "python")
    script_text = textwrap.dedent(code).lstrip().splitlines()
    assert innermost["source"].strip() == script_text[innermost["line"] - 1].strip()


def test_a_core_converted_from_the_dump_gives_the_dumps_stacks(interp):
    """`crashcatch core` writes only the dump's memory as PT_LOADs (no code, no read-only file
    pages): the reader takes those from the NT_FILE mappings' files, so the converted core
    symbolizes whole, as the dump does (the text too: same version, same merged stacks)."""
    r = run_script(interp, THREADED_CRASH.format(call="buggyext.call_back(lambda: buggyext.segfault(2))"))
    assert r.returncode < 0 and len(r.dumps) == 1, r.stderr
    dump = r.dumps[0]
    converted = os.path.join(os.path.dirname(dump), "converted.core")
    inner = lambda path: path[len(interp.root):] if interp.root else path  # noqa: E731
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    made = interp.run([crashcatch, "core", inner(dump), "-o", inner(converted)], timeout=120)
    assert made.returncode == 0, made.stderr
    want, got = symbolize_json(interp, dump), symbolize_json(interp, converted)
    assert got["source"] == "core"
    assert got["python"]["version"] == want["python"]["version"]
    assert all(t["stack"] == "merged" for t in got["threads"]), [t["merge_problem"] for t in got["threads"]]
    assert stacks(got) == stacks(want)
    text_dump, text_core = symbolize(interp, dump), symbolize(interp, converted)
    assert text_core.returncode == text_dump.returncode == 0, text_core.stderr
    # The header names the file and the dump's annotations (a core has none); the threads match.
    threads = lambda out: out[out.index("\nThread "):]  # noqa: E731
    assert threads(text_core.stdout) == threads(text_dump.stdout)
    assert f"Python {got['python']['version']} (" in text_core.stdout


def test_a_process_that_never_imported_crashcatch(interp):
    r, core = kernel_core(interp, WITHOUT_CRASHCATCH, crashcatch=False)
    doc = symbolize_json(interp, core)
    assert doc["event"]["kind"] == "fatal-signal" and doc["event"]["signal"] == signal.SIGSEGV
    crashed = doc["threads"][0]
    assert crashed["crashed"] and crashed["holds_gil"] and crashed["python_name"] == "MainThread"
    assert crashed["stack"] == "merged", crashed["merge_problem"]
    seen = [f["function"] if f["kind"] == "native" else (f["file"], f["line"], f["function"])
            for f in crashed["frames"]
            if f["kind"] == "python" or (f["module"] or "").startswith("buggyext.")]
    line = lambda m: script_line(WITHOUT_CRASHCATCH, m)  # noqa: E731
    assert seen == (FATAL_CALLS["segfault"][2] + [(r.script, line("crash"), "crash"), "call_back",
                                                   (r.script, line("main"), "main"),
                                                   (r.script, line("module"), "<module>")]), seen
    workers = sorted(t["python_name"] or "" for t in doc["threads"][1:])
    assert workers == ["worker-0", "worker-1", "worker-2"], doc["threads"]
    assert all(t["python_frames"] and t["stack"] == "merged" for t in doc["threads"][1:])
    text = symbolize(interp, core)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("Process crashed with SIGSEGV (signal 11)\n"), text.stdout
    assert f'File "{r.script}", line {line("crash")}, in crash\n    return buggyext.segfault(2)' in text.stdout


# systemd-coredump's three formats: the command that compresses FILE to its standard output,
# and the magic number the symbolizer tells it by. lz4 with 256 KiB blocks: with the CLI's
# default 4 MiB ones, half of a well-compressed core may not hold one whole block to read.
COMPRESSORS = {
    "zst": (["zstd", "-q", "-3", "-c"], b"\x28\xb5\x2f\xfd"),
    "lz4": (["lz4", "-q", "-B5", "-c"], b"\x04\x22\x4d\x18"),
    "xz": (["xz", "-q", "-c"], b"\xfd7zXZ\x00"),
}


def compressed(core, suffix):
    """`core` compressed by the format's own command line tool into core.SUFFIX."""
    command, magic = COMPRESSORS[suffix]
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed (tools/test.sh installs it)")
    with open(core + "." + suffix, "wb") as out:
        subprocess.run([*command, core], check=True, stdout=out)
    with open(core + "." + suffix, "rb") as f:
        assert f.read(len(magic)) == magic
    return core + "." + suffix


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_compressed_core_reads_as_the_core(interp, suffix):
    r, core = kernel_core(interp, WITHOUT_CRASHCATCH, crashcatch=False)
    packed_path = compressed(core, suffix)
    plain, packed = symbolize_json(interp, core), symbolize_json(interp, packed_path)
    assert packed["dump"].endswith("core." + suffix)
    plain.pop("dump"), packed.pop("dump")
    assert packed == plain


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_truncated_compressed_core_is_an_error_after_what_it_held(interp, suffix):
    r, core = kernel_core(interp, WITHOUT_CRASHCATCH, crashcatch=False)
    packed_path = compressed(core, suffix)
    data = open(packed_path, "rb").read()
    with open(packed_path, "wb") as f:
        f.write(data[:len(data) // 2])
    out = symbolize(interp, packed_path)
    assert out.returncode == 2 and "panicked" not in out.stderr, (out.stdout, out.stderr)
    tool = {"zst": "zstd"}.get(suffix, suffix)
    if suffix == "zst" and not out.stdout:
        # ruzstd hands out nothing of a frame's last window (2-8 MiB) before the frame ends:
        # a cut inside the first window leaves nothing to print, only the message.
        assert f"cannot decompress it: {tool}: " in out.stderr and f"`{tool} -t`" in out.stderr, out.stderr
        return
    assert f"the {tool}-compressed file is truncated or damaged after" in out.stderr, out.stderr
    # What it held up to the cut: the core's headers and notes at least.
    assert out.stdout.startswith("Process crashed with SIGSEGV"), out.stdout


def test_a_truncated_core_prints_what_it_can(interp):
    r, core = kernel_core(interp, WITHOUT_CRASHCATCH, crashcatch=False)
    data = open(core, "rb").read()
    # Headers and notes only: every thread and its registers, no memory → no Python stack.
    notes_end = max(off + size for kind, off, size in program_headers(data) if kind == 4)
    cut = core + ".notes-only"
    with open(cut, "wb") as f:
        f.write(data[:notes_end])
    out = symbolize(interp, cut)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "no Python stack could be decoded" in out.stderr and "panicked" not in out.stderr, out.stderr
    assert "left out: the core is truncated" in out.stdout, out.stdout
    assert out.stdout.count("\nThread ") == 4, out.stdout
    # Cut anywhere: what can be read, a message, status 0 or 2 — never a crash.
    for fraction in (3, 2):
        with open(cut, "wb") as f:
            f.write(data[:len(data) // fraction])
        out = symbolize(interp, cut)
        assert out.returncode in (0, 2) and "panicked" not in out.stderr, out.stderr
        assert out.stdout.startswith("Process crashed with SIGSEGV"), out.stdout


def program_headers(data):
    """(p_type, p_offset, p_filesz) of each program header of an ELF64 file."""
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    out = []
    for i in range(phnum):
        kind, _flags, off, _vaddr, _paddr, size = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        out.append((kind, off, size))
    return out


def elf_core_without_notes():
    """An x86-64 ET_CORE header with no program headers."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, 0, 0, 0, 64, 56, 0, 64, 0, 0)


def host_symbolize(*args):
    return subprocess.run([SYMBOLIZE, "symbolize", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("what", ["not-a-core", "no-notes", "bad-zst", "bad-lz4", "bad-xz"])
def test_bad_input_is_a_clear_error(tmp_path, what):
    path = tmp_path / what
    expected = {
        "not-a-core": "an ELF file, but not a core",
        "no-notes": "the core has no thread (no NT_PRSTATUS note)",
        "bad-zst": "cannot decompress it: zstd: ",
        "bad-lz4": "cannot decompress it: lz4: ",
        "bad-xz": "cannot decompress it: xz: ",
    }[what]
    if what == "not-a-core":
        shutil.copy(SYMBOLIZE, path)
    elif what == "no-notes":
        path.write_bytes(elf_core_without_notes())
    else:
        # The format's magic number, then bytes no stream of it starts with.
        path.write_bytes(COMPRESSORS[what[4:]][1] + b"\xff" * 64)
    r = host_symbolize(str(path))
    assert r.returncode == 2 and expected in r.stderr, r.stderr
    assert "panicked" not in r.stderr and r.stdout == ""


def test_a_core_of_a_process_without_python(tmp_path):
    why = kernel_core_pattern()
    if why:
        pytest.skip(why)
    sleep = subprocess.Popen(["/bin/sh", "-c", "ulimit -c unlimited && exec sleep 60"], cwd=tmp_path)
    # The shell execs sleep: killing it with SIGSEGV leaves sleep's core, once it sleeps (in
    # nanosleep or clock_nanosleep, x86-64 syscalls 35 and 230; not still starting up).
    def asleep():
        with open(f"/proc/{sleep.pid}/comm") as comm, open(f"/proc/{sleep.pid}/syscall") as syscall:
            return comm.read().strip() == "sleep" and syscall.read().split()[0] in ("35", "230")

    while not asleep():
        os.sched_yield()
    sleep.send_signal(signal.SIGSEGV)
    assert sleep.wait() == -signal.SIGSEGV
    core = tmp_path / "core"
    if not core.exists():
        pytest.skip("the kernel wrote no core")
    r = host_symbolize(str(core))
    assert r.returncode == 2, r.stderr
    assert "not a Python process" in r.stderr and "--layout-table" not in r.stderr, r.stderr
    assert "program: /usr/bin/sleep" in r.stdout and "nanosleep" in r.stdout, r.stdout
