"""The Python API: `ssl_bench.compose` gives the CLI's config, `ssl_bench.train` runs it in-process.

One tiny run (one optimizer step) through `ssl_bench.train`, shared by the tests of this module.
Checked by reverting: with `HydraConfig` left unset in api.train the recipe-overrides test fails
(the run does not see its own overrides). `ssl_bench.train` stays the function after the training
module (ssl_bench.training, a different name) is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import FAST, REPO, run_cli

TINY = [
    *FAST,
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=1",
    "scheduler.warmup_epochs=0",
    "online_eval.init_baseline=false",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import ssl_bench
    import ssl_bench.training  # noqa: F401 - imported first: the API name must not be shadowed

    assert callable(ssl_bench.train)
    run_dir = tmp_path_factory.mktemp("api") / "run"
    results = ssl_bench.train([*TINY, "method=simclr", f"hydra.run.dir={run_dir}"])
    return run_dir, results


def test_import_is_cheap():
    code = (
        "import sys, ssl_bench; "
        "print([m for m in ('torch', 'hydra', 'pytorch_lightning', 'timm') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "overrides",
    [["method=byol", "data=cifar10"], [*FAST, "method=moco_v2", "optimizer.lr=0.5", "seed=3"]],
)
def test_compose_is_the_cli_config(overrides, tmp_path):
    from omegaconf import OmegaConf

    import ssl_bench

    run_dir = tmp_path / "unused"  # `--cfg job` prints the config and runs nothing
    cli = run_cli(
        *overrides, f"hydra.run.dir={run_dir}", "--cfg", "job", run_dir=run_dir, check=True
    )
    cfg = ssl_bench.compose(overrides)
    assert OmegaConf.to_container(cfg) == yaml.safe_load(cli.stdout)
    assert "hydra" not in cfg


def test_train_returns_the_runs_results(trained):
    run_dir, results = trained
    assert results["status"] == "completed" and results["method"] == "simclr"
    assert results["global_step"] == 1 and results["run_dir"] == str(run_dir)
    assert json.loads((run_dir / "results.json").read_text()) == results
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "method=simclr" in yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    # the run saw its own overrides, as under the CLI (the recipe line names those of recipe keys)
    assert "data.batch_size=64" in results["recipe"]["overrides"]
    from hydra.core.hydra_config import HydraConfig

    assert not HydraConfig.initialized()  # nothing of the run's Hydra state is left behind


def test_train_runs_the_clis_checks(trained, tmp_path):
    import ssl_bench
    from ssl_bench.errors import ConfigError, UserError

    run_dir, _ = trained
    with pytest.raises(UserError, match="already holds a run"):
        ssl_bench.train([*TINY, "method=simclr", f"hydra.run.dir={run_dir}"])
    with pytest.raises(ConfigError, match="config key 'optimizer.lr'"):
        ssl_bench.train([*TINY, "optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'neg'}"])
    assert not (tmp_path / "neg" / "results.json").exists()
    with pytest.raises(ConfigError, match="method/nope"):
        ssl_bench.compose(["method=nope"])
    with pytest.raises(ConfigError, match="a list of 'key=value' strings"):
        ssl_bench.train("method=byol")
