"""Frame locals, globals and builtins of a live, stopped process decoded by pylayout's
objects and locals modules (what py-locals / py-print show), on every interpreter.

A script holding known locals writes their repr() (its own truth) and the addresses it can
learn itself (its thread state, `_PyRuntime`, the builtin types), then stops itself with
SIGSTOP; `dumpcheck --py-locals` reads its memory through /proc/PID/mem, walks to the frame
and decodes every local. Values the decoder deliberately cuts (a long list, a deep nesting)
are expected as the script's reprs of their parts with the cut marks."""
import json
import os
import signal
import subprocess

from crashlib import prepare_script
from interpreters import REPO

DUMPCHECK = os.path.join(REPO, "target", "release", "dumpcheck")

SCRIPT = r'''
import ctypes, json, os, signal

GLOBAL_VALUE = {"g": [1, 2.5], "h": "global"}


class Thing:
    pass


def stop_here(found, cut, code):
    truth = {}
    for name, value in found.items():
        kind = "cell" if name in code.co_cellvars else "free" if name in code.co_freevars else "local"
        truth[name] = {"repr": cut.get(name, repr(value)), "kind": kind}
    # Names of the code object that have no value yet are unbound (repr None).
    for names, kind in ((code.co_varnames, "local"), (code.co_cellvars, "cell"), (code.co_freevars, "free")):
        for name in names:
            truth.setdefault(name, {"repr": None, "kind": kind})
    api = ctypes.pythonapi
    api.PyThreadState_Get.restype = ctypes.c_void_p
    try:
        runtime = ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime"))
    except ValueError:
        runtime = 0
    types = {"none": None, "bool_": bool, "int": int, "float": float, "str_": str, "bytes": bytes,
             "tuple": tuple, "list": list, "dict": dict, "set": set, "frozenset": frozenset}
    info = {
        "minor": __import__("sys").version_info[1],
        "tstate": api.PyThreadState_Get(),
        "runtime": runtime,
        "types": {k: id(v) for k, v in types.items()},
        "function": "target",
        "globals": ["GLOBAL_VALUE", "len", "Thing", "no_such_name"],
    }
    globals_truth = {
        "GLOBAL_VALUE": repr(GLOBAL_VALUE),
        "len": "<builtin_function_or_method object at %#x>" % id(len),
        "Thing": "<type object at %#x>" % id(Thing),
        "no_such_name": None,
    }
    with open(os.environ["FILE_truth"], "w") as f:
        json.dump({"locals": truth, "globals": globals_truth}, f)
    with open(os.environ["FILE_info"], "w") as f:
        json.dump(info, f)
    os.kill(os.getpid(), signal.SIGSTOP)


def outer():
    captured_free = "from outer"

    def target(arg_cell, arg_plain):
        small = 42
        negative = -7
        zero = 0
        big = 3 ** 100
        big_negative = -(2 ** 200)
        ratio = 0.1
        huge_float = -1.5e300
        yes = True
        no = False
        nothing = None
        text = "h\u00e9llo \u03a9 \u65e5\u672c \U0001f600 it's"
        escapes = "tab\there\nnull\x00 back\\slash \u200b \x7f \"q\""
        data = b"\x00bin'\xff"
        items = [1, "two", 3.0, None]
        pair = (1, "x")
        single = (5,)
        nested = {"a": {"b": [1, 2]}, "c": (3,), 4: None}
        numbers = {3, 1, 2}
        frozen = frozenset({"f"})
        empty_set = set()
        deep = [[[[[1]]]]]
        long = list(range(100))
        thing = Thing()
        squares = [x * x for x in range(3)]  # x: a hidden local of 3.12+, unbound here
        cell_var = ["captured"]

        def inner():
            return cell_var, arg_cell, captured_free

        cut = {
            "deep": "[[[...]]]",
            "long": "[" + ", ".join(repr(i) for i in range(32)) + ", ...(68 more)]",
            "thing": "<Thing object at %#x>" % id(thing),
            "inner": "<function object at %#x>" % id(inner),
            "target": "<function object at %#x>" % id(target),
        }
        stop_here(locals(), cut, target.__code__)
        not_yet = 1
        return inner, not_yet

    return target("arg in a cell", "plain arg")


outer()
'''


def stopped_locals(interp):
    """Runs SCRIPT until it stops itself; (dumpcheck's JSON, the script's truth)."""
    p = prepare_script(interp, SCRIPT, files=("info", "truth"))
    err_path = os.path.join(p.host_dir(interp), "stderr")
    with open(err_path, "w") as err:
        proc = subprocess.Popen(interp.command(p.argv, cwd=p.cwd), env=p.env,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        _, status = os.waitpid(proc.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), f"the script ended without stopping: {open(err_path).read()}"
        out = subprocess.run([DUMPCHECK, "--py-locals", str(proc.pid), interp.host_path(p.cwd + "/info")],
                             capture_output=True, text=True, timeout=120)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert out.returncode == 0, out.stderr
    truth = json.load(open(interp.host_path(p.cwd + "/truth")))
    return json.loads(out.stdout), truth


def test_frame_locals_match_the_scripts_reprs(interp):
    got, truth = stopped_locals(interp)
    names = [local["name"] for local in got["locals"]]
    assert len(names) == len(set(names)), f"a local shown twice: {names}"
    by_name = {local["name"]: local for local in got["locals"]}
    for name, expected in truth["locals"].items():
        # An unbound comprehension variable (3.12+ "hidden" local) may be left out.
        if expected["repr"] is None and name not in by_name and name != "not_yet":
            continue
        local = by_name.get(name)
        assert local, f"{name} not shown: {names}"
        assert (local["repr"], local["kind"]) == (expected["repr"], expected["kind"]), name
    assert set(names) <= set(truth["locals"])
    assert got["globals"] == truth["globals"]
    if interp.minor >= 13:
        # The runtime's own debug offsets were found and used (not an error).
        assert "error" not in (got["debug_offsets"] or {}), got["debug_offsets"]
