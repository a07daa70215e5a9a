"""Inference over the feature cache: a checkpoint + a split -> submission records (QVHighlights format).

``python -m sdst.infer --checkpoint C --features SUMMARY --split val --out P.jsonl`` writes the predictions,
``P.gt.jsonl`` (the ground truth of exactly the queries predicted, for the evaluator) and ``P.info.json``
(how many queries of the split had no features — failed or missing videos — and were left out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from extract.devices import resolve_device
from extract.cli import exits_on_bad_input
from sdst.config import ranks_by_actionness
from sdst.data import FeatureDataset, batch_to, cache_info, collate, query_record
from sdst.postprocess import to_records


def autocast_for(device: str, amp: bool):
    if device.startswith("cuda") and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict_records(model, dataset: FeatureDataset, clip_len: float, batch_size: int = 64, device: str = "cpu",
                    nms_sigma: float = 0.5, amp: bool = True, use_actionness: bool = True) -> list[dict]:
    """Records of every query of ``dataset``; ``use_actionness``: confidence sqrt(p · actionness) (Eq. 23) or p
    alone (sdst.config.ranks_by_actionness: the run's actionness head is trained only if λ_act > 0)."""
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    records = []
    for batch in loader:
        batch = batch_to(batch, device)
        with autocast_for(device, amp):
            out = model(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"])
        records += to_records(out, batch["meta"], clip_len, sigma=nms_sigma, use_actionness=use_actionness)
    model.train(was_training)
    return records


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(path)


def run_split(checkpoint: str, features: str, split: str, out: str, device: str = "auto") -> dict:
    from extract.annotations import load_annotations
    from sdst.checkpoint import model_from_checkpoint

    model, run, dims = model_from_checkpoint(checkpoint)
    data, train = run["data"], run["train"]
    if split not in data["annotations"]:
        raise ValueError(f"split {split!r} is not one of the dataset's annotation files {sorted(data['annotations'])}")
    info = cache_info(features)
    queries = load_annotations(data["annotations"][split], require_labels=True)
    ds = FeatureDataset(queries, info.store, data["clip_len"], data["saliency"], min_clips=0,
                        preload=False, failed=info.failed, failed_queries=info.failed_queries)
    dev = resolve_device(device)
    model.to(dev)
    records = predict_records(model, ds, data["clip_len"], train["eval_batch_size"], dev, train["nms_sigma"],
                              train["amp"], use_actionness=ranks_by_actionness(train))
    write_jsonl(out, records)
    write_jsonl(str(out) + ".gt.jsonl", [query_record(q) for q in ds.items])
    left_out = sorted({q.vid for q in queries} - {q.vid for q in ds.items})
    summary = {"split": split, "queries": len(queries), "predicted": len(records),
               "left_out_queries": len(queries) - len(records), "left_out_videos": left_out,
               "skipped": ds.skipped}
    Path(str(out) + ".info.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@exits_on_bad_input
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdst.infer", description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--features", required=True, help="extraction summary.json of the dataset's cache")
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    s = run_split(args.checkpoint, args.features, args.split, args.out, args.device)
    print(f"{s['split']}: {s['predicted']} of {s['queries']} queries predicted -> {args.out}"
          + (f" ({s['left_out_queries']} without features: {len(s['left_out_videos'])} videos)"
             if s["left_out_queries"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
