"""CPython's own Lib/test/test_faulthandler.py, run on each interpreter with crashcatch
substituted for faulthandler's enable/dump/register/later functions (its private crash
helpers such as faulthandler._sigsegv() stay the crash triggers).

Every test passes except the ones listed in NOT_APPLICABLE, each with the reason it does
not apply to crashcatch. Outcomes per interpreter land in build/cpython-faulthandler/."""
import json
import os
import shutil

import pytest

from interpreters import BUILD, REPO

RUNNER = os.path.join(REPO, "tests", "faulthandler_shim", "run_cpython_faulthandler.py")
RESULTS = os.path.join(BUILD, "cpython-faulthandler")

STARTUP = ("they check that `-X faulthandler` / PYTHONFAULTHANDLER enable the interpreter's "
           "built-in faulthandler at startup; crashcatch is enabled by calling it")
NOT_APPLICABLE = {
    "test_sys_xoptions": STARTUP,
    "test_env_var": STARTUP,
}


def test_cpython_test_faulthandler(interp):
    if not interp.test_dir:
        pytest.skip(f"{interp.name} has no test/test_faulthandler.py (its test suite is not installed)")
    work = interp.work_dir + "/cpython-faulthandler"
    os.makedirs(interp.host_path(work), exist_ok=True)
    shutil.copy(RUNNER, interp.host_path(work))
    out = work + "/outcomes.json"
    # crashcatch's defaults (minidumps on for fatal errors), with dumps kept out of $HOME.
    env = dict(os.environ, CRASHCATCH_AS_FAULTHANDLER="1", CRASHCATCH_DUMP_DIR=work + "/dumps")
    env.pop("CRASHCATCH_MINIDUMP", None)
    r = interp.run([interp.venv_python, work + "/run_cpython_faulthandler.py", out],
                   cwd=work, env=env, timeout=900)
    assert os.path.exists(interp.host_path(out)), f"runner failed:\n{r.stdout}\n{r.stderr[-3000:]}"
    outcomes = json.load(open(interp.host_path(out)))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, interp.name + ".json"), "w") as f:
        json.dump(outcomes, f, indent=1)
    failed = {name: detail for name, (state, detail) in outcomes.items() if state == "failed"}
    unexpected = {name: detail for name, detail in failed.items() if name not in NOT_APPLICABLE}
    assert not unexpected, "\n\n".join(f"{n}:\n{d}" for n, d in unexpected.items())
    # The defaults were in force: the fatal-error tests left minidumps.
    dumps = interp.host_path(work + "/dumps")
    assert os.path.isdir(dumps) and any(n.endswith(".dmp") for n in os.listdir(dumps)), r.stderr[-3000:]
    passed = [n for n, (state, _) in outcomes.items() if state == "passed"]
    assert len(passed) >= 30, f"only {len(passed)} tests passed: {outcomes}"
