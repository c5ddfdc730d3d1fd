"""Packaging: the wheel of the project's build command is manylinux2014 and complete; the
sdist carries the whole workspace; `pip install` of the repository root, of the sdist and of
the wheel into fresh venvs gives a package that writes a dump and symbolizes it.

Builds from source need cargo, which only the host has: these tests use the host's pyenv
interpreters (the oldest and the newest), not the chroot ones. They are slow (a build each),
so they are few and share the target directory (only the workspace crates rebuild)."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import INTERPRETERS
from crashlib import script_line
from interpreters import BUILD, REPO

TOOLS_BIN = os.path.dirname(sys.executable)
HOST_PYENV = [i for i in INTERPRETERS if i.name.startswith("pyenv-") and not i.root]
OLDEST, NEWEST = (HOST_PYENV[0], HOST_PYENV[-1]) if HOST_PYENV else (None, None)
PROGRAMS = ("crashcatch/_bin/crashcatch-dump", "crashcatch/_bin/crashcatch-symbolize")


def the_wheel():
    wheels = glob.glob(os.path.join(BUILD, "wheels", "crashcatch-*.whl"))
    assert len(wheels) == 1, f"expected the one wheel tools/test.sh builds in build/wheels: {wheels}"
    return wheels[0]


def test_wheel_is_manylinux2014_and_complete(tmp_path):
    wheel = the_wheel()
    assert "manylinux_2_17_x86_64" in os.path.basename(wheel) or "manylinux2014_x86_64" in wheel, wheel
    shown = subprocess.run([os.path.join(TOOLS_BIN, "auditwheel"), "show", wheel], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r'consistent with the following platform tag:\s+"manylinux_2_17_x86_64"', shown.stdout), shown.stdout
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        for program in PROGRAMS:
            assert program in names, names
            # Executable in the wheel (the mode travels in the zip entry).
            assert (z.getinfo(program).external_attr >> 16) & 0o111, program
        assert {"crashcatch/_debugger/crashcatch_gdb.py", "crashcatch/_debugger/crashcatch_lldb.py"} <= set(names)
        # At the top of site-packages: CRASHCATCH=1's .pth line and the console script's launcher.
        assert {"crashcatch-autoenable.pth", "crashcatch_launcher.py"} <= set(names), names
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        lines = [line.replace(" ", "") for line in entry_points.splitlines()]
        assert lines.index("crashcatch=crashcatch_launcher:main") > lines.index("[console_scripts]"), entry_points
        assert lines.index("crashcatch=crashcatch.pytest_plugin") > lines.index("[pytest11]"), entry_points
        elves = [n for n in names if n.endswith(".so") or n in PROGRAMS]
        assert any(n.startswith("crashcatch/_native") for n in elves), names
        z.extractall(tmp_path, elves)
    # Independently of auditwheel: no versioned glibc symbol newer than 2.17 in any ELF file.
    for name in elves:
        dynamic = subprocess.run(["objdump", "-T", str(tmp_path / name)], capture_output=True, text=True, check=True)
        versions = {tuple(map(int, v)) for v in re.findall(r"GLIBC_(\d+)\.(\d+)", dynamic.stdout)}
        assert versions and max(versions) <= (2, 17), (name, sorted(versions))
        # A GNU build id, as every module a dump names should have (dumps, gdb, debuginfod).
        notes = subprocess.run(["readelf", "-n", str(tmp_path / name)], capture_output=True, text=True, check=True)
        assert re.search(r"Build ID: [0-9a-f]{40}", notes.stdout), (name, notes.stdout)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    out = tmp_path_factory.mktemp("sdist")
    r = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), REPO],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    made = glob.glob(str(out / "crashcatch-*.tar.gz"))
    assert len(made) == 1, made
    return made[0]


def test_sdist_carries_the_whole_workspace(sdist):
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    missing = [n for n in tracked if os.path.exists(os.path.join(REPO, n)) and n not in names]
    assert not missing, missing
    assert "PKG-INFO" in names
    assert not [n for n in names if n.startswith(("target/", "build/")) or "/_bin/" in n], names


CRASH = """
import crashcatch, sys, buggyext
crashcatch.enable(dump_dir=sys.argv[1])

def crash_here():
    buggyext.segfault(1)  # @crash

crash_here()
"""


def fresh_venv_install(interp, tmp_path, source):
    """A new venv of `interp` with `pip install SOURCE` (built with pip's build isolation, as
    a user's would be); returns the venv's bin directory."""
    venv = tmp_path / "venv"
    subprocess.run([interp.python, "-m", "venv", str(venv)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRASHCATCH", "MATURIN"))}
    # Crates already compiled for this machine are reused; the build itself is pip's.
    env["CARGO_TARGET_DIR"] = os.path.join(REPO, "target")
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", source],
                       capture_output=True, text=True, env=env, timeout=2400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return venv / "bin"


def check_installed(interp, bin_dir, tmp_path):
    """The installed package writes a dump of a crash in buggyext, and its `crashcatch`
    symbolizes it: the script's frame and buggyext's crashing function."""
    script, dumps = tmp_path / "crash.py", tmp_path / "dumps"
    script.write_text(CRASH.lstrip())
    env = {**os.environ, "PYTHONPATH": interp.ext_dir}
    r = subprocess.run([str(bin_dir / "python"), str(script), str(dumps)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    written = sorted(dumps.glob("*.dmp"))
    assert len(written) == 1 and f"minidump written to {written[0]}" in r.stderr, r.stderr
    out = subprocess.run([str(bin_dir / "crashcatch"), "symbolize", "--json", str(written[0])],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    crashed = json.loads(out.stdout)["threads"][0]
    assert (crashed["python_frames"][0]["function"], crashed["python_frames"][0]["line"]) == \
        ("crash_here", script_line(CRASH, "crash")), crashed["python_frames"]
    assert crashed["native_frames"][0]["function"] == "deref_null", crashed["native_frames"][:3]
    scripts = subprocess.run([str(bin_dir / "crashcatch"), "debugger-scripts"], capture_output=True, text=True)
    assert scripts.returncode == 0 and os.path.isfile(scripts.stdout.strip()), scripts


needs_pyenv = pytest.mark.skipif(not HOST_PYENV, reason="no pyenv interpreter on the host")


@needs_pyenv
@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_install_from_the_wheel(which, tmp_path):
    interp = OLDEST if which == "oldest" else NEWEST
    check_installed(interp, fresh_venv_install(interp, tmp_path, the_wheel()), tmp_path)


@needs_pyenv
def test_install_from_the_repository_root(tmp_path):
    check_installed(NEWEST, fresh_venv_install(NEWEST, tmp_path, REPO), tmp_path)


@needs_pyenv
def test_install_from_the_sdist(sdist, tmp_path):
    check_installed(OLDEST, fresh_venv_install(OLDEST, tmp_path, sdist), tmp_path)
