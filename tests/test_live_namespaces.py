"""A running Python process whose files are not ours at the same paths: its extension module
exists only in its own mount namespace (a tmpfs mounted there over an empty directory), and
for an interpreter in a chroot its libc and libpython are the chroot's. From outside,
`crashcatch symbolize --pid` reads them through /proc/PID/root, and a dump symbolized later
needs `--sysroot /proc/PID/root` (or a copy of the files): without it the module file is
missing, never named wrongly. Truth: buggyext.c's own lines, the script's lines."""
import json
import os
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from crashlib import prepare_script, script_line
from interpreters import REPO
from test_gdb_cores import kernel_core_pattern
from test_live import CODE as LIVE_CODE, blocked_in_read, crashcatch_in, still_answers

DUMPER = os.path.join(REPO, "target", "release", "crashcatch-dump")
SYMBOLIZE = os.path.join(REPO, "target", "release", "crashcatch-symbolize")

# test_live's script (two threads wait in a read called back from buggyext.call_back, the main
# thread reads stdin), with buggyext imported from a directory only this process sees.
IMPORT = "import os, sys, threading, buggyext\n"
assert IMPORT in LIVE_CODE
CODE = LIVE_CODE.replace(IMPORT, IMPORT + 'assert buggyext.__file__.startswith(os.environ["PRIVATE_DIR"] + "/")\n')


def call_back_line(interp):
    """buggyext.c's line where call_back calls the Python callback (each waiting thread's
    buggyext frame is there)."""
    source = interp.host_path(os.path.dirname(interp.ext_dir) + "/examples/buggyext/buggyext.c")
    with open(source) as f:
        lines = f.read().splitlines()
    start = lines.index("static PyObject *call_back(PyObject *self, PyObject *args) {")
    return next(i + 1 for i in range(start, len(lines)) if "PyObject_CallNoArgs(callback)" in lines[i])


