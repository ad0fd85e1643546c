"""Where the configs live and how a user error is reported."""
from __future__ import annotations

import sys
from pathlib import Path

from ssl_bench.errors import EXIT_USER_ERROR

_PACKAGED = Path(__file__).resolve().parent / "conf"          # non-editable install: ssl_bench/conf
_CHECKOUT = Path(__file__).resolve().parent.parent / "conf"    # a checkout / editable install: <repo>/conf
CONFIG_DIR = _PACKAGED if (_PACKAGED / "config.yaml").is_file() else _CHECKOUT


def report_user_error(err: Exception) -> None:
    """One message, no traceback, a non-zero exit."""
    print(f"ssl_bench: error: {err}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)
