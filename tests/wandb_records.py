"""Read what an offline W&B run logged, for the tests.

wandb >= 0.19 offline runs write no wandb-summary.json; what was logged lives only in the run's
`.wandb` record log (LevelDB log format: 32 KiB blocks of CRC-framed chunks, each chunk a piece of
one protobuf `wandb_internal_pb2.Record`). `read_wandb_records` decodes it; `read_offline_run`
collects the history, summary, config and run names of a run dir.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_BLOCK = 32 * 1024
_HEADER = 7  # crc32 (4) + length (2) + type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _chunks(data: bytes, start: int) -> Iterator[tuple[int, bytes]]:
    pos = start
    while pos + _HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:  # zero padding at the end of a block or file
            pos += left_in_block
            continue
        yield kind, data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length


def read_wandb_records(path: str | Path):
    """Yield the protobuf Records of one `.wandb` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B record log")
    buf = b""
    for kind, payload in _chunks(data, 7):
        if kind == _FULL:
            buf = payload
        elif kind == _FIRST:
            buf = payload
            continue
        elif kind == _MIDDLE:
            buf += payload
            continue
        elif kind == _LAST:
            buf += payload
        else:
            continue
        rec = pb.Record()
        rec.ParseFromString(buf)
        yield rec
        buf = b""


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """{'history': [row, ...], 'summary': {...}, 'config': {...}, 'run': {name, group, tags}} of the
    (first) W&B run below run_dir."""
    files = sorted(Path(run_dir).rglob("*.wandb"))
    if not files:
        raise FileNotFoundError(f"no .wandb file below {run_dir}")
    history, summary, config, run = [], {}, {}, {}
    for rec in read_wandb_records(files[0]):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in rec.history.item
                }
            )
        elif kind == "summary":
            for item in rec.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind in ("config", "run"):  # wandb.init(config=...) travels in the run record
            if kind == "run":
                run = {
                    "id": rec.run.run_id,
                    "name": rec.run.display_name,
                    "group": rec.run.run_group,
                    "tags": list(rec.run.tags),
                }
            updates = rec.config.update if kind == "config" else rec.run.config.update
            for item in updates:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return {"history": history, "summary": summary, "config": config, "run": run}
