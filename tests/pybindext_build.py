"""examples/pybindext for one interpreter of the matrix: pybind11's headers (from PyPI, in
the tools venv) copied into the interpreter's root, the module built by its own toolchain."""
import os
import shutil

# What the tests find in Interpreter.notes when the module could not be built.
NOTE = "pybindext: "


def build_pybindext(interp, base, examples, ext_dir):
    """Builds pybindext into `ext_dir` (paths inside the interpreter's root, `base` its test
    directory, `examples` its copy of examples/); a failure is noted in `interp.notes` for the
    tests that need the module, without taking the interpreter out of the matrix."""
    try:
        import pybind11
    except ImportError:
        interp.notes.append(NOTE + "pybind11 is not installed in the tools venv (tools/common.sh installs it)")
        return
    include = os.path.join(base, "pybind11-include")
    shutil.rmtree(interp.host_path(include), ignore_errors=True)
    shutil.copytree(pybind11.get_include(), interp.host_path(include))
    r = interp.run([interp.python, examples + "/build_pybindext.py", ext_dir, include])
    if r.returncode != 0:
        interp.notes.append(NOTE + f"cannot build it: {r.stderr.strip()[-800:]}")
