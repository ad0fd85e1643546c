"""The benchmark harness in a tiny configuration: every column present and positive."""

import json

from ssl_bench.bench import COLUMNS, main


def test_bench_tiny_configuration(tmp_path):
    out_md, out_json = tmp_path / "BENCH.md", tmp_path / "rows.json"
    rc = main(
        [
            "--methods",
            "simclr",
            "--backbone",
            "resnet18_narrow",
            "--batch-size",
            "16",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--accelerator",
            "cpu",
            "--out",
            str(out_md),
            "--json",
            str(out_json),
        ]
    )
    assert rc == 0
    rows = json.loads(out_json.read_text())
    assert len(rows) == 1
    row = rows[0]
    for col in COLUMNS:
        assert col in row
    for col in (
        "train_img_s",
        "views_img_s",
        "step_tflops",
        "peak_tflops",
        "mfu_pct",
        "peak_mem_mib",
    ):
        assert row[col] > 0, col
    text = out_md.read_text()
    assert "| method |" in text and "simclr" in text and "cores" in text
