"""Compare two sets of features, layer by layer: "does my extraction give the authors' release?"

    python -m extract compare --ours STORE --theirs DIR_OR_STORE [--max-rel-l2 0.05] [--out compare/]

``--ours`` is a store (a pipeline cache folder, an ``extract videos``/``extract import`` folder or the
features.zarr itself); ``--theirs`` another store, or files: a folder holding ``vid_feats/`` (and
``txt_feats/``), the SDST release's layout, or ``video/`` and ``text/`` (moment_detr's, as ``extract export``
writes them), or a folder of video files itself (``--format`` says which layout, ``--theirs-queries`` where
their queries are). (``--store``/``--with`` are the same options.) Their files are read exactly as
``python -m extract import`` reads them, with its options for the layer names (``--theirs-layers``).

For every layer both sides name (-1 = the final block) and every video (and query) both hold: the relative L2
distance ``||ours - theirs|| / ||theirs||`` over all clips and dims, and the mean cosine similarity of the clip
rows; over the common clips when the counts differ (listed). Printed: one summary row per layer (median and
worst video), the worst items; written to ``--out``: ``compare.json`` (every value), ``compare.md`` and
``compare.png`` (a histogram of the per-video distances of each layer). Exit status 1 when a layer's worst
relative L2 exceeds ``--max-rel-l2`` (default 0.05; the float16 store alone puts float32 files ~2e-4 away), 0
otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from extract.cache import FeatureStore


class _Side:
    """One side of the comparison: names of the cached layers and a reader per group."""

    def __init__(self, path: str, fmt: str | None = None, queries: str | None = None, layers=None, text_layers=None):
        from extract.reader import store_path

        p = Path(path)
        self.name = str(p)
        if (p / "zarr.json").is_file() or (p / "features.zarr" / "zarr.json").is_file():
            self.store = FeatureStore(store_path(p))
            ident = self.store.identity
            self.layers = {"videos": list(ident["vision_layers"]), "queries": list(ident["text_layers"])}
            self.keys = {g: self.store.keys(g) for g in ("videos", "queries")}
            return
        from extract.importer import import_identity, items_from_folders

        self.store = None
        if (p / "vid_feats").is_dir():
            fmt, vdir, qdir = fmt or "sdst", p / "vid_feats", queries or (p / "txt_feats")
        elif (p / "video").is_dir():
            fmt, vdir, qdir = fmt or "moment_detr", p / "video", queries or (p / "text")
        else:
            fmt, vdir, qdir = fmt or "sdst", p, queries
        qdir = qdir if qdir and Path(qdir).is_dir() else None
        written = p / "export.json"  # an export of this project names its layers
        if layers is None and written.is_file():
            info = json.loads(written.read_text())
            layers, text_layers = info.get("vision_layers"), info.get("text_layers")
        self.ident = import_identity(fmt, 1.0, layers, text_layers, video_dirs=[vdir])
        self.layers = {"videos": self.ident["vision_layers"], "queries": self.ident["text_layers"]}
        videos, queries_, _, _ = items_from_folders(fmt, [vdir], qdir)
        self.files = {"videos": videos, "queries": {k: [f] for k, f in queries_.items()}}
        self.keys = {g: sorted(self.files[g]) for g in ("videos", "queries")}

    def read(self, group: str, key: str) -> np.ndarray:
        """(layers, steps, dim) float32."""
        if self.store is not None:
            x = self.store.read_video(key) if group == "videos" else self.store.read_query(key)
        else:
            from extract.importer import read_item

            x = read_item(group, self.files[group][key], self.ident)
            if len(x) != len(self.layers[group]):
                raise ValueError(f"{self.files[group][key][0]}: {len(x)} layers, but {len(self.layers[group])} are "
                                 f"named ({self.layers[group]}); name theirs with --theirs-layers / --theirs-text-layers")
        return np.asarray(x, np.float32)


def distances(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(relative L2 of ``a`` against ``b``, mean cosine of their rows), rows = clips or tokens."""
    rel = float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), 1e-12))
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    cos = float(np.mean((a * b).sum(-1) / np.maximum(na * nb, 1e-12)))
    return rel, cos


def compare(ours: _Side, theirs: _Side) -> dict:
    """{group: {"layers": [...], "items": {key: {layer: [rel_l2, cos]}}, "length_mismatch": {key: [n, m]},
    "only_ours": n, "only_theirs": n}}"""
    out = {}
    for group in ("videos", "queries"):
        layers = [n for n in ours.layers[group] if n in theirs.layers[group]]
        common = sorted(set(ours.keys[group]) & set(theirs.keys[group]))
        res = {"layers": layers, "items": {}, "length_mismatch": {},
               "only_ours": len(set(ours.keys[group]) - set(common)),
               "only_theirs": len(set(theirs.keys[group]) - set(common))}
        for key in common:
            a, b = ours.read(group, key), theirs.read(group, key)
            if a.shape[-1] != b.shape[-1]:
                raise ValueError(f"{group[:-1]} '{key}': dim {a.shape[-1]} in {ours.name}, {b.shape[-1]} in "
                                 f"{theirs.name}: not the same features")
            n = min(a.shape[1], b.shape[1])
            if a.shape[1] != b.shape[1]:
                res["length_mismatch"][key] = [a.shape[1], b.shape[1]]
            res["items"][key] = {str(layer): list(distances(a[ours.layers[group].index(layer), :n],
                                                            b[theirs.layers[group].index(layer), :n]))
                                 for layer in layers}
        out[group] = res
    return out


