"""The interpreter matrix the tests run on, and how to run a command with each.

Interpreters: the pyenv builds 3.9+ (full DWARF, shared libpython), Debian's stripped static
/usr/bin/python3.11, and the stripped 3.13/3.14/3.15 of a Debian sid chroot (made by
tools/setup-sid-chroot.sh). An interpreter that cannot be had is reported with the reason.
"""
from __future__ import annotations

import glob
import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(REPO, "build")
SID_ROOT = os.environ.get("CRASHCATCH_SID_ROOT", os.path.expanduser("~/.cache/crashcatch-test/sid"))
SID_VERSIONS = ("3.13", "3.14", "3.15")
ENVS_FILE = os.path.join(BUILD, "envs.json")


@dataclass
class Interpreter:
    name: str          # e.g. "pyenv-3.12.1", "debian-3.11", "sid-3.14"
    python: str        # base interpreter, as seen inside `root`
    root: str = ""     # chroot directory, "" for the host
    version: tuple = ()
    # Filled in by prepare_envs.py:
    venv_python: str = ""   # inside root
    ext_dir: str = ""       # inside root: where buggyext is built
    work_dir: str = ""      # inside root: scratch space for test scripts
    test_dir: str = ""      # inside root: the interpreter's own Lib/test, if present
    notes: list = field(default_factory=list)

    @property
    def minor(self) -> int:
        return self.version[1]

    def host_path(self, inner: str) -> str:
        """Host path of a path inside this interpreter's root."""
        return self.root + inner if self.root else inner

    def command(self, argv, cwd=None):
        """argv to run a command in this interpreter's world (chroot if needed)."""
        argv = list(argv)
        if cwd:
            argv = ["env", "-C", cwd] + argv
        return (["chroot", self.root] + argv) if self.root else argv

    def run(self, argv, cwd=None, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 300)
        return subprocess.run(self.command(argv, cwd), **kw)


def discover():
    """(available interpreters, [(name, reason)] for the ones that cannot be had)."""
    found, missing = [], []
    pyenv = sorted(glob.glob("/root/.pyenv/versions/3.*"), key=lambda d: [int(x) if x.isdigit() else 0 for x in os.path.basename(d).split(".")])
    for d in pyenv:
        m = re.match(r"3\.(\d+)\.(\d+)$", os.path.basename(d))
        if not m or int(m.group(1)) < 9:
            continue
        minor = int(m.group(1))
        found.append(Interpreter(f"pyenv-3.{minor}.{m.group(2)}", f"{d}/bin/python3.{minor}",
                                 version=(3, minor, int(m.group(2)))))
    for minor in range(9, 14):
        if not any(i.version[:2] == (3, minor) for i in found):
            missing.append((f"pyenv-3.{minor}", "no /root/.pyenv/versions/3.%d.* build" % minor))
    if os.path.exists("/usr/bin/python3.11"):
        found.append(Interpreter("debian-3.11", "/usr/bin/python3.11", version=(3, 11, 0)))
    else:
        missing.append(("debian-3.11", "/usr/bin/python3.11 is not installed"))
    ready = os.path.exists(os.path.join(SID_ROOT, ".crashcatch-ready"))
    for v in SID_VERSIONS:
        if ready and os.path.exists(os.path.join(SID_ROOT, "usr/bin/python" + v)):
            found.append(Interpreter(f"sid-{v}", f"/usr/bin/python{v}", root=SID_ROOT,
                                     version=(3, int(v.split(".")[1]), 0)))
        else:
            why = "sid chroot not built" if not ready else f"python{v} missing in the sid chroot"
            missing.append((f"sid-{v}", f"{why} ({SID_ROOT}); run tools/setup-sid-chroot.sh"))
    return found, missing


def load_prepared():
    """The interpreters prepare_envs.py set up, and the missing ones with reasons."""
    with open(ENVS_FILE) as f:
        data = json.load(f)
    interps = [Interpreter(**{**d, "version": tuple(d["version"])}) for d in data["interpreters"]]
    return interps, [tuple(m) for m in data["missing"]]


def save_prepared(interps, missing):
    os.makedirs(BUILD, exist_ok=True)
    with open(ENVS_FILE, "w") as f:
        json.dump({"interpreters": [asdict(i) for i in interps], "missing": missing}, f, indent=1)
