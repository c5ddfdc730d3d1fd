"""Build examples/buggyext for the Python running this script.

    python examples/build_ext.py OUTDIR

Compiles with the system C compiler, -g for DWARF and -fomit-frame-pointer so the
crashcatch unwinder must use CFI. Prints the path of the built module."""
import os
import subprocess
import sys
import sysconfig

here = os.path.dirname(os.path.abspath(__file__))
out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "build")
os.makedirs(out_dir, exist_ok=True)
suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
target = os.path.join(out_dir, "buggyext" + suffix)
cmd = [
    os.environ.get("CC", "cc"), "-shared", "-fPIC", "-g", "-O1", "-fomit-frame-pointer",
    "-fno-optimize-sibling-calls", "-I", sysconfig.get_paths()["include"],
    os.path.join(here, "buggyext", "buggyext.c"), "-o", target, "-lpthread",
]
subprocess.run(cmd, check=True)
print(target)
