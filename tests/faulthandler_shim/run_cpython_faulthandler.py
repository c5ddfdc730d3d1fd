"""Runs this interpreter's own Lib/test/test_faulthandler.py with crashcatch standing in
for faulthandler (the crashcatch_fh_shim .pth hook, active because the caller set
CRASHCATCH_AS_FAULTHANDLER=1), and writes each test's outcome as JSON to argv[1]."""
import json
import sys
import unittest

import crashcatch
import faulthandler

if faulthandler.enable is not crashcatch.enable:
    sys.exit("the crashcatch_fh_shim hook is not active: set CRASHCATCH_AS_FAULTHANDLER=1")

from test import test_faulthandler  # noqa: E402


class Recorder(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.outcomes = {}

    def _name(self, test):
        return test.id().rsplit(".", 1)[-1]

    def addSuccess(self, test):
        super().addSuccess(test)
        self.outcomes[self._name(test)] = ["passed", ""]

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.outcomes[self._name(test)] = ["failed", self._exc_info_to_string(err, test)]

    def addError(self, test, err):
        super().addError(test, err)
        self.outcomes[self._name(test)] = ["failed", self._exc_info_to_string(err, test)]

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.outcomes[self._name(test)] = ["skipped", reason]

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.outcomes[self._name(test)] = ["failed", self._exc_info_to_string(err, test)]

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.outcomes[self._name(test)] = ["passed", "expected failure"]


suite = unittest.defaultTestLoader.loadTestsFromModule(test_faulthandler)
result = unittest.TextTestRunner(resultclass=Recorder, verbosity=0, stream=sys.stderr).run(suite)
with open(sys.argv[1], "w") as f:
    json.dump(result.outcomes, f, indent=1)