def table(result: dict, max_rel: float) -> tuple[str, bool]:
    """(Markdown summary, whether every layer is within ``max_rel``)."""
    lines, ok = [], True
    for group, res in result.items():
        if not res["items"]:
            lines.append(f"{group}: none in common ({res['only_ours']} only ours, {res['only_theirs']} only theirs)\n")
            continue
        lines += [f"## {group}: {len(res['items'])} compared, {res['only_ours']} only ours, {res['only_theirs']} "
                  f"only theirs, {len(res['length_mismatch'])} with other lengths", "",
                  "| layer | median rel. L2 | worst rel. L2 | worst item | mean cosine | lowest cosine | within |",
                  "|---:|---:|---:|---|---:|---:|---|"]
        for layer in map(str, res["layers"]):
            rel = {k: v[layer][0] for k, v in res["items"].items()}
            cos = [v[layer][1] for v in res["items"].values()]
            worst = max(rel, key=rel.get)
            good = rel[worst] <= max_rel
            ok &= good
            lines.append(f"| {layer} | {np.median(list(rel.values())):.3g} | {rel[worst]:.3g} | {worst} | "
                         f"{np.mean(cos):.6f} | {min(cos):.6f} | {'yes' if good else 'NO'} |")
        for key, (n, m) in list(res["length_mismatch"].items())[:5]:
            lines.append(f"\n{key}: {n} steps ours, {m} theirs (compared over the first {min(n, m)})")
        lines.append("")
    return "\n".join(lines), ok


def plot(result: dict, path: Path, max_rel: float) -> None:
    """One histogram per group and layer (rows, columns) of the per-item relative L2, on shared log bins, the
    threshold dashed; identical items sit at the left edge (1e-8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in result if result[g]["items"]]
    cols = max([len(result[g]["layers"]) for g in groups] or [1])
    fig, axes = plt.subplots(max(len(groups), 1), cols, figsize=(2.6 * cols + 0.6, 2.4 * max(len(groups), 1)),
                             squeeze=False, sharex=True)
    edges = np.linspace(-8, 1, 46)
    for row, group in zip(axes, groups):
        res = result[group]
        for ax, layer in zip(row, map(str, res["layers"])):
            rel = {k: v[layer][0] for k, v in res["items"].items()}
            worst = max(rel, key=rel.get)
            ax.hist(np.clip(np.log10(np.maximum(list(rel.values()), 1e-8)), -8, 1), bins=edges,
                    color="tab:red" if rel[worst] > max_rel else "tab:blue")
            ax.axvline(np.log10(max_rel), color="k", linestyle="--", linewidth=0.8)
            ax.set_title(f"{group}, layer {layer}\nworst {rel[worst]:.2g} ({worst})", fontsize=8)
            ax.tick_params(labelsize=7)
        row[0].set_ylabel(f"{group}", fontsize=8)
        for ax in row[len(res["layers"]):]:
            ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("log10 relative L2", fontsize=8)
    fig.suptitle("ours against theirs, per item (dashed: --max-rel-l2; 1e-8 and below: identical)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _names(text):
    return None if text is None else [int(x) for x in text.split(",")]


def add_args(p) -> None:
    p.add_argument("--ours", "--store", dest="ours", required=True, help="a feature store (ours)")
    p.add_argument("--theirs", "--with", dest="theirs", required=True,
                   help="another store, or a folder of files (vid_feats/ + txt_feats/, video/ + text/, or video files)")
    p.add_argument("--format", default=None, choices=["sdst", "moment_detr"], help="layout of --theirs files")
    p.add_argument("--theirs-queries", default=None, help="folder of their query files")
    p.add_argument("--theirs-layers", default=None, help="names of their vision layers (sdst default -5..-1)")
    p.add_argument("--theirs-text-layers", default=None, help="names of their text layers (default: as above)")
    p.add_argument("--max-rel-l2", type=float, default=0.05, help="exit 1 above this relative L2 (any layer)")
    p.add_argument("--out", default="compare", help="folder for compare.json, compare.md, compare.png")


def main(args) -> int:
    ours = _Side(args.ours)
    theirs = _Side(args.theirs, args.format, args.theirs_queries, _names(args.theirs_layers),
                   _names(args.theirs_text_layers))
    result = compare(ours, theirs)
    md, ok = table(result, args.max_rel_l2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps({"ours": ours.name, "theirs": theirs.name, **result}, indent=1))
    (out / "compare.md").write_text(f"# {ours.name} against {theirs.name}\n\n{md}")
    plot(result, out / "compare.png", args.max_rel_l2)
    print(md)
    print(f"{'within' if ok else 'ABOVE'} --max-rel-l2 {args.max_rel_l2:g}; {out}/compare.md, compare.png, compare.json")
    return 0 if ok else 1
