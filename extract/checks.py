"""Checks before any job starts: annotation files, video files, checkpoint.

Snakemake calls :func:`check_dataset` from an input function of the dataset's first extraction job, which
it evaluates while building the DAG: a problem stops the run before anything executes, and only for the
datasets a target needs. Every problem is collected so one run reports all of them, each naming the file
(and line), or the keys, and what to do. ``python -m extract check --config config.yaml --dataset qvh``
runs the same checks by hand.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

SHOW = 5  # names listed per problem


class DatasetCheckError(ValueError):
    """One or more problems with a dataset's inputs; the message lists each of them."""


def find_missing_videos(vids, videos_dir: str | Path, exts) -> list[str]:
    """Video ids with no ``<vid><ext>`` file in the folder (one directory listing, not one stat per video)."""
    present = set()
    for entry in os.scandir(videos_dir):
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() in exts:
            present.add(stem)
    return sorted(v for v in vids if v not in present)


def checkpoint_problems(backbone: str, path: str | Path) -> str | None:
    """None when ``path`` holds every key the backbone needs with the right shape, else the reason.

    Reads the file memory-mapped and compares against modules built on the meta device: no weights are
    copied and no model is materialised, so a 4 GB checkpoint is checked in seconds.
    """
    import torch

    from extract.backbone import BACKBONES, TEXT_PREFIX, VISION_PREFIX, CheckpointError, find_problems
    from extract.internvideo2 import InternVideo2Vision, resolve_vision_config
    from extract.text import TextEncoder, select_text_keys

    path = Path(path)
    if not path.is_file():
        return f"checkpoint {path}: no such file"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - older non-zip files cannot be mmapped: read them normally
        try:
            from extract.backbone import load_state_dict

            obj = load_state_dict(path)
        except CheckpointError as cerr:
            return str(cerr)
        except Exception:  # noqa: BLE001
            return f"checkpoint {path}: cannot be read ({type(err).__name__}: {err})"
    for _ in range(2):
        if isinstance(obj, dict) and any(isinstance(obj.get(w), dict) for w in ("model", "module")):
            obj = next(obj[w] for w in ("model", "module") if isinstance(obj.get(w), dict))
    if not isinstance(obj, dict):
        return f"checkpoint {path}: top level is {type(obj).__name__}, not a state dict"
    spec = BACKBONES[backbone]
    cfg = resolve_vision_config(spec["vision"])
    vision_sd = {k[len(VISION_PREFIX):]: v for k, v in obj.items() if k.startswith(VISION_PREFIX)}
    pos = vision_sd.get("pos_embed")
    if pos is not None and pos.ndim == 3 and pos.shape[-1] == cfg.embed_dim \
            and (pos.shape[1] - 1) % cfg.patches_per_frame == 0:
        vision_sd["pos_embed"] = torch.empty(1, 1 + cfg.num_frames * cfg.patches_per_frame, cfg.embed_dim,
                                             device="meta")  # resampled in time when loaded
    with torch.device("meta"):
        vision = InternVideo2Vision(cfg)
        text = TextEncoder(spec["text"])
    missing, misshaped = find_problems(vision, vision_sd, VISION_PREFIX)
    selected, _ = select_text_keys(spec["text"], obj, TEXT_PREFIX)
    t_missing, t_misshaped = find_problems(text.bert, selected, TEXT_PREFIX)
    missing += t_missing
    misshaped += t_misshaped
    if not missing and not misshaped:
        return None
    return str(CheckpointError.from_problems(str(path), missing, misshaped, f"backbone {backbone!r}"))


@functools.lru_cache(maxsize=None)
def _checkpoint_problems_cached(backbone: str, path: str, mtime: float) -> str | None:
    return checkpoint_problems(backbone, path)


def check_dataset(name: str, ds: dict, generated: bool = False) -> dict:
    """Raise DatasetCheckError listing every problem; returns {"videos": n, "missing_videos": [...]}.

    ``generated``: the dataset's files are written by a workflow job (the demo), so they are not checked.
    """
    from extract.backbone import BACKBONES
    from extract.annotations import AnnotationError, load_annotations

    problems, vids, missing = [], set(), []
    if "features" in ds:  # imported features: no videos, no backbone
        queries = []
        for split, path in sorted(ds["annotations"].items()):
            try:
                queries += load_annotations(path)
            except AnnotationError as err:
                problems.append(f"annotations ({split}): {err}")
        if not problems:
            found, missing = imported_problems(name, ds, queries)
            problems += found
        else:  # the annotations are needed for the rest
            problems += folder_problems(name, ds)
        if problems:
            raise DatasetCheckError(f"dataset '{name}' cannot be processed:\n  - " + "\n  - ".join(problems))
        return {"videos": len({q.vid for q in queries}), "missing_videos": missing}
    if generated:  # the generator's spec is checked here, before its job runs
        from extract.demo import DemoSpec

        try:
            DemoSpec.from_config(ds["generate"])
        except (TypeError, ValueError) as err:
            problems.append(f"datasets.{name}.generate: {err}")
    else:
        for split, path in sorted(ds["annotations"].items()):
            try:
                vids |= {q.vid for q in load_annotations(path)}
            except AnnotationError as err:
                problems.append(f"annotations ({split}): {err}")
        videos = Path(ds["videos"])
        if not videos.is_dir():
            problems.append(f"videos: folder {videos} does not exist (datasets.{name}.videos)")
        elif vids:
            exts = tuple(e.lower() for e in ds.get("video_exts", (".mp4", ".mkv", ".webm", ".avi", ".mov")))
            missing = find_missing_videos(vids, videos, exts)
            if missing and not ds.get("allow_missing_videos", False):
                problems.append(
                    f"videos: {len(missing)} of {len(vids)} videos named by the annotations are not in {videos} "
                    f"(first: {', '.join(missing[:SHOW])}{', ...' if len(missing) > SHOW else ''}); add them, or "
                    f"set datasets.{name}.allow_missing_videos: true to proceed without them (they are then "
                    f"listed in results/{name}/extraction.json and left out of the metrics)")
    backbone = ds["backbone"]
    ckpt = ds.get("checkpoint")
    if ckpt:
        p = Path(ckpt)
        problem = (f"checkpoint {p}: no such file (datasets.{name}.checkpoint)" if not p.is_file()
                   else _checkpoint_problems_cached(backbone, str(p), p.stat().st_mtime))
        if problem:
            problems.append(problem)
    elif not BACKBONES[backbone]["offline"]:
        problems.append(f"checkpoint: backbone {backbone!r} needs datasets.{name}.checkpoint "
                        f"(the official InternVideo2-stage2_1b-224p-f4.pt)")
    if problems:
        raise DatasetCheckError(f"dataset '{name}' cannot be processed:\n  - " + "\n  - ".join(problems))
    return {"videos": len(vids), "missing_videos": missing}


