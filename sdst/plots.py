"""Training curves: losses and selection metrics per epoch, as a PNG beside the run's log."""

from __future__ import annotations

from pathlib import Path


def plot_curves(history: list[dict], path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    epochs = [r["epoch"] for r in history]
    loss_keys = [k for k in history[0] if k.startswith("train_") and k != "train_loss"]
    metric_keys = [k for k in history[0] if k.startswith("select_") and k != "select_score"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    ax = axes[0]
    ax.plot(epochs, [r["train_loss"] for r in history], color="black", lw=2, label="total")
    for k in loss_keys:
        ax.plot(epochs, [r[k] for r in history], lw=1, label=k[len("train_"):])
    ax.set(xlabel="epoch", ylabel="weighted loss", title="training losses", yscale="log")
    ax.legend(fontsize=7, ncol=2)
    ax = axes[1]
    for k in metric_keys:
        ax.plot(epochs, [r[k] for r in history], lw=1.2, label=k[len("select_"):])
    ax.set(xlabel="epoch", ylabel="%", title="selection split metrics")
    ax.legend(fontsize=7, ncol=2)
    ax = axes[2]
    ax.plot(epochs, [r["select_score"] for r in history], color="tab:red", lw=2)
    best = max(history, key=lambda r: r["select_score"])
    ax.axvline(best["epoch"], color="grey", ls="--", lw=1)
    ax.set(xlabel="epoch", ylabel="score", title=f"selection score (best: epoch {best['epoch']})")
    ax2 = ax.twinx()
    ax2.plot(epochs, [r["lr"] for r in history], color="tab:blue", lw=1, alpha=0.6)
    ax2.set_ylabel("learning rate", color="tab:blue")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
