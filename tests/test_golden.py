"""Golden outputs of `crashcatch symbolize` (text and JSON) for a few fixed scenarios, on one
pinned interpreter (a pyenv build with DWARF; the sid chroot moves with Debian, so it is
checked by the other tests, not here). Run-specific values — thread ids, addresses, module
offsets, scratch paths — are replaced by placeholders before comparing.

After an intended change of the output, rewrite the files with one command:
    tools/bless.sh
then review the diff of tests/golden/ like any other change.
"""
import json
import os
import re
import signal

import pytest

from conftest import INTERPRETERS
from crashlib import run_script
from interpreters import REPO

GOLDEN_DIR = os.path.join(REPO, "tests", "golden")
GOLDEN_INTERPRETER = "pyenv-3.12.1"
BLESS = os.environ.get("CRASHCATCH_BLESS") == "1"

# Every scenario parks a second thread in a known place first, so its stack is fixed.
PARK = """
import sys, threading, time, crashcatch, buggyext

def idle():
    time.sleep(3600)  # @idle

parked = threading.Thread(target=idle, name="parked", daemon=True)
parked.start()
while sys._current_frames().get(parked.ident) is None or \\
        sys._current_frames()[parked.ident].f_code.co_name != "idle":
    time.sleep(0.001)
time.sleep(0.05)
"""

SCENARIOS = {
    # Python -> C -> Python -> C, crashing on a NULL read.
    "segv_callback": (signal.SIGSEGV, PARK + """
crashcatch.enable()
crashcatch.annotate("ticket", "CC-42")

class Handler:
    def on_event(self):
        return buggyext.segfault(2)

def main():
    return buggyext.call_back(Handler().on_event)

main()
"""),
    # abort() from C: the C library's own frames sit on top.
    "abort": (signal.SIGABRT, PARK + """
crashcatch.enable()

def shutdown():
    buggyext.sigabrt()

shutdown()
"""),
    # A live dump asked for by the program; it keeps running.
    "live_dump": (0, PARK + """
crashcatch.enable()

def report(reason):
    return crashcatch.write_minidump()

gen = (report(x) for x in ["checkpoint"])
next(gen)
print("still running")
"""),
}


def normalise(text, run_dir):
    text = text.replace(run_dir, "<run>")
    text = text.replace(os.path.join(REPO, "build", "matrix", GOLDEN_INTERPRETER), "<env>")
    text = text.replace(REPO, "<repo>")
    text = re.sub(r"crash_script\.py-\d+-[0-9T.Z]+\.dmp", "crash_script.py-<pid>-<time>.dmp", text)
    text = re.sub(r"\+0x[0-9a-f]+\)", "+0x…)", text)                     # module offsets (text)
    text = re.sub(r"\b0x[0-9a-f]{16}\b", "0x…", text)                   # addresses (text)
    text = re.sub(r"(Thread |thread: )\d+", r"\1<tid>", text)
    # How many glue frames a live dump's requesting thread has depends on where the dump
    # helper caught it (waiting on a pipe or still starting): the count is not golden.
    text = re.sub(r"\d+ interpreter frames? hidden", "<n> interpreter frames hidden", text)
    return text


def normalise_json(doc, run_dir):
    tids = {}
    for t in doc["threads"]:
        tids[t["tid"]] = len(tids)
        t["tid"] = f"<tid {tids[t['tid']]}>"
        # The two single-kind lists are the merged one split (test_symbolize checks that),
        # and the glue frames vary with timing (see normalise).
        del t["python_frames"], t["native_frames"]
        t["frames"] = [f for f in t["frames"] or [] if not f.get("plumbing")]
        for f in t["frames"]:
            if f["kind"] == "native":
                f["address"] = f["module_offset"] = "<…>"
    doc["event"]["thread"] = "<tid 0>" if doc["event"]["thread"] is not None else None
    return json.loads(normalise(json.dumps(doc, indent=1, sort_keys=True), run_dir))


def compare(name, actual):
    path = os.path.join(GOLDEN_DIR, name)
    if BLESS:
        os.makedirs(GOLDEN_DIR, exist_ok=True)
        with open(path, "w") as f:
            f.write(actual)
        return
    assert os.path.exists(path), f"{path} is missing: run tools/bless.sh"
    expected = open(path).read()
    assert actual == expected, f"{name} differs from the golden file; if intended, run tools/bless.sh\n{actual}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden_output(scenario):
    interp = next((i for i in INTERPRETERS if i.name == GOLDEN_INTERPRETER), None)
    if interp is None:
        pytest.skip(f"the golden files are made with {GOLDEN_INTERPRETER}, which is absent here")
    signo, code = SCENARIOS[scenario]
    r = run_script(interp, code)
    assert r.returncode == -signo if signo else r.returncode == 0, r.stderr
    assert len(r.dumps) == 1, r.stderr
    run_dir = os.path.dirname(os.path.dirname(r.dumps[0]))
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    text = interp.run([crashcatch, "symbolize", r.dumps[0]], timeout=120)
    assert text.returncode == 0, text.stderr
    doc = interp.run([crashcatch, "symbolize", r.dumps[0], "--json"], timeout=120)
    assert doc.returncode == 0, doc.stderr
    compare(f"{scenario}.txt", normalise(text.stdout, run_dir))
    compare(f"{scenario}.json", json.dumps(normalise_json(json.loads(doc.stdout), run_dir), indent=1, sort_keys=True) + "\n")
