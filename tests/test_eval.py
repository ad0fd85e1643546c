"""Offline evaluation: linear protocol, kNN, fine-tune, embeddings, W&B logging and bad inputs."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import FAST, needs_fmnist, run_cli
from ssl_bench.eval.knn import knn_accuracy, knn_predict
from ssl_bench.eval.linear import train_linear_on_features

EVAL_FAST = ["wandb=false", "device=cpu"]
# small models on 2 shared cores: one thread each avoids oversubscription (20x slower here otherwise)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real 1-epoch pretraining run with W&B (offline), shared by the tests of this module."""
    base = tmp_path_factory.mktemp("eval")
    run_cli(*FAST, "trainer.max_epochs=1", "logger=wandb", run_dir=base / "run",
            env={"WANDB_MODE": "offline", "WANDB_API_KEY": "", **ONE_THREAD}, check=True)
    return base / "run"


def eval_cli(*args, cwd):
    return run_cli(*args, run_dir=cwd, module="ssl_bench.eval",
                   env={"WANDB_MODE": "offline", "WANDB_API_KEY": "", **ONE_THREAD})


# ---- pure pieces ---------------------------------------------------------------------------------------
def test_linear_on_linearly_separable_features_is_near_perfect():
    g = torch.Generator().manual_seed(0)
    classes, dim = 5, 32
    w = torch.randn(dim, classes, generator=g)
    def make(n):
        x = torch.randn(n, dim, generator=g) * 3
        return x, (x @ w).argmax(1)
    tr_x, tr_y = make(4000)
    te_x, te_y = make(500)
    res = train_linear_on_features(tr_x, tr_y, te_x, te_y, classes, epochs=40, lr=0.5, batch_size=256)
    assert res["top1"] > 95.0 and res["top5"] == 100.0, res


