"""SimCLR learns: kNN top-1 rises clearly above the random-init baseline (synthetic, Fashion-MNIST)."""
import pytest

from conftest import LEARN, knn_gain, needs_fmnist, run_cli


@pytest.mark.slow
def test_simclr_learns_on_synthetic(tmp_path):
    run = run_cli(*LEARN, "method=simclr", "method.temperature=0.2", "method.proj_hidden_dim=512",
                  "optimizer=lars", "optimizer.lr=1.0", run_dir=tmp_path / "run", check=True)
    init, after = knn_gain(run)
    # measured: 22 -> 47 after two epochs; 15 points is far outside run-to-run noise (a few points)
    assert after >= init + 15, (init, after)
    z_std = [float(r["train/z_std"]) for r in run.metrics() if r.get("train/z_std")]
    assert min(z_std) > 0.02


@pytest.mark.slow
@needs_fmnist
def test_simclr_learns_on_fashion_mnist(tmp_path):
    run = run_cli("experiment=demo_fmnist", "progress_bar=false", "data.limit=2000", "data.test_limit=500",
                  "data.batch_size=64", "trainer.max_epochs=1", "scheduler.warmup_epochs=0.3",
                  run_dir=tmp_path / "run", check=True)
    init, after = knn_gain(run)
    assert after >= init + 5, (init, after)  # measured: 55 -> 69 after one epoch of 10k images (batch 256)
