"""The symbolizer's libFuzzer target (symbolizer/fuzz, `symbolize_dump`: minidump parsing, the
metadata stream, Python stacks decoded from the dump's memory, native unwinding, both
renderers, and the minidump-to-core converter of `crashcatch core`) runs for a short while on a seed corpus of real crashcatch dumps made here, and
finds nothing: no panic, overflow, hang (-timeout=10) or runaway allocation.

`tools/fuzz.sh` installs cargo-fuzz if needed and builds the target (a cold build takes 2-3
minutes, not counted in the fuzzing time). CRASHCATCH_FUZZ_SECONDS sets how long libFuzzer
runs (default 60), CRASHCATCH_FUZZ_SANITIZER=address builds with AddressSanitizer (fewer runs
per second). The seeds can also be made by hand for a longer session:

    build/tools-venv/bin/python tests/test_fuzz_target.py /tmp/corpus
    bash tools/fuzz.sh /tmp/corpus 600
"""
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

from crashlib import run_script
from hostile_dumps import METADATA_STREAM, hostile, regressions
from interpreters import REPO
from test_symbolize_cores import elf_core_without_notes

FUZZ_SH = os.path.join(REPO, "tools", "fuzz.sh")
SYMBOLIZE = os.path.join(REPO, "target", "release", "crashcatch-symbolize")

SEGV_WITH_THREADS = """
import threading, crashcatch, buggyext
crashcatch.enable()
crashcatch.annotate("ticket", "CC-42")
stop = threading.Event()
workers = [threading.Thread(target=stop.wait, name=f"waiter-{i}") for i in range(2)]
for w in workers:
    w.start()

def callback():
    return buggyext.segfault(1)

def main():
    return buggyext.call_back(callback)

main()
"""

LIVE_DUMP = """
import threading, crashcatch
crashcatch.annotate("build", "1.2.3")
stop = threading.Event()
t = threading.Thread(target=stop.wait, name="idle")
t.start()

def take():
    return crashcatch.write_minidump()

print(take())
stop.set()
t.join()
"""

SYSTEM_INFO_STREAM = 7


def minidump(streams):
    """A minidump made of `streams` [(type, bytes)]: header, directory, then the data."""
    header_size, entry_size = 32, 12
    directory = b""
    data = b""
    offset = header_size + entry_size * len(streams)
    for kind, payload in streams:
        directory += struct.pack("<III", kind, len(payload), offset + len(data))
        data += payload
    header = struct.pack("<IIIIIIQ", 0x504D444D, 0xA793, len(streams), header_size, 0, 0, 0)
    return header + directory + data


def system_info():
    """MINIDUMP_SYSTEM_INFO: AMD64, 2 CPUs, Linux (platform 0x8201), no CSD version."""
    return struct.pack("<HHHBBIIIIIHH", 9, 6, 0, 2, 0, 6, 1, 0, 0x8201, 0, 0, 0) + bytes(24)


