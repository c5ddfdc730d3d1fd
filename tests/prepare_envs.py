"""Set up every interpreter of the matrix for the tests, once per run:
a venv with the crashcatch wheel (built once, installed everywhere), buggyext built for it,
a scratch directory and the location of its own test_faulthandler.py.

    python tests/prepare_envs.py WHEEL
Writes build/envs.json, which tests/conftest.py reads.
"""
import glob
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interpreters import BUILD, REPO, discover, save_prepared  # noqa: E402
from pybindext_build import build_pybindext  # noqa: E402

SHIM = os.path.join(REPO, "tests", "faulthandler_shim")
# What the pytest plugin's tests run inside each venv.
TEST_PACKAGES = ("pytest", "pytest-xdist")
# Their dependencies on older Pythons (exceptiongroup, tomli and typing-extensions below
# 3.11 / 3.13): `pip download --python-version` judges markers by the running Python, so
# they are asked for by name and each venv's pip picks what it needs from the wheelhouse.
WHEELHOUSE_EXTRAS = ("exceptiongroup", "tomli", "typing-extensions")
# What the tests find in Interpreter.notes when they could not be installed.
PYTEST_NOTE = "pytest: "


def inner_base(interp):
    """Where this interpreter's test files live, inside its root."""
    return "/opt/crashcatch-test" if interp.root else os.path.join(BUILD, "matrix")


def install_test_packages(interp, venv, base):
    """pytest and pytest-xdist in the venv, from wheels the tools venv's pip fetches for this
    Python version (a chroot has no network of its own); a failure is noted in
    `interp.notes` for the tests that need them."""
    version = "%d.%d" % interp.version[:2]
    wheels = os.path.join(BUILD, "wheelhouse", version)
    if not glob.glob(os.path.join(wheels, "pytest-*.whl")):
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                            "--only-binary=:all:", "--python-version", version, "-d", wheels,
                            *TEST_PACKAGES, *WHEELHOUSE_EXTRAS], capture_output=True, text=True)
        if r.returncode != 0:
            interp.notes.append(PYTEST_NOTE + f"cannot download it: {r.stderr.strip()[-500:]}")
            return
    inner = os.path.join(base, "wheelhouse")
    shutil.rmtree(interp.host_path(inner), ignore_errors=True)
    shutil.copytree(wheels, interp.host_path(inner))
    r = interp.run([venv + "/bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--no-index", "--find-links", inner, *TEST_PACKAGES])
    if r.returncode != 0:
        interp.notes.append(PYTEST_NOTE + f"cannot install it: {r.stderr.strip()[-500:]}")


def prepare(interp, wheel):
    base = os.path.join(inner_base(interp), interp.name)
    host_base = interp.host_path(base)
    if interp.root:
        proc = os.path.join(interp.root, "proc")
        if not os.path.ismount(proc):
            subprocess.run(["mount", "-t", "proc", "proc", proc], check=True)
        # lldb launches programs on a pseudo-terminal: the host's /dev/pts, seen inside.
        pts = os.path.join(interp.root, "dev", "pts")
        if os.path.isdir(pts) and not os.path.ismount(pts):
            subprocess.run(["mount", "--bind", "/dev/pts", pts], check=True)
    os.makedirs(host_base, exist_ok=True)
    venv = os.path.join(base, "venv")
    if not os.path.exists(interp.host_path(venv + "/bin/python")):
        r = interp.run([interp.python, "-m", "venv", venv])
        if r.returncode != 0:
            return f"cannot create a venv: {r.stderr.strip()[-300:]}"
    # The same wheel for every interpreter (abi3).
    inner_wheel = os.path.join(base, os.path.basename(wheel))
    shutil.copy(wheel, interp.host_path(inner_wheel))
    r = interp.run([venv + "/bin/python", "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--force-reinstall", inner_wheel])
    if r.returncode != 0:
        return f"cannot install the wheel: {r.stderr.strip()[-500:]}"
    install_test_packages(interp, venv, base)
    # The test_faulthandler adapter: a shim activated by CRASHCATCH_AS_FAULTHANDLER=1.
    site = interp.run([venv + "/bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    site_dir = site.stdout.strip()
    shutil.copy(os.path.join(SHIM, "crashcatch_fh_shim.py"), interp.host_path(site_dir))
    with open(interp.host_path(os.path.join(site_dir, "crashcatch_fh_shim.pth")), "w") as f:
        f.write("import crashcatch_fh_shim\n")
    # buggyext, compiled against this interpreter's headers by its own toolchain.
    src = os.path.join(base, "examples")
    shutil.rmtree(interp.host_path(src), ignore_errors=True)
    shutil.copytree(os.path.join(REPO, "examples"), interp.host_path(src),
                    ignore=shutil.ignore_patterns("build", "__pycache__"))
    ext_dir = os.path.join(base, "ext")
    r = interp.run([venv + "/bin/python", src + "/build_ext.py", ext_dir])
    if r.returncode != 0:
        return f"cannot build buggyext: {r.stderr.strip()[-500:]}"
    build_pybindext(interp, base, src, ext_dir)
    # The test-only allocation/lock watcher (LD_PRELOAD), built by the same toolchain.
    noalloc_src = os.path.join(base, "noalloc.c")
    shutil.copy(os.path.join(REPO, "tests", "noalloc", "noalloc.c"), interp.host_path(noalloc_src))
    r = interp.run(["gcc", "-shared", "-fPIC", "-O1", "-o", ext_dir + "/noalloc.so", noalloc_src, "-ldl"])
    if r.returncode != 0:
        return f"cannot build noalloc.so: {r.stderr.strip()[-500:]}"
    interp.venv_python = venv + "/bin/python"
    interp.ext_dir = ext_dir
    interp.work_dir = os.path.join(base, "work")
    os.makedirs(interp.host_path(interp.work_dir), exist_ok=True)
    test_dir = interp.run([interp.python, "-c", "import os, test; print(os.path.dirname(test.__file__))"])
    if test_dir.returncode == 0 and os.path.exists(interp.host_path(test_dir.stdout.strip() + "/test_faulthandler.py")):
        interp.test_dir = test_dir.stdout.strip()
    return None


def main():
    wheel = os.path.abspath(sys.argv[1])
    found, missing = discover()
    ready = []
    for interp in found:
        why = prepare(interp, wheel)
        if why:
            missing.append((interp.name, why))
        else:
            ready.append(interp)
        print(f"  {interp.name:16} {'ready' if not why else 'SKIPPED: ' + why}")
    for name, why in missing:
        if not any(name == i.name for i in found):
            print(f"  {name:16} SKIPPED: {why}")
    save_prepared(ready, missing)


if __name__ == "__main__":
    main()
