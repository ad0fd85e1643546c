"""2-D map of test-set embeddings (t-SNE, or UMAP when installed), coloured by class, as a PNG."""

from __future__ import annotations

from pathlib import Path

import torch

from ssl_bench.errors import ConfigError, UserError


def stratified_first(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of up to n samples, as balanced over classes as the data allows (deterministic)."""
    if labels.numel() <= n:
        return torch.arange(labels.numel())
    classes = labels.unique()
    per = max(1, n // len(classes))
    idx = torch.cat([(labels == c).nonzero().squeeze(1)[:per] for c in classes])
    return idx.sort().values[:n]


def reduce_2d(feats: torch.Tensor, method: str = "tsne", seed: int = 0, perplexity: float = 30.0):
    """[N, D] -> numpy [N, 2]."""
    x = torch.nn.functional.normalize(feats.float(), dim=1).cpu().numpy()
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise UserError(
                "embed method=umap needs the 'umap-learn' package. Fix: pip install umap-learn, "
                "or use method=tsne."
            ) from None
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
    if method != "tsne":
        raise ConfigError("method", f"unknown embedding method {method!r}.", "use tsne or umap.")
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise UserError(
            "embed needs scikit-learn for t-SNE. Fix: pip install scikit-learn."
        ) from None
    perp = float(min(perplexity, max(2.0, (x.shape[0] - 1) / 3)))
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)


def plot_embedding(points, labels, path: Path, title: str, class_names=None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [int(v) for v in labels]
    k = max(labels) + 1 if labels else 1
    fig, ax = plt.subplots(figsize=(6.5, 6), dpi=110)
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    for c in range(k):
        sel = [i for i, v in enumerate(labels) if v == c]
        if sel:
            ax.scatter(
                points[sel, 0],
                points[sel, 1],
                s=6,
                color=cmap(c % cmap.N),
                alpha=0.8,
                label=class_names[c] if class_names else str(c),
            )
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if k <= 20:
        ax.legend(markerscale=2.5, fontsize=7, loc="best", frameon=False, ncol=1 if k <= 10 else 2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
