"""The crash directory: `crashcatch list` (newest first, crash signatures, damaged dumps
listed as such), enable(max_dumps=...) retention, and `crashcatch --help` / completion
covering every command."""
import json
import os
import signal
import subprocess

import pytest

from crashlib import c_stack, prepare_script, script_line

# Prints its pid, then crashes in buggyext from a function of its own.
CRASH = """
import os, sys, crashcatch, buggyext
crashcatch.enable()
print(os.getpid(), flush=True)

def {name}():
    buggyext.segfault(1)  # @crash

{name}()
"""

# A dump that is not a crash: write_minidump() from a named function.
REQUESTED = """
import os, crashcatch
crashcatch.enable()
print(os.getpid(), flush=True)

def snapshot():
    crashcatch.write_minidump()  # @snapshot

snapshot()
"""


def crashcatch_in(interp):
    return os.path.join(os.path.dirname(interp.venv_python), "crashcatch")


def run_into(interp, code, dump_dir):
    """Runs `code` with its dumps going to `dump_dir` (inside the root): (pid, stderr, script)."""
    p = prepare_script(interp, code, env={"CRASHCATCH_DUMP_DIR": dump_dir})
    r = interp.run(p.argv, cwd=p.cwd, env=p.env, timeout=120)
    return int(r.stdout.split()[0]), r.returncode, r.stderr, p.script


