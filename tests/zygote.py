"""A pre-imported Python that forks one child per CLI call of the tests (a "zygote").

Each `python -m ssl_bench ...` of the test suite spends ~7 CPU-seconds importing torch, Lightning,
timm and Hydra before it composes a config; the suite makes ~150 such calls. This process imports
them once, then, for each request read from stdin (one JSON line: module, args, env, cwd and the
files for stdout/stderr), forks a child that runs `python -m <module> <args>` as the interpreter
would (runpy as __main__, the request's environment, working dir and PYTHONPATH, stdin from
/dev/null, SystemExit turned into the exit status, atexit handlers run). It answers with the
child's pid at once and its exit status when it ends. The child starts from this process's clean,
never-run state, so calls do not leak into one another. tests/conftest.py:run_cli uses it;
SSL_BENCH_TEST_ZYGOTE=0 falls back to plain subprocesses.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys
import threading
import traceback


def _preload() -> None:
    """The heavy imports every CLI call makes (and nothing that starts a thread)."""
    import hydra  # noqa: F401
    import pytorch_lightning  # noqa: F401
    import timm  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import ssl_bench.methods  # noqa: F401
    import ssl_bench.training  # noqa: F401


def _exit_status(err: SystemExit) -> int:
    code = err.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # what the interpreter does with sys.exit("message")
    return 1


def _child(req: dict) -> None:
    """Become `python -m <module> <args>`; never returns."""
    status = 1
    try:
        os.chdir(req["cwd"])
        sys.path.insert(0, req["cwd"])  # `python -m` puts the working dir first
        os.environ.clear()
        os.environ.update(req["env"])
        for entry in reversed(req["env"].get("PYTHONPATH", "").split(os.pathsep)):
            if entry and entry not in sys.path:
                sys.path.insert(0, entry)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        sys.argv = [req["module"], *req["args"]]
        # runpy warns when the module it runs as __main__ was imported before
        sys.modules.pop(f"{req['module']}.__main__", None)
        try:
            runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as err:
            status = _exit_status(err)
        except BaseException:  # noqa: BLE001 - an uncaught error: traceback and status 1
            traceback.print_exc()
            status = 1
        threading._shutdown()  # as at interpreter exit: wait for non-daemon threads
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(status)


def main() -> None:
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)  # this script's dir (tests/) is not on a real CLI's path
    _preload()
    reply = sys.stdout
    print(json.dumps({"ready": os.getpid()}), file=reply, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        print(json.dumps({"pid": pid}), file=reply, flush=True)
        _, wait_status = os.waitpid(pid, 0)
        print(
            json.dumps({"status": os.waitstatus_to_exitcode(wait_status)}), file=reply, flush=True
        )


if __name__ == "__main__":
    main()
