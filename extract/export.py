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

``--format sdst`` writes the layout of the SDST authors' release (``python -m extract import --format sdst`` reads
it back bit for bit): ``DIR/vid_feats/{vid}.npz`` with ``visual_feats_interm_pooled`` (clips, layers, dim) and
``DIR/txt_feats/{qid}.npz`` with ``text_feats`` (layers, tokens, dim), every cached layer in the cached order
(shallow to deep, the final block last), ``--dtype`` float32 (default) or float16.

Layers (moment_detr): an integer picks one cached layer by its configured name (-1 = the backbone's last block); ``mean``
averages the cached layers; ``concat`` puts them side by side (dim x K, in the cached order).

Safety: ids that are not plain file names (empty, ``.``/``..``, a path separator, a control character, over 255
bytes) are refused before anything is written; nothing is ever joined into a path outside ``--out``. The files
are written to a staging folder inside ``--out`` (``.export-staging-<pid>``) and moved into place at the end, the
old folders out first and ``export.json`` last, so a killed export leaves the previous export whole, or (killed
during the final renames) no ``export.json``; never layers of two runs side by side. Every item is read with its
checksum; a damaged store fails naming every damaged item before anything reaches ``--out``, unless
``--skip-damaged`` (the rest is exported, the damaged ones listed in export.json under ``skipped``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from extract.cache import ITEM, CacheError
from extract.reader import Features, open_features

FORMATS = ("moment_detr", "sdst")
# per format: (video folder, query folder, query file prefix) inside --out
FOLDERS = {"moment_detr": ("video", "text", "qid"), "sdst": ("vid_feats", "txt_feats", "")}
STAGING, OLD = ".export-staging-", ".export-old-"


def unsafe_name(name: str, prefix: str = "", suffix: str = ".npz") -> str | None:
    """Why ``prefix + name + suffix`` is not a plain file name inside a folder, or None when it is."""
    if not name:
        return "is empty"
    if name in (".", "..") or (prefix + name) in (".", ".."):
        return "names a folder (. or ..)"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character"
    if len((prefix + name + suffix).encode()) > 255:
        return "is too long for a file name"
    return None


def parse_layer(layer: str, feats: Features, kind: str, flag: str):
    """``--layer``/``--text-layer`` -> "mean", "concat" or the index of a cached layer; errors name ``flag``."""
    if layer in ("mean", "concat"):
        return layer
    try:
        name = int(layer)
    except ValueError:
        raise ValueError(f"{flag} {layer!r}: an integer layer (e.g. -1), 'mean' or 'concat'") from None
    try:
        return feats.layer_index(name, kind)
    except KeyError as err:
        raise ValueError(f"{flag}: {err.args[0]}") from None


def select_layers(x: np.ndarray, layer) -> np.ndarray:
    """(K, N, D) cached layers -> (N, D') as a :func:`parse_layer` value asks (``all``: (K, N, D) as cached)."""
    if layer == "all":
        return x
    if layer == "mean":
        return x.mean(axis=0)
    if layer == "concat":
        return np.concatenate(list(x), axis=1)
    return x[layer]


def _save(path: Path, **arrays) -> int:
    with open(path, "wb") as fh:  # a file object: np.savez would append .npz to a name without it
        np.savez(fh, **arrays)
    return path.stat().st_size


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_leftovers(out: Path) -> None:
    """Staging folders of exports that were killed (their process is gone)."""
    for path in out.glob(".export-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if path.name.startswith((STAGING, OLD)) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _check(feats: Features, text_prefix: str) -> None:
    bad = [f"video id {v!r} {why}" for v in feats.videos if (why := unsafe_name(v))]
    bad += [f"query id {q!r} {why}" for q in feats.queries if (why := unsafe_name(q, text_prefix))]
    if bad:
        raise ValueError(f"{feats.store.path}: {len(bad)} id(s) cannot be file names: " + "; ".join(bad[:5])
                         + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "") + " (rename them in the store's "
                         "source: the video files or the queries file); nothing was written")


def _install(out: Path, stage: Path, folders: tuple[str, str]) -> None:
    """Move the staged export into ``out``: export.json out, old folders out, new folders in, export.json in."""
    old = out / f"{OLD}{os.getpid()}"
    old.mkdir()
    (out / "export.json").unlink(missing_ok=True)
    for sub in folders:
        if (out / sub).exists():
            os.replace(out / sub, old / sub)
    for sub in folders:
        os.replace(stage / sub, out / sub)
    os.replace(stage / "export.json", out / "export.json")
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)


def export(store: str | Path, out: str | Path, fmt: str = "moment_detr", layer: str | None = None,
           text_layer: str | None = None, progress: bool = True, video_dir: str | None = None,
           text_dir: str | None = None, text_prefix: str | None = None, skip_damaged: bool = False,
           dtype: str = "float32") -> dict:
    """Write the export; returns what export.json records (plus counts, bytes and seconds)."""
    from extract.locking import exclusive

    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"--dtype {dtype!r}: float32 or float16")
    video_dir, text_dir, text_prefix = (given if given is not None else default for given, default in
                                        zip((video_dir, text_dir, text_prefix), FOLDERS[fmt]))
    if fmt == "sdst" and (layer or text_layer) not in (None, "all"):
        raise ValueError(f"--layer {layer or text_layer}: --format sdst writes every cached layer (the release's "
                         "layer axis); pick layers when training on it (levels)")
    layer = layer or ("all" if fmt == "sdst" else "-1")
    for flag, sub in (("--video-dir", video_dir), ("--text-dir", text_dir)):
        if unsafe_name(sub, suffix="") or sub.startswith(".export-"):
            raise ValueError(f"{flag} {sub!r}: a folder name inside --out")
    if video_dir == text_dir:
        raise ValueError(f"--video-dir and --text-dir are both {video_dir!r}")
    if unsafe_name(text_prefix or "x", suffix=""):
        raise ValueError(f"--text-prefix {text_prefix!r}: a file name prefix (no path separator)")
    t0 = time.perf_counter()
    feats = open_features(store, warn=False)  # damage is reported below, item by item
    text_layer = layer if text_layer is None else text_layer
    vsel = "all" if fmt == "sdst" else parse_layer(layer, feats, "vision", "--layer")
    tsel = "all" if fmt == "sdst" else parse_layer(text_layer, feats, "text", "--text-layer")
    _check(feats, text_prefix)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --out must be a folder, this is a file")
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / ".export.lock", f"export folder {out}"):
        _clean_leftovers(out)
        stage = out / f"{STAGING}{os.getpid()}"
        info = {"format": fmt, "store": str(feats.store.path), "identity_hash": feats.store.identity_hash,
                "clip_len": feats.clip_len, "layer": layer, "text_layer": text_layer,
                "vision_layers": feats.vision_layers, "text_layers": feats.text_layers,
                "v_feat_dir": str(out / video_dir), "t_feat_dir": str(out / text_dir), "text_prefix": text_prefix,
                "v_feat_dim": None, "t_feat_dim": None, "videos": 0, "queries": 0, "bytes": 0, "dtype": dtype,
                # [CLS] first in every store this project writes, unless imported files said otherwise
                "cls_first": feats.identity.get("text_tokens", "cls") != "plain"}
        try:
            _write(feats, stage, info, (vsel, tsel), (video_dir, text_dir), skip_damaged, progress)
            info["seconds"] = round(time.perf_counter() - t0, 2)
            (stage / "export.json").write_text(json.dumps(info, indent=2) + "\n")
            _install(out, stage, (video_dir, text_dir))
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return info


