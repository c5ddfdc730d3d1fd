"""The committed layout table (pylayout/data/layouts.json) is what the generator derives
from every interpreter present: regenerate and compare."""
import os
import subprocess
import sys

from conftest import INTERPRETERS
from interpreters import REPO


def test_layout_table_matches_every_interpreter():
    specs = [f"{i.root}::{i.python}" if i.root else i.python for i in INTERPRETERS]
    assert specs, "no interpreter to check against"
    gen = os.path.join(REPO, "tools", "layouts", "gen_layouts.py")
    r = subprocess.run([sys.executable, gen, "--check", *specs], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "layouts.json matches" in r.stdout