def test_list_names_each_dump_newest_first_and_damaged_ones(interp):
    inner_dir = prepare_script(interp, "").cwd + "/crashdir"
    first = run_into(interp, CRASH.format(name="first_crash"), inner_dir)
    second = run_into(interp, REQUESTED, inner_dir)
    third = run_into(interp, CRASH.format(name="third_crash"), inner_dir)
    assert [r[1] for r in (first, second, third)] == [-signal.SIGSEGV, 0, -signal.SIGSEGV], third[2]
    host_dir = interp.host_path(inner_dir)
    dumps = sorted(os.listdir(host_dir))
    assert len(dumps) == 3, dumps
    # A truncated copy of the first crash's dump (a copy interrupted, a full disk): its
    # name's time is the newest, so it is listed first.
    first_dump = next(d for d in dumps if f"-{first[0]}-" in d)
    with open(os.path.join(host_dir, first_dump), "rb") as f:
        data = f.read()
    with open(os.path.join(host_dir, "truncated.dmp"), "wb") as f:
        f.write(data[: len(data) // 2])
    out = interp.run([crashcatch_in(interp), "list", inner_dir, "--json"], timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "crashcatch-list/1"
    listed = doc["dumps"]
    assert len(listed) == 4, listed
    damaged = [d for d in listed if d["damaged"]]
    assert [os.path.basename(d["path"]) for d in damaged] == ["truncated.dmp"], listed
    assert damaged[0]["size"] == len(data) // 2 and "truncated" in damaged[0]["damaged"]
    good = [d for d in listed if not d["damaged"]]
    # Newest first: the order the programs ran in, reversed.
    assert [d["pid"] for d in good] == [third[0], second[0], first[0]], good
    assert [d["time_unix_ns"] for d in good] == sorted((d["time_unix_ns"] for d in good), reverse=True)
    assert [d["kind"] for d in good] == ["fatal-signal", "requested", "fatal-signal"]
    assert [d["signal_name"] for d in good[::2]] == ["SIGSEGV", "SIGSEGV"]
    for d, run, function in ((good[0], third, "third_crash"), (good[2], first, "first_crash")):
        assert d["program"] == "crash_script.py" and d["argv"][-1] == run[3], d
        assert d["python_frame"] == f"{function} ({run[3]}:{script_line(CRASH, 'crash')})", d
        # The innermost native frame is the in-process unwinder's first C frame (the
        # report's own C stack), by name.
        assert d["native_frame"] == c_stack(run[2])[0]["sym"], (d, run[2])
        assert d["size"] == os.path.getsize(d["path"] if not interp.root else interp.host_path(d["path"]))
    assert good[1]["python_frame"].startswith("snapshot ("), good[1]
    text = interp.run([crashcatch_in(interp), "list", inner_dir], timeout=300)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"4 dumps in {inner_dir}, newest first:", lines
    damaged_line = lines[lines.index(next(l for l in lines if l.endswith(" truncated.dmp"))) + 1]
    assert damaged_line.startswith("    DAMAGED: ") and "truncated" in damaged_line, lines
    assert f"pid {third[0]} " in text.stdout
    assert f"python: third_crash ({third[3]}:" in text.stdout


def test_list_defaults_to_the_dump_directory_and_says_when_it_is_empty(interp, tmp_path):
    empty = prepare_script(interp, "").cwd
    out = interp.run([crashcatch_in(interp), "list"], env={**os.environ, "CRASHCATCH_DUMP_DIR": empty})
    assert out.returncode == 0 and out.stdout == f"no dumps in {empty}\n", out
    missing = empty + "/nowhere"
    out = interp.run([crashcatch_in(interp), "list", missing])
    assert out.returncode == 2 and "cannot list the crash directory" in out.stderr, out


RETENTION = """
import crashcatch, os, sys
crashcatch.enable(dump_dir=sys.argv[1], **eval(sys.argv[2]))
print(sorted(os.listdir(sys.argv[1])))
"""


def fill(host_dir, stamps, program="app"):
    """Files named as the dump helper names dumps (PROGRAM-PID-TIME.dmp), with these times."""
    names = [f"{program}-{1000 + i}-2026{s}.dmp" for i, s in enumerate(stamps)]
    for n in names:
        open(os.path.join(host_dir, n), "wb").close()
    return names


@pytest.mark.parametrize("kwargs, kept", [("{'max_dumps': 3}", 3), ("{}", 50), ("{'max_dumps': 0}", 53)])
def test_enable_keeps_the_newest_dumps_and_nothing_else_is_touched(interp, kwargs, kept):
    p = prepare_script(interp, RETENTION)
    inner_dir = p.cwd + "/crashdir"
    host_dir = interp.host_path(inner_dir)
    os.makedirs(host_dir)
    # 53 dumps, created in an order unlike their times: the times in the names decide.
    stamps = [f"0{1 + i % 9}{10 + i:02}T120000.{i:03}Z" for i in range(53)]
    names = fill(host_dir, stamps[::2] + stamps[1::2])
    by_time = sorted(names, key=lambda n: n.split("-")[-1], reverse=True)
    # Not crashcatch's: another name, a directory and a link with a dump's name, other files.
    others = ["mine.dmp", "app-12-notatime.dmp", "notes.txt", "sub-1-20260101T000000.000Z.dmp"]
    for n in others[:3]:
        open(os.path.join(host_dir, n), "w").close()
    os.mkdir(os.path.join(host_dir, others[3]))
    os.symlink(os.path.join(host_dir, "notes.txt"), os.path.join(host_dir, "link-1-20250101T000000.000Z.dmp"))
    others.append("link-1-20250101T000000.000Z.dmp")
    r = interp.run(p.argv + [inner_dir, kwargs], cwd=p.cwd, env=p.env)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(host_dir)) == sorted(by_time[:kept] + others)


def test_max_dumps_must_be_a_count(interp):
    p = prepare_script(interp, """
    import crashcatch
    for bad in (-1, 2.5, True, "3"):
        try:
            crashcatch.enable(max_dumps=bad)
        except ValueError as e:
            print("refused", e)
    """)
    r = interp.run(p.argv, cwd=p.cwd, env=p.env)
    assert r.returncode == 0 and r.stdout.count("refused max_dumps must be a number >= 0") == 4, r


COMMANDS = ("run", "list", "symbolize", "dump", "core", "gdb", "lldb", "debugger-scripts", "completion")


def test_help_lists_every_command_and_completion_covers_them(interp):
    crashcatch = crashcatch_in(interp)
    out = interp.run([crashcatch, "--help"])
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.split("Commands:")[1].split("Options:")[0].splitlines()
              if line.startswith("  ")]
    assert sorted(listed) == sorted(COMMANDS + ("help",)), out.stdout
    # A command the Python front runs still has its own --help there.
    run_help = interp.run([crashcatch, "run", "--help"])
    assert run_help.returncode == 0 and "usage: crashcatch run" in run_help.stdout
    bash = interp.run([crashcatch, "completion", "bash"])
    assert bash.returncode == 0 and all(c in bash.stdout for c in COMMANDS), bash.stderr
    checked = subprocess.run(["bash", "-n"], input=bash.stdout, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    for shell, marker in (("zsh", "#compdef crashcatch"), ("fish", "complete -c crashcatch")):
        script = interp.run([crashcatch, "completion", shell])
        assert script.returncode == 0 and marker in script.stdout and "debugger-scripts" in script.stdout
    # The native program alone describes `run` and the others but leaves them to the Python front.
    package = interp.run([interp.venv_python, "-c", "import crashcatch, os; print(os.path.dirname(crashcatch.__file__))"])
    native = interp.run([package.stdout.strip() + "/_bin/crashcatch-symbolize", "run", "x.py"])
    assert native.returncode == 2 and "Python package" in native.stderr, native