def _write(feats: Features, stage: Path, info: dict, layers: tuple, folders: tuple[str, str], skip_damaged: bool,
           progress: bool) -> None:
    """Every item into ``stage``, counted in ``info`` (checksums checked on read); the damaged ones are collected,
    and unless ``skip_damaged`` the export stops with all of them listed (the rest is still read, not written)."""
    from tqdm import tqdm

    (vsel, tsel), (video_dir, text_dir), prefix = layers, folders, info["text_prefix"]
    for sub in folders:
        (stage / sub).mkdir(parents=True)
    damaged = [f"{ITEM[g]} '{k}': {p}" for g, items in feats.damaged.items() for k, p in sorted(items.items())]
    if info["format"] == "sdst":  # the release's arrays: video (clips, layers, dim), query (layers, tokens, dim)
        video_arrays, query_arrays = (lambda x: {"visual_feats_interm_pooled": x.transpose(1, 0, 2)},
                                      lambda x: {"text_feats": x})
    else:  # pooler_output is the [CLS] row: only where [CLS] comes first
        video_arrays = lambda x: {"features": x}  # noqa: E731
        query_arrays = lambda x: {"last_hidden_state": x, **({"pooler_output": x[0]} if info["cls_first"] else {})}  # noqa: E731
    plan = (("videos", feats.videos, feats.video, vsel, lambda vid: stage / video_dir / f"{vid}.npz", video_arrays,
             "v_feat_dim"),
            ("queries", feats.queries, feats.query, tsel, lambda qid: stage / text_dir / f"{prefix}{qid}.npz",
             query_arrays, "t_feat_dim"))
    for group, keys, read, sel, path, arrays, dim in plan:
        for key in tqdm(keys, desc=group, unit=ITEM[group], disable=not progress):
            try:
                x = select_layers(read(key), sel).astype(info["dtype"])
            except CacheError as err:
                damaged.append(str(err))
                continue
            if damaged and not skip_damaged:
                continue  # only checking from here on
            info["bytes"] += _save(path(key), **arrays(x))
            info[dim], info[group] = x.shape[-1], info[group] + 1
    if damaged and not skip_damaged:
        raise CacheError(f"{feats.store.path}: {len(damaged)} damaged item(s), nothing exported: "
                         + "; ".join(damaged[:5]) + (f"; and {len(damaged) - 5} more" if len(damaged) > 5 else "")
                         + ". Repair the store (`python -m extract verify --store S` marks them; re-run the "
                         "extraction) or export the rest with --skip-damaged")
    info["skipped"] = damaged


