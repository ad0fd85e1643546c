"""Errors a user can cause. Each one carries a single message that names the key or path and the fix.

The CLI (`ssl_bench.__main__`) catches `UserError`, prints the message without a traceback and exits
with `EXIT_USER_ERROR`. Library code raises the most specific subclass.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_NONFINITE = 3  # the loss became NaN/Inf
EXIT_SWEEP_FAILURES = (
    4  # a multirun finished, but some of its jobs failed (see the sweep's leaderboard)
)


class UserError(Exception):
    """Something the user can fix: a config value, a path, a data file."""


class ConfigError(UserError, ValueError):
    """A config key holds a bad value. `key` is the dotted config path, e.g. `method.temperature`."""

    def __init__(self, key: str, problem: str, fix: str | None = None):
        self.key = key
        msg = f"config key '{key}': {problem}"
        if fix:
            msg += f" Fix: {fix}"
        super().__init__(msg)


class DataError(UserError):
    """Data is missing, corrupt or empty. The message names where we looked and how to get it."""


class OutputError(UserError):
    """An output (run dir, checkpoint, results) cannot be written: permissions, a full disk."""
