"""Export a feature store to the files other video-grounding codebases read.

    python -m extract export --store OUT --format moment_detr --layer -1 --out DIR [--text-layer -1]

``--format moment_detr`` is the layout of moment_detr and its descendants that kept its data loader
(QD-DETR, CG-DETR, lighthouse; README "Export"): ``DIR/video/{vid}.npz`` with ``features``, float32
(clips, dim), one row per ``clip_len`` seconds from the start of the video, and ``DIR/text/qid{qid}.npz``
with ``last_hidden_state``, float32 (tokens, dim): the tokens the text encoder saw, [CLS] first (InternVideo2's
recipe has no [SEP]), and ``pooler_output``, float32 (dim,): the [CLS] row (their ``q_feat_type`` option).
Those loaders L2-normalise rows themselves (``normalize_v``/``normalize_t``), cut at ``max_v_l``/``max_q_l``
and take ``ctx_l`` = the clip count, mapping seconds to clips with ``clip_len``: the rows are exported as
cached, not normalised. ``DIR/export.json`` records the store, the layers, the dims and the clip length, the
values to set in their configs.

``--video-dir``/``--text-dir`` name the two folders (lighthouse reads ``features/<dataset>/<feature>`` and
``features/<dataset>/clip_text``) and ``--text-prefix ''`` writes ``{qid}.npz`` (QD-DETR and CG-DETR for TACoS).

Layers: an integer picks one cached layer by its configured name (-1 = the backbone's last block); ``mean``
averages the cached layers; ``concat`` puts them side by side (dim x K, in the cached order).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from extract.reader import Features, open_features

FORMATS = ("moment_detr",)


def select_layers(x: np.ndarray, layer: str, feats: Features, kind: str) -> np.ndarray:
    """(K, N, D) cached layers -> (N, D') as ``layer`` asks (see the module docstring)."""
    if layer == "mean":
        return x.mean(axis=0)
    if layer == "concat":
        return np.concatenate(list(x), axis=1)
    try:
        index = int(layer)
    except ValueError:
        raise ValueError(f"--layer {layer!r}: an integer layer (e.g. -1), 'mean' or 'concat'") from None
    return x[feats.layer_index(index, kind)]


def _save(path: Path, **arrays) -> int:
    tmp = path.with_name(path.name + ".tmp.npz")  # np.savez appends .npz to names without it
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # a killed export leaves no half-written file under the real name
    return path.stat().st_size


def export(store: str | Path, out: str | Path, fmt: str = "moment_detr", layer: str = "-1",
           text_layer: str | None = None, progress: bool = True, video_dir: str = "video", text_dir: str = "text",
           text_prefix: str = "qid") -> dict:
    """Write the export; returns what export.json records (plus counts, bytes and seconds)."""
    from tqdm import tqdm

    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    t0 = time.perf_counter()
    feats = open_features(store)
    out = Path(out)
    for sub in (video_dir, text_dir):
        if not sub or "/" in sub or sub in (".", ".."):
            raise ValueError(f"--video-dir/--text-dir {sub!r}: a folder name inside --out")
        (out / sub).mkdir(parents=True, exist_ok=True)
    text_layer = layer if text_layer is None else text_layer
    info = {"format": fmt, "store": str(feats.store.path), "identity_hash": feats.store.identity_hash,
            "clip_len": feats.clip_len, "layer": layer, "text_layer": text_layer,
            "vision_layers": feats.vision_layers, "text_layers": feats.text_layers,
            "v_feat_dir": str(out / video_dir), "t_feat_dir": str(out / text_dir), "text_prefix": text_prefix,
            "v_feat_dim": None, "t_feat_dim": None, "videos": 0, "queries": 0, "bytes": 0}
    for vid in tqdm(feats.videos, desc="videos", unit="video", disable=not progress):
        v = select_layers(feats.video(vid), layer, feats, "vision").astype(np.float32)
        info["bytes"] += _save(out / video_dir / f"{vid}.npz", features=v)
        info["v_feat_dim"], info["videos"] = v.shape[1], info["videos"] + 1
    for qid in tqdm(feats.queries, desc="queries", unit="query", disable=not progress):
        t = select_layers(feats.query(qid), text_layer, feats, "text").astype(np.float32)
        info["bytes"] += _save(out / text_dir / f"{text_prefix}{qid}.npz", last_hidden_state=t, pooler_output=t[0])
        info["t_feat_dim"], info["queries"] = t.shape[1], info["queries"] + 1
    info["seconds"] = round(time.perf_counter() - t0, 2)
    (out / "export.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def add_args(p) -> None:
    p.add_argument("--store", required=True, help="a store: `python -m extract videos` output, a pipeline cache "
                                                  "folder, or features.zarr itself")
    p.add_argument("--format", default="moment_detr", choices=FORMATS)
    p.add_argument("--layer", default="-1", help="vision layer: an integer (-1 = last block), mean or concat")
    p.add_argument("--text-layer", default=None, help="text layer (default: as --layer)")
    p.add_argument("--out", required=True, help="output folder (video/, text/, export.json)")
    p.add_argument("--video-dir", default="video", help="folder name of the video files inside --out "
                                                          "(lighthouse: the feature name, e.g. clip)")
    p.add_argument("--text-dir", default="text", help="folder name of the query files (lighthouse: clip_text)")
    p.add_argument("--text-prefix", default="qid", help="query file name prefix: qid{qid}.npz; '' gives {qid}.npz "
                                                        "(what QD-DETR/CG-DETR read for TACoS)")
    p.add_argument("--no-progress", action="store_true")


def main(args) -> int:
    from sdst.cli import exits_on_bad_input

    @exits_on_bad_input
    def run() -> int:
        try:
            info = export(args.store, args.out, args.format, args.layer, args.text_layer, not args.no_progress,
                          args.video_dir, args.text_dir, args.text_prefix)
        except KeyError as err:  # a layer that is not cached
            raise ValueError(err.args[0]) from None
        print(f"{args.out}: {info['videos']} videos ({info['v_feat_dim']}-d), {info['queries']} queries "
              f"({info['t_feat_dim']}-d), {info['bytes'] / 2**20:.1f} MiB in {info['seconds']} s; for "
              f"moment_detr-style configs: --v_feat_dirs {info['v_feat_dir']} --t_feat_dir "
              f"{info['t_feat_dir']} --v_feat_dim {info['v_feat_dim']} --t_feat_dim {info['t_feat_dim']} "
              f"--clip_length {info['clip_len']:g}")
        return 0

    return run()
