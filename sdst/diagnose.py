"""Where the deformable offsets point: the paper's Fig. 4 (§6.2, "Where are the offsets pointing to?") and
Fig. A (§K) as a diagnostic of one trained SDST-family checkpoint.

    python -m sdst.diagnose --checkpoint results/<ds>/<model>/seed<k>/checkpoint_best.pt --split val --out DIR
                            [--features cache/<ds>/<hash>/summary.json] [--cache-dir cache] [--device cpu]

For every refinement level ℓ, decoder query q and head h the paper's weighted offset is
``d_q = Σ_p A_qp Δ_qp`` (§6.2), with A the softmax weights over the P points of the head and Δ the offsets.
The offsets are in units of the half-width of the reference the level reads (R^ℓ: the previous level's
prediction, R^0 at the first): the module samples at ``c + (w/2)·Δ`` (sdst/model/sparse_attention.py), so
−1 / +1 are the predicted moment's left / right ends and 0 its centre, as the paper states for Fig. 4. (Eq. 9
read literally, ``c + w ⊙ Δ`` with w the full width, would put the ends at ±0.5; the text's ±1 is what this
implementation and this diagnostic use.) Every one of the M decoder queries of every query of the split counts,
as in Fig. 4 ("across M decoder queries and N batch elements"); the JSON also gives the statistics of the
best-scoring decoder query alone (the one whose window is listed first).

Writes ``DIR/offsets.png`` (one panel per head, a violin per level, the ends and the head's initial offset
marked) and ``DIR/offsets.json`` (per level and head: mean, std, quantiles, the fractions beyond each end, and
beyond them by more than MARGIN half-widths, the count the figure shows).
The features and annotations are the ones the checkpoint names (its run configuration and the identity of
the feature cache it was trained on), as sdst.infer reads them.

The attention is read with forward hooks on the deformable attention modules, whose forward returns
``(H, info)`` with ``info["offsets"]`` and ``info["weights"]`` (B, M, heads, points) and the reference R as its
second argument: nothing in the model changes, so training runs are not invalidated by this diagnostic.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from extract.cli import exits_on_bad_input

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# "Beyond the ends" in the figure and the report: by more than this many half-widths (5 % of the moment's width).
# A head left at its initial offset of ±1 (deformable CA, Fig. 4) scatters around the end by float noise and would
# count as beyond on about half of its queries without the margin; the JSON gives both counts.
MARGIN = 0.1


class OffsetRecorder:
    """Context manager: forward hooks on every deformable attention module (RDSA, deformable CA) of ``model``,
    recording per call the offsets Δ, the weights A, the sampled positions and the reference R, in call order
    (= level order: the levels run one after the other, through one shared module or one per level)."""

    def __init__(self, model):
        from sdst.model.sparse_attention import _DeformableBase

        self.modules = [m for m in model.modules() if isinstance(m, _DeformableBase)]
        self.calls: list[dict] = []
        self._handles = []

    def _hook(self, module, args, output):
        _, info = output
        self.calls.append({"offsets": info["offsets"].detach(), "weights": info["weights"].detach(),
                           "positions": info["positions"].detach(), "references": args[1].detach()})

    def __enter__(self):
        self._handles = [m.register_forward_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []

    def take(self) -> list[dict]:
        calls, self.calls = self.calls, []
        return calls


def check_model(model, run: dict) -> None:
    """A ValueError naming why a checkpoint has no deformable offsets to show."""
    arch, params = run["model"]["arch"], run["model"]["params"]
    name = run["model"].get("name", arch)
    if arch != "sdst":
        raise ValueError(f"model {name!r} (arch {arch}) has no deformable attention: the offsets diagnostic is for "
                         "SDST-family models (arch sdst, sparse_attention rdsa or deformable_ca)")
    if not OffsetRecorder(model).modules:
        raise ValueError(f"model {name!r} has no deformable attention (sparse_attention "
                         f"{params.get('sparse_attention')!r}, sparse_order {params.get('sparse_order')}): "
                         "no offsets to show")


def weighted_offsets(offsets, weights):
    """d = Σ_p A_p Δ_p over the last (points) axis (§6.2)."""
    return (weights * offsets).sum(-1)


def collect(model, dataset, batch_size: int = 64, device: str = "cpu", use_actionness: bool = True) -> dict:
    """Run ``model`` over ``dataset`` (fp32, eval mode) -> {"d": [per level (N, M, heads)], "mass_outside": [per
    level (N, M, heads): attention mass on points beyond the video's ends], "best": (N,) index of the
    best-scoring decoder query}."""
    import torch

    from sdst.data import batch_to, collate
    from sdst.postprocess import confidence

    model = model.to(device).eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    k = len(model.levels)
    d, outside, best = [[] for _ in range(k)], [[] for _ in range(k)], []
    with torch.no_grad(), OffsetRecorder(model) as rec:
        for batch in loader:
            batch = batch_to(batch, device)
            out = model(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"])
            calls = rec.take()
            if len(calls) != k:
                raise RuntimeError(f"{len(calls)} deformable attention calls for {k} levels")
            for lvl, c in enumerate(calls):
                d[lvl].append(weighted_offsets(c["offsets"], c["weights"]).float().cpu().numpy())
                beyond = ((c["positions"] < 0) | (c["positions"] > 1)).to(c["weights"].dtype)
                outside[lvl].append((c["weights"] * beyond).sum(-1).float().cpu().numpy())
            logits = out["pred_logits"].float().cpu().numpy()
            if use_actionness and out.get("pred_actionness") is not None:
                scores = confidence(logits, out["pred_actionness"].float().cpu().numpy())
            else:
                scores = logits  # the sigmoid is monotonic
            best.append(scores.argmax(1))
    return {"d": [np.concatenate(x) for x in d], "mass_outside": [np.concatenate(x) for x in outside],
            "best": np.concatenate(best)}


def summarise(values: np.ndarray) -> dict:
    """Mean, std, extremes, quantiles and the fractions beyond the ends (d < −1, d > +1; |d| > 1 + MARGIN) of a
    1-D array."""
    v = np.asarray(values, dtype=np.float64).ravel()
    q = np.quantile(v, QUANTILES)
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max()), "quantiles": {str(p): float(x) for p, x in zip(QUANTILES, q)},
            "frac_below_-1": float((v < -1).mean()), "frac_above_+1": float((v > 1).mean()),
            "frac_beyond_ends": float((np.abs(v) > 1).mean()),
            "frac_beyond_ends_by_margin": float((np.abs(v) > 1 + MARGIN).mean())}


def initial_offsets(heads: int) -> list[float]:
    """d_q of each head at initialisation: weights of G_Δ and G_A are 0, the bias of G_Δ is the head's centre
    plus a spread symmetric about it, A is uniform, so d_q is the centre (sparse_attention.HEAD_CENTRES)."""
    from sdst.model.sparse_attention import HEAD_CENTRES

    return [HEAD_CENTRES[h % len(HEAD_CENTRES)] for h in range(heads)]


def statistics(collected: dict, levels: list[int], meta: dict) -> dict:
    d, best = collected["d"], collected["best"]
    heads = d[0].shape[-1]
    init = initial_offsets(heads)
    rows = np.arange(len(best))
    out = {**meta, "units": "half-widths of the level's reference: -1 / +1 = the predicted moment's left / right "
                            "end, 0 = its centre",
           "definition": "d_q = sum_p A_qp * Delta_qp (SDST paper, Sec. 6.2, Fig. 4)",
           "queries": int(d[0].shape[0]), "decoder_queries": int(d[0].shape[1]), "heads": heads,
           "levels": []}
    for lvl, (dl, mass) in enumerate(zip(d, collected["mass_outside"])):
        entry = {"level": lvl + 1, "cache_layer": levels[lvl], "heads": []}
        for h in range(heads):
            s = summarise(dl[..., h])
            s["head"], s["init"] = h, init[h]
            s["attention_beyond_video"] = float(mass[..., h].mean())
            top = summarise(dl[rows, best, h])
            s["best_query"] = {k: top[k] for k in ("mean", "std", "frac_below_-1", "frac_above_+1")}
            entry["heads"].append(s)
        out["levels"].append(entry)
    return out


def plot(collected: dict, stats: dict, path: str | Path) -> Path:
    """One panel per head, a violin of d_q per level; the ends (±1) dashed, the centre dotted, the head's
    initial offset as a red bar, and the share of d_q beyond the ends above each violin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = collected["d"]
    k, heads = len(d), d[0].shape[-1]
    cols = min(heads, 4)
    rows = (heads + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows + 0.6), sharey=True, squeeze=False)
    lo = min(-1.5, min(float(x.min()) for x in d))
    hi = max(1.5, max(float(x.max()) for x in d))
    top = hi + 0.12 * (hi - lo)  # room for the percentages above the violins
    pos = np.arange(1, k + 1)
    for h in range(heads):
        ax = axes[h // cols][h % cols]
        ax.axhspan(-1, 1, color="0.93", zorder=0)
        for y, style in ((-1, "--"), (1, "--"), (0, ":")):
            ax.axhline(y, color="0.35", lw=0.9, ls=style, zorder=1)
        parts = ax.violinplot([d[lvl][..., h].ravel() for lvl in range(k)], positions=pos, widths=0.8,
                              showmedians=True, showextrema=False)
        for body in parts["bodies"]:
            body.set_facecolor("tab:blue")
            body.set_alpha(0.55)
        init = stats["levels"][0]["heads"][h]["init"]
        ax.hlines([init] * k, pos - 0.35, pos + 0.35, color="tab:red", lw=1.4, zorder=3)
        for lvl in range(k):
            frac = stats["levels"][lvl]["heads"][h]["frac_beyond_ends_by_margin"]
            ax.text(pos[lvl], top, f"{100 * frac:.0f}%", ha="center", va="top", fontsize=7, color="0.25")
        ax.set_xticks(pos, [f"{lvl + 1}" for lvl in range(k)])
        ax.set_ylim(lo, top)
        ax.set_title(f"head {h}", fontsize=9)
        if h % cols == 0:
            ax.set_ylabel("d_q (half-widths; ±1 = ends)")
        if h // cols == rows - 1:
            ax.set_xlabel("refinement level")
    for h in range(heads, rows * cols):
        axes[h // cols][h % cols].axis("off")
    fig.suptitle(f"{stats.get('model', '')} on {stats.get('dataset', '')} {stats.get('split', '')}: "
                 f"d_q = Σ_p A_qp Δ_qp of {stats['decoder_queries']} decoder queries × {stats['queries']} queries "
                 f"\n(blue bar: median; red: the head's initial offset; above: share more than {MARGIN:g} beyond the "
                 "ends ±1)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_section(json_paths: list[str], report_dir: str | Path) -> str:
    """Markdown for the significance report: per model a table of the mean d_q per level and head, mean ± std over
    the seeds given (one offsets.json per seed), with the share beyond the ends, and the first seed's figure (the
    PNG beside its JSON)."""
    import os

    from sdst.reporting.over_seeds import by_model, cell, seeds_text

    if not json_paths:
        return ""
    lines = ["## Where the deformable offsets point (paper Fig. 4)", "",
             "d_q = Σ_p A_qp Δ_qp of every decoder query over the headline split, from each seed's best checkpoint, "
             "in half-widths of the moment each level refines: −1 / +1 are its predicted ends. Cells: the mean d_q, "
             "mean ± std over seeds, and in brackets the share more than "
             f"{MARGIN:g} half-widths beyond the ends (mean over seeds); `init` is the head's value at "
             "initialisation. The figure is the first seed's.", ""]
    for paths, runs in by_model(json_paths):
        first = runs[0]
        heads = first["heads"]
        lines += [f"### {first['model']} on {first['dataset']} ({first['sparse_attention']}, {seeds_text(runs)})",
                  "", "| level | " + " | ".join(f"head {h}" for h in range(heads)) + " |", "|---|" + "---:|" * heads]
        lines.append("| init | " + " | ".join(f"{s['init']:+.2f}" for s in first["levels"][0]["heads"]) + " |")
        for i, lvl in enumerate(first["levels"]):
            cells = []
            for h in range(heads):
                stats = [r["levels"][i]["heads"][h] for r in runs]
                share = sum(s["frac_beyond_ends_by_margin"] for s in stats) / len(stats)
                cells.append(f"{cell([s['mean'] for s in stats], '+.2f')} ({100 * share:.0f}%)")
            lines.append(f"| {lvl['level']} (layer {lvl['cache_layer']}) | " + " | ".join(cells) + " |")
        figure = os.path.relpath(Path(paths[0]).with_suffix(".png"), report_dir)
        lines += ["", f"![offsets of {first['model']}]({figure})", ""]
    return "\n".join(lines)


def features_summary(dims: dict, dataset: str, cache_dir: str | Path = "cache") -> Path:
    """The extraction summary of the cache the checkpoint was trained on: ``{cache_dir}/{dataset}/{hash}`` with
    the hash of the extraction identity the checkpoint carries (extract.identity.cache_dir)."""
    from extract.cache import identity_hash

    identity = dims.get("extraction")
    if not identity:
        raise ValueError("the checkpoint carries no extraction identity: give --features")
    path = Path(cache_dir) / dataset / identity_hash(identity) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the feature cache the checkpoint was trained on is not there "
                                "(run the extraction, or give --features / --cache-dir)")
    return path


def checkpoint_split(checkpoint: str, split: str, features: str | None = None, cache_dir: str = "cache",
                     require_labels: bool = False):
    """(model in eval mode, run config, dataset of the split's queries with features) for a checkpoint diagnostic:
    the annotations and the feature cache the checkpoint names (``features`` / ``cache_dir`` point elsewhere)."""
    from extract.annotations import load_annotations
    from sdst.checkpoint import model_from_checkpoint
    from sdst.data import FeatureDataset, cache_info

    model, run_cfg, dims = model_from_checkpoint(checkpoint)
    data = run_cfg["data"]
    if split not in data["annotations"]:
        raise ValueError(f"split {split!r} is not one of the dataset's annotation files {sorted(data['annotations'])}")
    info = cache_info(str(features or features_summary(dims, data["name"], cache_dir)))
    queries = load_annotations(data["annotations"][split], require_labels=require_labels)
    ds = FeatureDataset(queries, info.store, data["clip_len"], data["saliency"], min_clips=0, failed=info.failed,
                        failed_queries=info.failed_queries)
    if not len(ds):
        raise ValueError(f"{split}: no query of the split has features in {info.store}")
    return model, run_cfg, ds


def checkpoint_parser(prog: str, doc: str, checkpoint_help: str, out_help: str) -> argparse.ArgumentParser:
    """The command line shared by the checkpoint diagnostics (sdst.diagnose, sdst.levels)."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help=checkpoint_help)
    p.add_argument("--split", required=True, help="annotation split of the checkpoint's dataset, e.g. val")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--features", help="extraction summary.json (default: the cache the checkpoint names)")
    p.add_argument("--cache-dir", default="cache", help="extract.cache_dir of config.yaml (default: cache)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    return p


def run(checkpoint: str, split: str, out: str | Path, features: str | None = None, cache_dir: str = "cache",
        device: str = "cpu", batch_size: int = 64) -> dict:
    from extract.devices import resolve_device
    from sdst.config import ranks_by_actionness

    model, run_cfg, ds = checkpoint_split(checkpoint, split, features, cache_dir)
    check_model(model, run_cfg)
    data = run_cfg["data"]
    collected = collect(model, ds, batch_size, resolve_device(device), ranks_by_actionness(run_cfg["train"]))
    meta = {"checkpoint": str(checkpoint), "model": run_cfg["model"].get("name"), "dataset": data["name"],
            "split": split, "seed": run_cfg.get("seed"),
            "sparse_attention": run_cfg["model"]["params"].get("sparse_attention")}
    stats = statistics(collected, list(model.levels), meta)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "offsets.json").write_text(json.dumps(stats, indent=2) + "\n")
    plot(collected, stats, out / "offsets.png")
    return stats


@exits_on_bad_input
def main(argv: list[str] | None = None) -> int:
    p = checkpoint_parser("python -m sdst.diagnose", __doc__,
                          "checkpoint of an SDST-family model (rdsa or deformable_ca)",
                          "folder for offsets.png and offsets.json")
    args = p.parse_args(argv)
    stats = run(args.checkpoint, args.split, args.out, args.features, args.cache_dir, args.device, args.batch_size)
    for lvl in stats["levels"]:
        cells = ", ".join(f"h{s['head']} {s['mean']:+.2f} ({100 * s['frac_beyond_ends_by_margin']:.0f}% beyond)"
                          for s in lvl["heads"])
        print(f"level {lvl['level']}: {cells}")
    print(f"{stats['queries']} queries x {stats['decoder_queries']} decoder queries -> {args.out}/offsets.png, "
          "offsets.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