def in_own_namespace(interp, prepared):
    """(argv, env, the private directory inside the interpreter's root) to run the prepared
    script in its own mount namespace, importing buggyext from a tmpfs only it sees."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    private = prepared.cwd + "/private"
    os.makedirs(interp.host_path(private))
    ext = [n for n in os.listdir(interp.host_path(interp.ext_dir)) if n.startswith("buggyext")]
    assert ext, interp.ext_dir
    env = {k: v for k, v in prepared.env.items() if not k.startswith("CRASHCATCH")}
    env.update(PYTHONPATH=private, PRIVATE_DIR=private)
    host_private = interp.host_path(private)
    setup = (f"mount -t tmpfs none {shlex.quote(host_private)} && "
             f"cp {shlex.quote(interp.host_path(interp.ext_dir + '/' + ext[0]))} {shlex.quote(host_private)}/ && "
             f'exec "$@"')
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh",
            *interp.command(prepared.argv, prepared.cwd)]
    return argv, env, private


def skip_without_namespaces(err):
    if "unshare failed" in err or "mount:" in err:
        pytest.skip(f"cannot make a mount namespace here: {err.strip()}")


@pytest.fixture
def hidden(interp):
    """The script, running in its own mount namespace and blocked in its reads: (process,
    prepared script, the private directory inside the interpreter's root)."""
    prepared = prepare_script(interp, CODE)
    argv, env, private = in_own_namespace(interp, prepared)
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        while not blocked_in_read(proc.pid):
            if proc.poll() is not None:
                out, err = proc.communicate()
                skip_without_namespaces(err)
                pytest.fail(f"the script ended: {out} {err}")
            time.sleep(0.01)  # a poll interval, not a limit
        # Only the process sees the module: at its path here is an empty directory.
        assert os.listdir(interp.host_path(private)) == []
        yield proc, prepared, private
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def buggyext_frames(doc):
    """(function, file's name, line) of every buggyext frame of each worker thread."""
    workers = [t for t in doc["threads"] if (t["python_name"] or "").startswith("worker-")]
    assert len(workers) == 2, [t["python_name"] for t in doc["threads"]]
    return [[(f.get("function"), os.path.basename(f.get("file") or ""), f.get("line"))
             for f in t["native_frames"] if (f.get("module") or "").startswith("buggyext")]
            for t in workers]


def check_named(doc, interp, prepared):
    """buggyext's frames are named, with buggyext.c's line, in both workers, inside the
    script's own frames."""
    want = [("call_back", "buggyext.c", call_back_line(interp))]
    assert buggyext_frames(doc) == [want, want]
    for t in doc["threads"]:
        if (t["python_name"] or "").startswith("worker-"):
            mine = [(f["line"], f["function"]) for f in t["python_frames"] if f["file"] == prepared.script]
            assert mine == [(script_line(CODE, "read"), "wait_in_c"), (script_line(CODE, "worker"), "worker")], t


def test_symbolize_pid_reads_the_processs_own_module_files(interp, hidden):
    proc, prepared, private = hidden
    r = crashcatch_in(interp, "symbolize", "--pid", str(proc.pid), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    check_named(doc, interp, prepared)
    assert not any(private in m for m in doc["modules_without_symbols"]), doc["modules_without_symbols"]
    still_answers(proc)


def test_a_dump_needs_the_sysroot_for_files_only_the_process_sees(interp, hidden):
    proc, prepared, private = hidden
    dump = prepared.cwd + "/hidden.dmp"
    r = crashcatch_in(interp, "dump", str(proc.pid), "-o", dump)
    assert r.returncode == 0, r.stderr
    with_root = crashcatch_in(interp, "symbolize", dump, "--json", "--sysroot", f"/proc/{proc.pid}/root")
    assert with_root.returncode == 0, with_root.stderr
    check_named(json.loads(with_root.stdout), interp, prepared)
    # Without it: the module's frames are unnamed, and the output says its file is missing.
    without = crashcatch_in(interp, "symbolize", dump, "--json")
    assert without.returncode == 0, without.stderr
    doc = json.loads(without.stdout)
    frames = buggyext_frames(doc)
    assert all(all(f == (None, "", None) for f in fs) for fs in frames), frames
    if not interp.root:
        # Here libc and the interpreter are found, so the unwind reaches the unnamed module.
        # In a chroot the dump records the paths the dumper saw (under the chroot's directory
        # on the host's mount): without --sysroot no module file is found, nor unwound into.
        assert all(frames), frames
    missing = [m for m in doc["modules_without_symbols"] if private + "/buggyext" in m]
    assert missing and "No such file or directory" in missing[0] and "--sysroot" in missing[0], missing
    still_answers(proc)


def test_a_host_side_dump_uses_the_chroots_files(interp, hidden, tmp_path):
    """The dumper and symbolizer built here, run outside the interpreter's root: for a chroot
    (sid) interpreter its libc and libpython are not the host's files at the same paths
    (other build ids), so they are named only through the sysroot."""
    proc, prepared, _ = hidden
    dump = str(tmp_path / "host-side.dmp")
    r = subprocess.run([DUMPER, "--pid", str(proc.pid), "-o", dump], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    sym = subprocess.run([SYMBOLIZE, "symbolize", "--json", "--sysroot", f"/proc/{proc.pid}/root", dump],
                         capture_output=True, text=True, timeout=120)
    assert sym.returncode == 0, sym.stderr
    doc = json.loads(sym.stdout)
    check_named(doc, interp, prepared)
    runtime = [f for t in doc["threads"] for f in t["frames"] if f["kind"] == "native"
               and os.path.basename(f.get("module") or "").startswith(("libc.so", "libpython", "python"))]
    assert any(f.get("function") for f in runtime), runtime
    still_answers(proc)


CRASH = """
import os, buggyext
assert buggyext.__file__.startswith(os.environ["PRIVATE_DIR"] + "/"), buggyext.__file__

def crash():
    return buggyext.segfault(2)  # @crash

crash()  # @module
"""


def test_a_core_of_a_contained_process_reads_its_files_from_a_sysroot_copy(interp):
    """A kernel core of a process whose extension lived only in its mount namespace: the
    module is missing here until `--sysroot` gives a copy of the process's files."""
    why = kernel_core_pattern()
    if why:
        pytest.skip(why)
    prepared = prepare_script(interp, CRASH, core=True)
    argv, env, private = in_own_namespace(interp, prepared)
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    skip_without_namespaces(r.stderr)
    assert r.returncode == -signal.SIGSEGV or r.returncode == 128 + signal.SIGSEGV, r.stderr
    core = prepared.cwd + "/core"
    if not os.path.exists(interp.host_path(core)):
        pytest.skip("the kernel wrote no core")
    assert os.listdir(interp.host_path(private)) == []
    # A copy of the files the process saw that we do not: its private directory.
    sysroot = prepared.cwd + "/sysroot"
    os.makedirs(interp.host_path(sysroot + private))
    ext = [n for n in os.listdir(interp.host_path(interp.ext_dir)) if n.startswith("buggyext")][0]
    shutil.copy(interp.host_path(interp.ext_dir + "/" + ext), interp.host_path(sysroot + private))

    def innermost_buggyext(*args):
        out = crashcatch_in(interp, "symbolize", core, "--json", *args)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        python = [(f["line"], f["function"]) for f in doc["threads"][0]["python_frames"]]
        assert python == [(script_line(CRASH, "crash"), "crash"), (script_line(CRASH, "module"), "<module>")]
        frames = [f for f in doc["threads"][0]["native_frames"] if (f.get("module") or "").startswith("buggyext")]
        return frames, doc["modules_without_symbols"]

    frames, missing = innermost_buggyext()
    assert frames and not any(f.get("function") for f in frames), frames
    assert any(private + "/buggyext" in m and "No such file or directory" in m for m in missing), missing
    frames, missing = innermost_buggyext("--sysroot", sysroot)
    assert frames[0]["function"] == "deref_null" and frames[0]["file"].endswith("buggyext.c"), frames
    assert not any(private in m for m in missing), missing
