"""Every single-run command the README shows composes and passes the config schema (through
ssl_bench.compose, the CLI's composition): a renamed key or option cannot leave the README
behind."""

from __future__ import annotations

import re
import shlex

from conftest import REPO

PREFIXES = ("python -m ssl_bench ", "ssl-bench ")


def readme_commands() -> list[list[str]]:
    """The overrides of each `python -m ssl_bench ...` / `ssl-bench ...` line of the README's bash
    blocks (continuations joined, comments dropped); multiruns and flags such as `--cfg job` left
    out."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            prefix = next((p for p in PREFIXES if line.startswith(p)), None)
            if prefix is None:
                continue
            args = shlex.split(line[len(prefix) :])
            if "-m" in args or "--multirun" in args:
                continue
            overrides, skip = [], False
            for arg in args:
                if skip:
                    skip = False
                elif arg in ("--cfg", "--info", "-c", "-i"):
                    skip = True
                elif not arg.startswith("-"):
                    overrides.append(arg)
            commands.append(overrides)
    return commands


def test_every_readme_command_composes():
    from ssl_bench.api import compose

    commands = readme_commands()
    assert len(commands) > 20
    failures = []
    for overrides in commands:
        try:
            compose(overrides)
        except Exception as err:  # noqa: BLE001 - collect every failing command
            failures.append(f"{' '.join(overrides)}: {err}")
    assert failures == []
