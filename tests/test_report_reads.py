"""How many times a crash report reads its own process (issue 14): through the report's
page cache, a thread's traceback costs a few reads of the pages its thread state, frames,
code objects and strings are on, not one process_vm_readv per field (137 per thread
before). Counted with strace, so the figure does not depend on the machine's load."""
import re
import subprocess

import pytest

from crashlib import prepare_script, strace_script, thread_blocks

CODE = """
import sys, threading, time
import crashcatch, buggyext
crashcatch.enable(minidump=False)
nthreads = int(sys.argv[1])
stop = threading.Event()
def idle():
    stop.wait()
for _ in range(nthreads - 1):
    threading.Thread(target=idle, daemon=True).start()
# Every other thread waits in stop.wait(), so each report shows the same stacks.
while len(stop._cond._waiters) < nthreads - 1:
    time.sleep(0.001)
buggyext.segfault()
"""


def crash_reads(interp, nthreads):
    """(the report, the process_vm_readv calls of a crash with `nthreads` threads)."""
    p = prepare_script(interp, CODE, args=[str(nthreads)])
    trace = p.cwd + "/reads.trace"
    r = interp.run(["strace", "-f", "-qq", "-e", "trace=process_vm_readv", "-o", trace] + p.argv,
                   cwd=p.cwd, env=p.env, timeout=120)
    assert r.returncode != 0 and "Fatal Python error: Segmentation fault" in r.stderr, r.stderr
    with open(interp.host_path(trace)) as f:
        reads = sum(1 for line in f if "process_vm_readv(" in line)
    return r.stderr, reads


def test_each_more_thread_costs_a_few_reads(interp):
    if interp.run(["strace", "-V"]).returncode != 0:
        pytest.skip(f"strace is not installed for {interp.name}")
    few_report, few = crash_reads(interp, 10)
    many_report, many = crash_reads(interp, 50)
    # The reports are whole: a block per thread, each waiting in idle().
    for report, n in ((few_report, 10), (many_report, 50)):
        blocks = thread_blocks(report)
        assert len(blocks) == n, report
        assert sum(1 for frames in blocks.values() if any(f[2] == "idle" for f in frames)) == n - 1, report
    per_thread = (many - few) / 40
    # Measured: 3-6 reads per thread with the cache (its page of the thread state, its
    # frames' code objects and names mostly shared), 137 without.
    assert per_thread <= 20, (few, many)


def test_a_report_signal_reads_memory_as_it_is_at_that_delivery(interp):
    """Each report starts with an empty cache: a second `register()`ed report shows the
    frames as they are then, not the pages the first one kept."""
    code = """
    import os, signal, sys
    import crashcatch
    crashcatch.register(signal.SIGUSR1, file=sys.stdout, all_threads=False)
    def first():
        os.kill(os.getpid(), signal.SIGUSR1)
    def second():
        os.kill(os.getpid(), signal.SIGUSR1)
    first()
    second()
    """
    p = prepare_script(interp, code)
    r = interp.run(p.argv, cwd=p.cwd, env=p.env, timeout=60)
    assert r.returncode == 0, r.stderr
    reports = r.stdout.split("Stack (most recent call first):\n")[1:]
    assert len(reports) == 2, r.stdout
    assert " in first\n" in reports[0] and " in second\n" not in reports[0], r.stdout
    assert " in second\n" in reports[1] and " in first\n" not in reports[1], r.stdout


def test_the_c_stack_reads_each_module_files_headers_at_once(interp, tmp_path):
    """Naming the C stack reads each module file's program and section headers in one
    `pread` each, not one per header (178 section-header and 28 program-header reads on
    pyenv 3.12 before). The only single-header reads left: the ELF header and the symbol
    table's string-table header, so at most two per file opened."""
    if subprocess.run(["strace", "-V"], capture_output=True).returncode != 0:
        pytest.skip("the host has no strace")
    code = """
    import crashcatch, buggyext
    crashcatch.enable(minidump=False)
    buggyext.segfault()
    """
    p = prepare_script(interp, code)
    r, trace = strace_script(interp, p, "openat,pread64", tmp_path / "preads.trace")
    assert "Current thread's C stack trace" in r.stderr and " at segfault+0x" in r.stderr, r.stderr
    crash = trace[trace.index("--- SIGSEGV"):]
    files = len(re.findall(r'openat\(AT_FDCWD, "[^"]*\.so[^"]*"|openat\(AT_FDCWD, "[^"]*/python[^"/]*"', crash))
    single = len(re.findall(r"pread64\(\d+, .*, (?:64|56), \d+\) = ", crash))
    assert files >= 1, crash
    assert single <= 2 * files, (single, files)
