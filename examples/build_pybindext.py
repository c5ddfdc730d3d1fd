"""Build examples/pybindext (a pybind11 module that crashes under pybind11's dispatch
lambda) for the Python running this script.

    python examples/build_pybindext.py OUTDIR [PYBIND11_INCLUDE]

PYBIND11_INCLUDE defaults to the headers of the pybind11 package (`pip install pybind11`).
Compiles with the system C++ compiler at -O2 -g, so the bound lambda and the helpers it
calls are inlined into pybind11's dispatch lambda and DWARF describes them. Prints the path
of the built module."""
import os
import subprocess
import sys
import sysconfig

here = os.path.dirname(os.path.abspath(__file__))
out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "build")
if len(sys.argv) > 2:
    pybind11_include = sys.argv[2]
else:
    import pybind11
    pybind11_include = pybind11.get_include()
os.makedirs(out_dir, exist_ok=True)
suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
target = os.path.join(out_dir, "pybindext" + suffix)
cmd = [
    os.environ.get("CXX", "c++"), "-shared", "-fPIC", "-std=c++17", "-g", "-O2", "-fvisibility=hidden",
    "-I", pybind11_include, "-I", sysconfig.get_paths()["include"],
    os.path.join(here, "pybindext", "pybindext.cpp"), "-o", target,
]
subprocess.run(cmd, check=True)
print(target)