def add_args(p) -> None:
    p.add_argument("--store", required=True, help="a store: `python -m extract videos` output, a pipeline cache "
                                                  "folder, or features.zarr itself")
    p.add_argument("--format", default="moment_detr", choices=FORMATS,
                   help="moment_detr (video/{vid}.npz, text/qid{qid}.npz) or sdst (the SDST release: "
                        "vid_feats/{vid}.npz, txt_feats/{qid}.npz, every cached layer)")
    p.add_argument("--layer", default=None, help="vision layer: an integer (-1 = last block, the default), mean or "
                                                 "concat (moment_detr only)")
    p.add_argument("--text-layer", default=None, help="text layer (default: as --layer)")
    p.add_argument("--out", required=True, help="output folder (the two folders and export.json)")
    p.add_argument("--video-dir", default=None, help="folder name of the video files inside --out (default video, "
                                                     "sdst vid_feats; lighthouse: the feature name, e.g. clip)")
    p.add_argument("--text-dir", default=None, help="folder name of the query files (default text, sdst txt_feats; "
                                                    "lighthouse: clip_text)")
    p.add_argument("--text-prefix", default=None, help="query file name prefix (default qid: qid{qid}.npz; sdst: ''); "
                                                       "'' gives {qid}.npz (what CG-DETR reads for TACoS)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="dtype of the arrays written (the store holds float16, so float16 loses nothing)")
    p.add_argument("--skip-damaged", action="store_true",
                   help="export what is sound and list the damaged items in export.json (default: fail on any)")
    p.add_argument("--no-progress", action="store_true")


def main(args) -> int:
    info = export(args.store, args.out, args.format, args.layer, args.text_layer, not args.no_progress,
                  args.video_dir, args.text_dir, args.text_prefix, args.skip_damaged, args.dtype)
    if info["format"] == "sdst":
        print(f"{args.out}: {info['videos']} videos, {info['queries']} queries in the SDST release's layout "
              f"(layers {info['vision_layers']} / {info['text_layers']}, {info['v_feat_dim']}-d / {info['t_feat_dim']}-d,"
              f" {info['dtype']}), {info['bytes'] / 2**20:.1f} MiB in {info['seconds']} s")
        for item in info["skipped"]:
            print(f"  SKIPPED (damaged) {item}")
        return 0
    flags = f"--v_feat_dirs {info['v_feat_dir']} --v_feat_dim {info['v_feat_dim']} --clip_length {info['clip_len']:g}"
    if info["queries"]:
        flags += f" --t_feat_dir {info['t_feat_dir']} --t_feat_dim {info['t_feat_dim']}"
    print(f"{args.out}: {info['videos']} videos ({info['v_feat_dim']}-d), {info['queries']} queries"
          + (f" ({info['t_feat_dim']}-d)" if info["queries"] else " (the store holds none)")
          + f", {info['bytes'] / 2**20:.1f} MiB in {info['seconds']} s; for moment_detr-style configs: {flags}")
    for item in info["skipped"]:
        print(f"  SKIPPED (damaged) {item}")
    return 0
