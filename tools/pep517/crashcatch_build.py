"""crashcatch's PEP 517 build backend: maturin, plus the two native programs.

maturin builds the extension (collector/) and packs collector/python/crashcatch; the package
also carries the dump helper (`crashcatch-dump`), the symbolizer (`crashcatch-symbolize`)
and the debugger commands (gdb-scripts/), and the wheel the `crashcatch` command (launcher/),
which maturin cannot build or bundle. So before maturin runs, this backend builds the three
programs with cargo and copies them, and the debugger commands, into the package directory
and the wheel's scripts directory (where maturin picks them up). The sdist is
the whole workspace (every crate, third_party/, the tests), so that `pip install` of it
builds the same complete package.

manylinux2014 wheels (glibc >= 2.17): set CRASHCATCH_MANYLINUX=2014 (or pass
`--config-settings crashcatch.manylinux=2014`); everything is then linked by zig
(`ziglang` and `cargo-zigbuild` from PyPI) against glibc 2.17's symbols, but for the dump
helper, which is linked statically (see STATIC). Without it the build is for this machine
only (tag linux_x86_64), as a plain `pip install .` wants.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import maturin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "collector", "python", "crashcatch")
PROGRAMS = ("crashcatch-dump", "crashcatch-symbolize")
CRATES = ("crashcatch-dumper", "crashcatch-symbolizer")
# The `crashcatch` command itself (launcher/): a native program in the wheel's .data/scripts/
# (maturin's `data` directory, pyproject.toml), which pip installs in the scripts directory.
LAUNCHER_CRATE, LAUNCHER = "crashcatch-launcher", "crashcatch"
SCRIPTS = os.path.join(ROOT, "build", "wheel-data", "scripts")
# maturin wants the data directory to exist for every hook, the metadata ones too.
os.makedirs(SCRIPTS, exist_ok=True)
# zig's linker writes no GNU build id unless asked (Debian's gcc asks GNU ld for one):
# dumps, debuggers and debuginfod identify modules by it.
BUILD_ID = ["-C", "link-arg=-Wl,--build-id=sha1"]
# Linked statically into the manylinux wheel (glibc's static libraries, `crt-static`): the
# dump helper. A crash waits for it, and without the dynamic loader and libgcc_s it starts
# ~0.35 ms sooner (issue 14). It uses nothing a static glibc cannot give (no NSS, no
# dlopen, no locale), and a static executable needs no glibc of the system's at all: any
# x86-64 Linux from 3.2 runs it. Not position-independent: a static PIE relocates itself
# at start-up (5,800 relocations, some 50 pages touched; 50 us of every crash). Built in
# its own target directory: its dependencies, built without zig, would otherwise replace
# zig's builds of them, and back.
STATIC = {"crashcatch-dump"}
STATIC_FLAGS = ["-C", "target-feature=+crt-static", "-C", "relocation-model=static"]
# Never in an sdist made without git (e.g. an sdist of an unpacked sdist).
_NOT_SOURCE = {".git", "target", "build", "_bin", "_debugger", "__pycache__", "dist"}

# maturin, cargo-zigbuild and zig (`python -m ziglang`) are found on PATH: the build
# environment's scripts come first even when it is not activated (`pip wheel
# --no-build-isolation` run by a venv's pip).
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

# maturin's own hooks where nothing needs building first; the build hooks below wrap maturin's.
get_requires_for_build_sdist = maturin.get_requires_for_build_sdist
prepare_metadata_for_build_wheel = maturin.prepare_metadata_for_build_wheel
get_requires_for_build_editable = maturin.get_requires_for_build_editable
prepare_metadata_for_build_editable = maturin.prepare_metadata_for_build_editable


def _manylinux(config_settings):
    value = (config_settings or {}).get("crashcatch.manylinux") or os.environ.get("CRASHCATCH_MANYLINUX", "")
    if value not in ("", "2014"):
        raise SystemExit(f"crashcatch: CRASHCATCH_MANYLINUX={value!r}: only 2014 (glibc 2.17) is supported")
    return value == "2014"


def get_requires_for_build_wheel(config_settings=None):
    extra = ["ziglang", "cargo-zigbuild"] if _manylinux(config_settings) else []
    return maturin.get_requires_for_build_wheel(config_settings) + extra


def _run(command, **kwargs):
    print("crashcatch build: " + " ".join(command), file=sys.stderr, flush=True)
    # stdout belongs to maturin's protocol (its last line names the wheel): cargo's goes to stderr.
    subprocess.run(command, check=True, cwd=ROOT, stdout=sys.stderr, **kwargs)


def _stage_package_files(manylinux):
    """Builds the two programs and copies them and the debugger commands into the package."""
    if manylinux:
        # One `rustc` run per program: the link argument goes to the program alone, so the
        # dependencies' builds are shared with the extension's.
        for crate, program in zip(CRATES + (LAUNCHER_CRATE,), PROGRAMS + (LAUNCHER,)):
            if program in STATIC:
                _run(["cargo", "rustc", "--release", "--target", "x86_64-unknown-linux-gnu",
                      "-p", crate, "--bin", program, "--", *STATIC_FLAGS],
                     env=dict(os.environ, CARGO_TARGET_DIR=_static_target_dir()))
            else:
                _run(["cargo-zigbuild", "rustc", "--release", "--target", "x86_64-unknown-linux-gnu.2.17",
                      "-p", crate, "--bin", program, "--", *BUILD_ID])
        built = os.path.join(_target_dir(), "x86_64-unknown-linux-gnu", "release")
    else:
        _run(["cargo", "build", "--release", *[arg for crate in CRATES + (LAUNCHER_CRATE,) for arg in ("-p", crate)]])
        built = os.path.join(_target_dir(), "release")
    bin_dir = os.path.join(PACKAGE, "_bin")
    for directory, program in [(bin_dir, p) for p in PROGRAMS] + [(SCRIPTS, LAUNCHER)]:
        os.makedirs(directory, exist_ok=True)
        copy = os.path.join(directory, program)
        source = built
        if manylinux and program in STATIC:
            source = os.path.join(_static_target_dir(), "x86_64-unknown-linux-gnu", "release")
        shutil.copy2(os.path.join(source, program), copy)
        # The release profile keeps symbols for our own frames in C stacks; the wheel's copies
        # need none (the dump helper's frames are never reported).
        if shutil.which("strip"):
            _run(["strip", copy])
        os.chmod(copy, 0o755)
    # gdb-scripts/ is the one copy of the debugger commands in git.
    debugger = os.path.join(PACKAGE, "_debugger")
    shutil.rmtree(debugger, ignore_errors=True)
    os.makedirs(debugger)
    scripts = os.path.join(ROOT, "gdb-scripts")
    for name in sorted(os.listdir(scripts)):
        if name.endswith(".py") or name == "README.md":
            shutil.copy2(os.path.join(scripts, name), debugger)


def _target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")


def _static_target_dir():
    return os.path.join(_target_dir(), "static")


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    manylinux = _manylinux(config_settings)
    _stage_package_files(manylinux)
    if manylinux:
        settings = dict(config_settings or {})
        settings["maturin.build-args"] = maturin.get_maturin_pep517_args(config_settings) + [
            "--zig", "--compatibility", "manylinux2014", "--target", "x86_64-unknown-linux-gnu", "--", *BUILD_ID]
        config_settings = settings
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """`pip install -e .`: the Python files stay in the source tree, the two programs and
    the debugger commands are put next to them there (built for this machine)."""
    _stage_package_files(False)
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)


def _source_files():
    """The files of the source tree, relative to ROOT: git's list (tracked and new files,
    not ignored ones) in a checkout, else every file but build products."""
    if os.path.isdir(os.path.join(ROOT, ".git")) or os.path.isfile(os.path.join(ROOT, ".git")):
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout
        names = [n.decode() for n in listed.split(b"\0") if n]
        return sorted(n for n in names if os.path.isfile(os.path.join(ROOT, n)))
    found = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in _NOT_SOURCE and not d.startswith(".venv")]
        found += [os.path.relpath(os.path.join(top, f), ROOT) for f in files
                  if not f.endswith((".so", ".o", ".pyc", ".dmp"))]
    return sorted(n for n in found if n != "PKG-INFO")


def _pkg_info(config_settings):
    """The core metadata, as maturin writes it for the wheel (PKG-INFO has the same fields)."""
    with tempfile.TemporaryDirectory() as tmp:
        dist_info = maturin.prepare_metadata_for_build_wheel(tmp, config_settings)
        with open(os.path.join(tmp, dist_info, "METADATA"), "rb") as f:
            metadata = f.read()
    name = version = None
    for line in metadata.decode().splitlines():
        if line.startswith("Name: "):
            name = line[len("Name: "):].strip()
        elif line.startswith("Version: "):
            version = line[len("Version: "):].strip()
        elif not line:
            break
    return metadata, name, version


def build_sdist(sdist_directory, config_settings=None):
    metadata, name, version = _pkg_info(config_settings)
    base = f"{name}-{version}"
    archive = os.path.join(sdist_directory, base + ".tar.gz")
    with open(archive, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in _source_files():
            tar.add(os.path.join(ROOT, rel), arcname=f"{base}/{rel}", recursive=False)
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size, info.mode = len(metadata), 0o644
        tar.addfile(info, io.BytesIO(metadata))
    return os.path.basename(archive)
