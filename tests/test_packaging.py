"""Packaging: the wheel of the project's build command is manylinux2014 and complete; the
sdist carries the whole workspace; `pip install` of the repository root, of the sdist and of
the wheel into fresh venvs, `pip install --user` and `pip install -e` give a package that
writes a dump and a native `crashcatch` command that symbolizes it and runs the commands
Python runs; `pip uninstall` removes that command.

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
# The `crashcatch` command (launcher/), which pip installs in the scripts directory.
COMMAND = re.compile(r"crashcatch-[^/]+\.data/scripts/crashcatch$")


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
        command = [n for n in names if COMMAND.match(n)]
        assert len(command) == 1 and (z.getinfo(command[0]).external_attr >> 16) & 0o111, names
        assert {"crashcatch/_debugger/crashcatch_gdb.py", "crashcatch/_debugger/crashcatch_lldb.py"} <= set(names)
        # At the top of site-packages: CRASHCATCH=1's .pth line.
        assert "crashcatch-autoenable.pth" in names, names
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        lines = [line.replace(" ", "") for line in entry_points.splitlines()]
        # No console script: it would be a second `crashcatch` in the scripts directory.
        assert "[console_scripts]" not in lines, entry_points
        assert lines.index("crashcatch=crashcatch.pytest_plugin") > lines.index("[pytest11]"), entry_points
        elves = [n for n in names if n.endswith(".so") or n in PROGRAMS or n in command]
        assert len(elves) == 4, elves
        assert any(n.startswith("crashcatch/_native") for n in elves), names
        z.extractall(tmp_path, elves)
    # Independently of auditwheel: no versioned glibc symbol newer than 2.17 in any ELF file;
    # the dump helper needs no shared library at all (linked statically: a crash waits for
    # it, and it starts sooner without the dynamic loader).
    for name in elves:
        dynamic = subprocess.run(["objdump", "-T", str(tmp_path / name)], capture_output=True, text=True)
        versions = {tuple(map(int, v)) for v in re.findall(r"GLIBC_(\d+)\.(\d+)", dynamic.stdout)}
        needed = subprocess.run(["readelf", "-d", str(tmp_path / name)], capture_output=True, text=True, check=True)
        if name == "crashcatch/_bin/crashcatch-dump":
            assert not versions and "(NEEDED)" not in needed.stdout, (name, needed.stdout)
        else:
            assert versions and max(versions) <= (2, 17), (name, sorted(versions))
            assert "(NEEDED)" in needed.stdout, needed.stdout
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


def fresh_venv_install(interp, tmp_path, *source):
    """A new venv of `interp` with `pip install SOURCE` (built with pip's build isolation, as
    a user's would be); returns the venv's bin directory."""
    venv = tmp_path / "venv"
    subprocess.run([interp.python, "-m", "venv", str(venv)], check=True, capture_output=True)
    pip_install(venv / "bin" / "python", *source)
    return venv / "bin"


def pip_install(python, *args, env=None):
    env = {k: v for k, v in (env or os.environ).items() if not k.startswith(("CRASHCATCH", "MATURIN"))}
    # Crates already compiled for this machine are reused; the build itself is pip's.
    env["CARGO_TARGET_DIR"] = os.path.join(REPO, "target")
    r = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *args],
                       capture_output=True, text=True, env=env, timeout=2400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(60)  # @sleep\n"


def check_installed(interp, bin_dir, tmp_path, python=None, env=None):
    """The installed package writes a dump of a crash in buggyext; its `crashcatch` is a
    native program that symbolizes it (the script's frame and buggyext's crashing function),
    lists it, prints its help and completions, and runs the commands Python runs (`dump`
    of a sleeping process, `debugger-scripts`) with `python`, by default the venv's."""
    python = python or str(bin_dir / "python")
    env = env or dict(os.environ)
    command = str(bin_dir / "crashcatch")
    with open(command, "rb") as f:
        assert f.read(4) == b"\x7fELF", f"{command} is not a native program"
    script, dumps = tmp_path / "crash.py", tmp_path / "dumps"
    script.write_text(CRASH.lstrip())
    r = subprocess.run([python, str(script), str(dumps)], capture_output=True, text=True,
                       env={**env, "PYTHONPATH": interp.ext_dir}, timeout=120)
    assert r.returncode == -signal.SIGSEGV, r.stderr
    written = sorted(dumps.glob("*.dmp"))
    assert len(written) == 1 and f"minidump written to {written[0]}" in r.stderr, r.stderr
    out = subprocess.run([command, "symbolize", "--json", str(written[0])],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    crashed = json.loads(out.stdout)["threads"][0]
    assert (crashed["python_frames"][0]["function"], crashed["python_frames"][0]["line"]) == \
        ("crash_here", script_line(CRASH, "crash")), crashed["python_frames"]
    assert crashed["native_frames"][0]["function"] == "deref_null", crashed["native_frames"][:3]
    listed = subprocess.run([command, "list", str(dumps)], capture_output=True, text=True, env=env)
    assert listed.returncode == 0 and written[0].name in listed.stdout and "crash_here" in listed.stdout, listed
    for args, expected in ((["--help"], "symbolize"), (["completion", "bash"], "complete -F")):
        shown = subprocess.run([command, *args], capture_output=True, text=True, env=env)
        assert shown.returncode == 0 and expected in shown.stdout, (args, shown)
    scripts = subprocess.run([command, "debugger-scripts"], capture_output=True, text=True, env=env)
    assert scripts.returncode == 0 and os.path.isfile(scripts.stdout.strip()), scripts
    sleeper = subprocess.Popen([python, "-c", SLEEPER], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert sleeper.stdout.readline() == "ready\n"
        live = tmp_path / "live.dmp"
        dumped = subprocess.run([command, "dump", str(sleeper.pid), "-o", str(live)], capture_output=True,
                                text=True, env=env, timeout=120)
        assert dumped.returncode == 0 and live.is_file(), dumped
        out = subprocess.run([command, "symbolize", str(live)], capture_output=True, text=True, env=env)
        assert out.returncode == 0 and f"line {script_line(SLEEPER, 'sleep')}" in out.stdout, out
    finally:
        sleeper.kill()
        sleeper.wait()


needs_pyenv = pytest.mark.skipif(not HOST_PYENV, reason="no pyenv interpreter on the host")


@needs_pyenv
@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_install_from_the_wheel(which, tmp_path):
    interp = OLDEST if which == "oldest" else NEWEST
    bin_dir = fresh_venv_install(interp, tmp_path, the_wheel())
    check_installed(interp, bin_dir, tmp_path)
    # pip's RECORD has the command: uninstalling removes it.
    r = subprocess.run([str(bin_dir / "python"), "-m", "pip", "uninstall", "-y", "crashcatch"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (bin_dir / "crashcatch").exists() and not (bin_dir / "crashcatch").is_symlink()


@needs_pyenv
def test_user_install_from_the_wheel(tmp_path):
    """`pip install --user` (PYTHONUSERBASE in a temporary directory): the command in
    USERBASE/bin finds the package in USERBASE/lib/python3.X/site-packages, and runs the
    Python-front commands with python3.X from PATH."""
    env = dict(os.environ, PYTHONUSERBASE=str(tmp_path / "userbase"),
               PATH=os.path.dirname(OLDEST.python) + os.pathsep + os.environ.get("PATH", ""))
    pip_install(OLDEST.python, "--user", the_wheel(), env=env)
    check_installed(OLDEST, tmp_path / "userbase" / "bin", tmp_path, python=OLDEST.python, env=env)


@needs_pyenv
def test_install_from_the_repository_root(tmp_path):
    check_installed(NEWEST, fresh_venv_install(NEWEST, tmp_path, REPO), tmp_path)


@needs_pyenv
def test_editable_install(tmp_path):
    """`pip install -e .`: the command finds the package in the source tree through the
    install's crashcatch.pth."""
    check_installed(NEWEST, fresh_venv_install(NEWEST, tmp_path, "-e", REPO), tmp_path)


@needs_pyenv
def test_install_from_the_sdist(sdist, tmp_path):
    check_installed(OLDEST, fresh_venv_install(OLDEST, tmp_path, sdist), tmp_path)
