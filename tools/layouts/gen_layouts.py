#!/usr/bin/env python3
"""Generate pylayout/data/layouts.json: the one table of CPython structure offsets that the
collector, the symbolizer and the gdb scripts all read.

Each interpreter is described by compiling probe.c against that interpreter's own installed
internal headers (so its pyconfig.h and struct definitions decide every number) and, for the
few structures older versions do not install headers for (3.10's dict internals), by asking
gdb about the interpreter's DWARF.

Usage:
    gen_layouts.py [--check] INTERPRETER...
INTERPRETER is a python executable path, or CHROOT_DIR::/usr/bin/python3.X for an interpreter
inside a chroot (its compiler is used too). Layouts are keyed by "MAJOR.MINOR"; when two
builds of one minor version disagree, the tool fails so the table never silently lies.
With --check it compares against the committed file instead of writing it.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "pylayout", "data", "layouts.json")

# Fields not reachable through installed headers, with the gdb expression that yields them
# (3.9 and 3.10 keep their dict internals in Objects/dict-common.h).
_DICT_DWARF = {
    "dict.ma_keys": "&((PyDictObject*)0)->ma_keys",
    "dict.ma_values": "&((PyDictObject*)0)->ma_values",
    "dictkeys.size": "&((struct _dictkeysobject*)0)->dk_size",
    "dictkeys.nentries": "&((struct _dictkeysobject*)0)->dk_nentries",
    "dictkeys.indices": "&((struct _dictkeysobject*)0)->dk_indices",
    "dictkeys.entry_size": "sizeof(PyDictKeyEntry)",
    "dictkeys.entry_key": "&((PyDictKeyEntry*)0)->me_key",
    "dictkeys.entry_value": "&((PyDictKeyEntry*)0)->me_value",
}
DWARF_FIELDS = {
    (3, 9): _DICT_DWARF,
    (3, 10): _DICT_DWARF,
}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def split(spec):
    if "::" in spec:
        root, exe = spec.split("::", 1)
        return ["chroot", root], root, exe
    return [], "", spec


def describe(spec):
    prefix, root, exe = split(spec)
    info = json.loads(run(prefix + [exe, "-c", (
        "import json, sys, sysconfig; print(json.dumps({"
        "'version': '%d.%d.%d' % sys.version_info[:3],"
        "'include': sysconfig.get_paths()['include'],"
        "'libdir': sysconfig.get_config_var('LIBDIR'),"
        "'ldlibrary': sysconfig.get_config_var('LDLIBRARY'),"
        "'executable': sys.executable}))")]))
    tmp = tempfile.mkdtemp(dir=os.path.join(root, "tmp") if root else None)
    inside = tmp[len(root):] if root else tmp
    with open(os.path.join(HERE, "probe.c")) as src, open(os.path.join(tmp, "probe.c"), "w") as dst:
        dst.write(src.read())
    try:
        run(prefix + ["gcc", "-I" + info["include"], "-o", inside + "/probe", inside + "/probe.c"])
        layout = json.loads(run(prefix + [inside + "/probe"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    major, minor = (int(x) for x in info["version"].split(".")[:2])
    extra = DWARF_FIELDS.get((major, minor))
    if extra:
        lib = os.path.join(root + info["libdir"], info["ldlibrary"])
        if not os.path.exists(lib):
            lib = root + info["executable"]
        for name, expr in extra.items():
            out = run(["gdb", "-nx", "-batch", "-ex", f"print (long){expr}", lib])
            layout[name] = int(out.split("=")[-1])
    return f"{major}.{minor}", info["version"], layout


def main(argv):
    check = "--check" in argv
    specs = [a for a in argv if a != "--check"]
    if not specs:
        sys.exit(__doc__)
    table = {}
    for spec in specs:
        key, version, layout = describe(spec)
        if key in table:
            seen = table[key]
            diff = {k for k in set(seen) | set(layout)
                    if k != "built_from" and seen.get(k) != layout.get(k)}
            if diff - {"version_hex"}:
                sys.exit(f"{spec} ({version}) disagrees with {seen['built_from']} on {sorted(diff)}")
            seen["built_from"] = sorted(set(seen["built_from"]) | {version})
            continue
        layout["built_from"] = [version]
        table[key] = layout
    for layout in table.values():
        layout.pop("version_hex", None)
    text = json.dumps(dict(sorted(table.items(), key=lambda kv: tuple(map(int, kv[0].split("."))))),
                      indent=1, sort_keys=True) + "\n"
    if check:
        committed = json.load(open(OUT))
        bad = [k for k in table if committed.get(k, {}) | {"built_from": None}
               != table[k] | {"built_from": None}]
        if bad:
            sys.exit(f"layouts.json is stale for {bad}: rerun tools/layouts/gen_layouts.py")
        print(f"layouts.json matches {sorted(table)}")
        return
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {OUT}: {sorted(table)}")


if __name__ == "__main__":
    main(sys.argv[1:])