def feature_folders(ds: dict) -> tuple[str, list[str], str]:
    """(layout, video folders, query folder) of a dataset entry with imported ``features``."""
    f = ds["features"]
    videos = f["videos"] if isinstance(f["videos"], list) else [f["videos"]]
    return f["import"], videos, f["queries"]


def folder_problems(name: str, ds: dict) -> list[str]:
    _, dirs, qdir = feature_folders(ds)
    return [f"features: folder {d} does not exist (datasets.{name}.features)" for d in dirs + [qdir]
            if not Path(d).is_dir()]


def imported_problems(name: str, ds: dict, queries) -> tuple[list[str], list[str]]:
    """(problems, missing video ids) of imported features against the annotations: missing video and query files,
    clip counts against durations, and QVHighlights relevant_clip_ids past a video's last clip (what crashes
    moment_detr-family training: a positive sampled past the end). Unreadable files are left to the import job,
    which names each and imports the rest."""
    from extract.importer import LAYOUTS
    from extract.npz import NpzError, header

    fmt, dirs, qdir = feature_folders(ds)
    lay, clip_len = LAYOUTS[fmt], float(ds["clip_len"])
    prefix = ds["features"].get("text_prefix", lay.text_prefix)
    problems = folder_problems(name, ds)
    if problems:
        return problems, []
    present = [{e.name[:-4] for e in os.scandir(d) if e.name.endswith(".npz")} for d in dirs]
    qpresent = {e.name[len(prefix):-4] for e in os.scandir(qdir) if e.name.startswith(prefix) and e.name.endswith(".npz")}
    by_vid = {}
    for q in queries:
        by_vid.setdefault(q.vid, []).append(q)
    missing = sorted(v for v in by_vid if not all(v in p for p in present))
    missing_q = sorted(q.key for q in queries if q.key not in qpresent)
    allow = ds.get("allow_missing_videos", False)
    for what, items, where in (("videos", missing, dirs[0]), ("queries", missing_q, qdir)):
        if items and not allow:
            problems.append(f"features: {len(items)} {what} named by the annotations have no file in {where} (first: "
                            f"{', '.join(items[:SHOW])}{', ...' if len(items) > SHOW else ''}); add them, or set "
                            f"datasets.{name}.allow_missing_videos: true to proceed without them")
    short, past = [], []
    steps = lay.video_axes.split().index("clips")
    for vid, qs in sorted(by_vid.items()):
        if vid in missing:
            continue
        try:
            n = header(Path(dirs[0]) / f"{vid}.npz", lay.video_keys)[1][steps]
        except (NpzError, IndexError):
            continue  # the import job reports it
        d = qs[0].duration / clip_len
        if abs(n - d) > 1 + 1e-6:  # round, ceil and floor rules all give a count within one clip
            short.append(f"{vid} ({n} clips, {qs[0].duration:g} s)")
        for q in qs:  # a 2-s QVHighlights clip id c starts at 2c s: a feature clip must cover it
            if q.clip_ids and int(2 * max(q.clip_ids) // clip_len) >= n:
                past.append(f"qid {q.qid} (clip id {max(q.clip_ids)}, {n} clips in {vid}.npz)")
    if short:
        problems.append(f"features: {len(short)} videos' clip counts do not cover their annotated duration at "
                        f"{clip_len:g} s per clip (first: {', '.join(short[:SHOW])}); wrong clip_len, or other videos")
    if past:
        problems.append(f"features: {len(past)} queries have relevant_clip_ids past their video's last feature clip "
                        f"(first: {', '.join(past[:SHOW])}); fix the annotations or the features")
    return problems, missing


def add_args(p) -> None:
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--dataset", required=True)


def main(args) -> int:
    import yaml

    config = yaml.safe_load(Path(args.config).read_text())
    ds = config["datasets"].get(args.dataset)
    if ds is None:
        print(f"error: dataset {args.dataset!r} is not in {args.config}")
        return 2
    try:
        result = check_dataset(args.dataset, ds, generated="generate" in ds)
    except DatasetCheckError as err:
        print(err)
        return 1
    print(f"dataset '{args.dataset}': OK ({result['videos']} videos"
          + (f", {len(result['missing_videos'])} missing and allowed" if result["missing_videos"] else "") + ")")
    return 0
