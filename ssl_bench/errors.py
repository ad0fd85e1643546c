"""Errors a user can cause, how they are reported, and the exit codes of the CLIs.

Each error carries a single message that names the key or path and the fix. The CLIs
(`python -m ssl_bench`, `ssl_bench.eval`, `ssl_bench.report`) catch `UserError`, print the message
without a traceback (`report_user_error`) and exit with `EXIT_USER_ERROR`. Library code raises the
most specific subclass.

Exit codes of `python -m ssl_bench` (the README's table says the same):
  0  completed, or stopped by SIGTERM/SIGUSR1/SIGUSR2 after writing a checkpoint (`resume=auto`
     continues it) or during the random-init kNN baseline (nothing trained yet: start it again)
  1  Hydra could not compose the config (unknown group option or key)
  2  a user error: bad config value, missing/corrupt data, unwritable output dir, bad checkpoint
  3  the loss became NaN/Inf; the last good checkpoint is kept and results.json says so
  4  a multirun finished but some jobs failed (each failed job's results.json says why)
"""

from __future__ import annotations

import sys

EXIT_USER_ERROR = 2
EXIT_NONFINITE = 3
EXIT_SWEEP_FAILURES = 4


class UserError(Exception):
    """Something the user can fix: a config value, a path, a data file."""


class ConfigError(UserError, ValueError):
    """A config key holds a bad value. `key` is the dotted config path, e.g.
    `method.temperature`."""

    def __init__(self, key: str, problem: str, fix: str | None = None):
        self.key, self.problem, self.fix = key, problem, fix
        msg = f"config key '{key}': {problem}"
        if fix:
            msg += f" Fix: {fix}"
        super().__init__(msg)


class DataError(UserError):
    """Data is missing, corrupt or empty. The message names where we looked and how to get it."""


class OutputError(UserError):
    """An output (run dir, checkpoint, results) cannot be written: permissions, a full disk."""


def report_user_error(err: Exception) -> None:
    """Print one message, no traceback, and exit with EXIT_USER_ERROR."""
    msg = str(err)
    if "Original Traceback" in msg:  # re-raised from a DataLoader worker: keep the error's own line
        last = [line for line in msg.splitlines() if line.strip()][-1]
        own = last.startswith(("ssl_bench.", "DataError", "ConfigError"))
        msg = last.split(": ", 1)[1] if own else last
    print(f"ssl_bench: error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)