def brute_force_knn(test, bank, bank_y, classes, k, t):
    out = []
    for q in test:
        sims = torch.tensor([float(torch.dot(q / q.norm(), b / b.norm())) for b in bank])
        order = sorted(range(len(bank)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * classes
        for i in order:
            votes[int(bank_y[i])] += float(torch.exp(sims[i] / t))
        out.append(votes)
    return torch.tensor(out)


@pytest.mark.parametrize("k,t", [(1, 0.1), (5, 0.07), (20, 0.5)])
def test_knn_matches_brute_force(k, t):
    g = torch.Generator().manual_seed(k)
    bank, test = torch.randn(60, 8, generator=g), torch.randn(25, 8, generator=g)
    bank_y = torch.randint(0, 4, (60,), generator=g)
    test_y = torch.randint(0, 4, (25,), generator=g)
    ref = brute_force_knn(test, bank, bank_y, 4, k, t)
    got = knn_predict(test, bank, bank_y, 4, k=k, temperature=t, chunk=7)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)
    top1, top5 = knn_accuracy(test, test_y, bank, bank_y, 4, k, t)
    assert top1 == pytest.approx(100.0 * (ref.argmax(1) == test_y).float().mean().item())
    assert top5 == 100.0  # 4 classes: the top-5 holds every class


def test_wandb_run_id_is_the_training_runs(tmp_path):
    from ssl_bench.eval.common import find_wandb_run_id

    assert find_wandb_run_id(tmp_path) is None
    for name in ("run-20260101_100000-train01", "offline-run-20260101_120000-eval0001", "latest-run"):
        (tmp_path / "wandb" / name).mkdir(parents=True)
    assert find_wandb_run_id(tmp_path) == "train01"


# ---- the real run --------------------------------------------------------------------------------------
def test_linear_keeps_backbone_bit_identical(tiny_run):
    from ssl_bench.eval.common import build_for_eval
    from ssl_bench.eval.linear import linear_eval

    ref, dm, model = build_for_eval(tiny_run, ["data.options.n_train=128", "data.options.n_test=64"])
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    assert any("running_mean" in k for k in before)  # buffers are part of the check
    res = linear_eval(model.backbone, dm, dm.num_classes, torch.device("cpu"), epochs=2, lr=0.1, batch_size=64,
                      log=lambda *_: None)
    after = model.backbone.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert 0.0 <= res["top1"] <= 100.0 and res["top5"] >= res["top1"]
    # the checkpoint file still holds the same backbone
    from ssl_bench.eval.common import backbone_state, load_state_dict

    saved = backbone_state(load_state_dict(ref.ckpt))
    for k in before:
        assert torch.equal(saved[k], before[k]), k


def test_linear_cli_writes_results(tiny_run):
    run = eval_cli("mode=linear", f"ckpt={tiny_run}", "epochs=2", "batch_size=64", *EVAL_FAST, cwd=tiny_run.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads((tiny_run / "eval_linear.json").read_text())
    assert res["mode"] == "linear" and res["epochs"] == 2 and not res["cache_features"]
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0
    assert res["method"] == "simclr" and res["backbone"] == "resnet18_narrow"


def test_knn_sweep_and_cached_lr_sweep(tiny_run, tmp_path):
    run = eval_cli("mode=knn", f"ckpt={tiny_run / 'checkpoints' / 'last.ckpt'}", "k=[5,20]", "t=[0.07,0.1]",
                   f"out={tmp_path}", *EVAL_FAST, cwd=tiny_run.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads((tmp_path / "eval_knn.json").read_text())
    assert [(r["k"], r["t"]) for r in res["sweep"]] == [(5, 0.07), (5, 0.1), (20, 0.07), (20, 0.1)]
    assert res["top1"] == max(r["top1"] for r in res["sweep"])
    # the sweep at the run's own k/T matches what training logged for the same data
    online = json.loads((tiny_run / "results.json").read_text())["final"]["val/knn_top1"]
    assert next(r["top1"] for r in res["sweep"] if r["k"] == 20 and r["t"] == 0.1) == pytest.approx(online, abs=2.5)  # bf16 training eval

    run = eval_cli("mode=linear", f"ckpt={tiny_run}", "cache_features=true", "lr=[0.05,0.5]", "epochs=5",
                   f"out={tmp_path}", *EVAL_FAST, cwd=tiny_run.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads((tmp_path / "eval_linear.json").read_text())
    assert res["cache_features"] and [r["lr"] for r in res["sweep"]] == [0.05, 0.5]


def test_finetune_runs(tiny_run, tmp_path):
    run = eval_cli("mode=finetune", f"ckpt={tiny_run}", "epochs=1", "batch_size=64", "data.options.n_train=128",
                   f"out={tmp_path}", *EVAL_FAST, cwd=tiny_run.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads((tmp_path / "eval_finetune.json").read_text())
    assert res["num_train"] == 128 and 0.0 <= res["top1"] <= 100.0


@pytest.mark.slow
def test_embed_and_eval_logged_to_offline_wandb(tiny_run):
    from PIL import Image

    from ssl_bench.wandb_utils import read_wandb_records

    for args in (["mode=embed", "max_points=100", "perplexity=10"], ["mode=knn", "k=[20]", "t=[0.1]"]):
        run = eval_cli(*args, f"ckpt={tiny_run}", "device=cpu", cwd=tiny_run.parent)
        assert run.returncode == 0, run.stderr[-3000:]
    png = tiny_run / "embed.png"
    with Image.open(png) as im:
        im.verify()
    res = json.loads((tiny_run / "eval_embed.json").read_text())
    assert res["points"] == 100
    train_id = json.loads((tiny_run / "eval_knn.json").read_text())["wandb_run_id"]
    assert train_id and res["wandb_run_id"] == train_id  # resumed the training run's id
    summary, image_rows = {}, 0
    for f in sorted(tiny_run.rglob("*.wandb")):
        assert f.parent.name.endswith(train_id)
        for rec in read_wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "summary":
                summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.summary.update})
            elif kind == "history":
                for item in rec.history.item:  # a logged image is flattened to eval/embedding/{_type,path,..}
                    key = list(item.nested_key) or [item.key]
                    if key == ["eval/embedding", "_type"] and json.loads(item.value_json) == "image-file":
                        image_rows += 1
    for key in ("val/knn_top1", "eval/knn_top1", "eval/embed_knn_top1"):
        assert key in summary, (key, sorted(summary))
    assert image_rows == 1
    assert any("media" in p.parts for p in (tiny_run / "wandb").rglob("*.png"))


@pytest.mark.slow
@needs_fmnist
def test_linear_on_random_init_fashion_mnist_is_plausible(tmp_path):
    run = run_cli("data=fashion_mnist", "backbone=resnet18_narrow", "progress_bar=false", "data.limit=1000",
                  "data.test_limit=500", "trainer.max_steps=1", "optimizer.lr=1e-6", "online_eval.knn_k=20",
                  "data.batch_size=64", run_dir=tmp_path / "run", env=ONE_THREAD, check=True)
    ev = eval_cli("mode=linear", f"ckpt={run.run_dir}", "cache_features=true", "epochs=30", "lr=[0.1]",
                  *EVAL_FAST, cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    res = json.loads((run.run_dir / "eval_linear.json").read_text())
    # random-init features of the narrow ResNet (128-d): far above chance (10%), far below a trained net.
    # Measured here: 52.4%; sklearn's LogisticRegression on the same standardised features: 47.2%.
    assert 35.0 <= res["top1"] <= 80.0, res
    assert res["top5"] >= res["top1"]


# ---- bad inputs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["missing_path", "not_a_run_dir", "other_backbone", "unknown_key", "bad_mode"])
def test_bad_eval_inputs_give_one_clear_message(tiny_run, tmp_path, case):
    args, words = {
        "missing_path": ([f"ckpt={tmp_path / 'nowhere'}"], ["nowhere", "does not exist"]),
        "not_a_run_dir": ([f"ckpt={tmp_path}"], [str(tmp_path), "not a run dir"]),
        "other_backbone": ([f"ckpt={tiny_run}", "backbone.kwargs.channels=[8,16,32,64]"],
                           ["different backbone", "last.ckpt"]),
        "unknown_key": ([f"ckpt={tiny_run}", "epochz=3"], ["epochz"]),
        "bad_mode": ([f"ckpt={tiny_run}", "mode=nope"], ["mode", "linear"]),
    }[case]
    run = eval_cli("mode=linear", *args, *EVAL_FAST, cwd=tmp_path)
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("ssl_bench: error:")]
    assert len(errors) == 1, run.stderr[-2000:]
    for w in words:
        assert w in errors[0], errors[0]


def test_checkpoint_of_another_backbone_in_its_own_run_dir(tiny_run, tmp_path):
    """A run dir whose config says one backbone and whose checkpoint holds another."""
    import shutil

    fake = tmp_path / "fake"
    shutil.copytree(tiny_run / ".hydra", fake / ".hydra")
    (fake / "checkpoints").mkdir()
    shutil.copy(tiny_run / "checkpoints" / "last.ckpt", fake / "checkpoints" / "last.ckpt")
    cfg = (fake / ".hydra" / "config.yaml").read_text()
    (fake / ".hydra" / "config.yaml").write_text(cfg.replace("- 16\n", "- 24\n", 1))
    run = eval_cli("mode=knn", f"ckpt={fake}", *EVAL_FAST, cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "different backbone" in run.stderr and "24" in run.stderr