def make_seeds(corpus, interpreters):
    """Writes the seed corpus into `corpus`; returns {name: size}."""
    os.makedirs(corpus, exist_ok=True)
    seeds = {}

    def add(name, data):
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(data)
        seeds[name] = len(data)

    # A fatal SIGSEGV with threads on the first interpreter (3.9: frame objects) and on the
    # newest one on the host (interpreter frames); a live write_minidump() dump on another
    # host interpreter (Debian's non-PIE 3.11 when present). Host interpreters only: the
    # module files their dumps name exist here, so native unwinding is exercised too.
    first = interpreters[0]
    host = [i for i in interpreters if not i.root] or [first]
    newest = max(host, key=lambda i: i.version)
    others = [i for i in host if i is not first and i is not newest]
    picks = [("segv", first, SEGV_WITH_THREADS), ("live", others[-1] if others else newest, LIVE_DUMP)]
    if newest is not first:
        picks.append(("segv", newest, SEGV_WITH_THREADS))
    for kind, interp, code in picks:
        r = run_script(interp, code)
        expected = -signal.SIGSEGV if kind == "segv" else 0
        assert r.returncode == expected and len(r.dumps) == 1, (interp.name, kind, r.returncode, r.stderr)
        with open(r.dumps[0], "rb") as f:
            dump = f.read()
        add(f"{kind}-{interp.name}.dmp", dump)
        if kind == "segv":
            # ELF cores (`crashcatch symbolize CORE`): the dump as `crashcatch core` writes it
            # (a kernel core is tens of MiB), and compressed as systemd-coredump keeps them.
            core = r.dumps[0] + ".core"
            subprocess.run([SYMBOLIZE, "core", r.dumps[0], "-o", core], check=True, capture_output=True)
            with open(core, "rb") as f:
                add(f"segv-{interp.name}.core", f.read())
            for suffix, command in (("zst", ["zstd", "-q", "-19"]), ("lz4", ["lz4", "-q", "-9"]), ("xz", ["xz", "-q"])):
                if shutil.which(command[0]):
                    packed = subprocess.run([*command, "-c", core], check=True, capture_output=True).stdout
                    add(f"segv-{interp.name}.core.{suffix}", packed)
            # Hostile thread lists, native stacks and line tables, kept small: a seed that takes
            # long to read slows every mutation of it (the limits have tests of their own).
            for name, variant in {**regressions(dump, 1 << 20), **hostile(dump, 100, 100)}.items():
                add(f"{name}-{interp.name}.dmp", variant)
        shutil.rmtree(os.path.dirname(os.path.dirname(r.dumps[0])), ignore_errors=True)
    # Small ones: no crashcatch stream at all; and a metadata stream with no memory.
    add("no-metadata.dmp", minidump([(SYSTEM_INFO_STREAM, system_info())]))
    meta = (b'{"kind":"fatal-signal","signal":11,"fault_address":0,"requesting_tid":1,'
            b'"python":{"version":"3.12.1","argv":["python","x.py"],"interp":0},'
            b'"threads":[{"tid":1,"name":"python","python_name":"MainThread",'
            b'"python":{"tstate":0,"holds_gil":true}}],'
            b'"annotations":{"k":"v"},"source":[{"first_line":1,"lines":["x = 1"]}]}')
    add("no-notes.core", elf_core_without_notes())
    add("metadata-only.dmp", minidump([(SYSTEM_INFO_STREAM, system_info()), (METADATA_STREAM, meta)]))
    return seeds


def test_fuzz_target_finds_nothing(tmp_path):
    from conftest import INTERPRETERS
    corpus = str(tmp_path / "corpus")
    seeds = make_seeds(corpus, INTERPRETERS)
    print(f"\nseed corpus: {seeds}")
    seconds = int(os.environ.get("CRASHCATCH_FUZZ_SECONDS", "60"))
    started = time.monotonic()
    # Building is not part of the time budget: a cold build takes minutes.
    r = subprocess.run(["bash", FUZZ_SH, corpus, str(seconds)], capture_output=True, text=True,
                       timeout=seconds + 3600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    done = re.search(r"^Done (\d+) runs in (\d+) second", out, re.M)
    assert done, out[-6000:]
    runs, spent = int(done.group(1)), int(done.group(2))
    cov = re.findall(r"^#\d+\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)", out, re.M)
    print(f"libFuzzer: {runs} runs in {spent} s ({runs / max(spent, 1):.0f}/s), "
          f"last coverage {cov[-1] if cov else '?'} (cov, features, corpus units); "
          f"fuzz.sh took {time.monotonic() - started:.0f} s in all")
    # It fuzzed: it ran mutations beyond replaying the seeds (how many depends on the
    # machine's load, so no rate is asserted).
    assert runs > 2 * len(seeds), out[-6000:]


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from interpreters import load_prepared
    print(make_seeds(sys.argv[1], load_prepared()[0]))
