"""Fixtures: the interpreter matrix prepared by tests/prepare_envs.py (run by tools/test.sh)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interpreters import ENVS_FILE, load_prepared  # noqa: E402

if not os.path.exists(ENVS_FILE):
    raise pytest.UsageError(f"{ENVS_FILE} is missing: run tools/test.sh (it prepares every interpreter)")

INTERPRETERS, MISSING = load_prepared()


def pytest_report_header(config):
    lines = ["interpreters: " + ", ".join(i.name for i in INTERPRETERS)]
    lines += [f"SKIPPED interpreter {name}: {why}" for name, why in MISSING]
    return lines


def interpreter_params(predicate=lambda i: True):
    """pytest params over the matrix; absent interpreters appear as skips with the reason."""
    params = [pytest.param(i, id=i.name) for i in INTERPRETERS if predicate(i)]
    params += [pytest.param(None, id=name, marks=pytest.mark.skip(reason=f"interpreter absent: {why}"))
               for name, why in MISSING]
    return params


def pytest_generate_tests(metafunc):
    if "interp" in metafunc.fixturenames:
        metafunc.parametrize("interp", interpreter_params())


def pytest_terminal_summary(terminalreporter):
    """Pass counts of CPython's test_faulthandler per interpreter (for the record)."""
    results = os.path.join(os.path.dirname(ENVS_FILE), "cpython-faulthandler")
    if not os.path.isdir(results):
        return
    terminalreporter.section("CPython test_faulthandler with crashcatch substituted")
    for name in sorted(os.listdir(results)):
        import json
        outcomes = json.load(open(os.path.join(results, name)))
        counts = {}
        for state, _ in outcomes.values():
            counts[state] = counts.get(state, 0) + 1
        failed = sorted(n for n, (s, _) in outcomes.items() if s == "failed")
        # The tests that do not apply to crashcatch (see test_cpython_faulthandler) fail by
        # design; only the others would be real failures.
        from test_cpython_faulthandler import NOT_APPLICABLE
        unexpected = [n for n in failed if n not in NOT_APPLICABLE]
        terminalreporter.write_line(
            f"{name[:-5]:16} passed {counts.get('passed', 0):3}  skipped {counts.get('skipped', 0):3}  "
            f"not applicable {len(failed) - len(unexpected)}  failed {len(unexpected)} {unexpected or ''}".rstrip())
