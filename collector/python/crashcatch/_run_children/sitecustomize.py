"""Enables crashcatch in the Python children of `crashcatch run`.

`crashcatch run` puts this directory first on PYTHONPATH, so every Python process it starts
(subprocesses, multiprocessing children started with "spawn" or "forkserver") imports this
module at start-up. Then it runs the sitecustomize module this one shadows, if there is one.
Nothing here may break a child: a child that cannot import crashcatch (another interpreter,
another environment) runs as if this module were not there.
"""
import os
import sys


def _enable_crashcatch():
    if os.environ.get("CRASHCATCH_RUN_CHILDREN") != "1":
        return
    try:
        import crashcatch
        crashcatch.enable()
    except Exception as e:  # noqa: BLE001 - never let our start-up stop the child
        if os.environ.get("CRASHCATCH_RUN_DEBUG"):
            sys.stderr.write(f"crashcatch: not enabled in child {os.getpid()}: {e!r}\n")


def _run_shadowed_sitecustomize():
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_enable_crashcatch()
_run_shadowed_sitecustomize()
