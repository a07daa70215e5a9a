"""One-video prediction: a raw video and a query -> top windows, saliency per clip, and a figure.

    python -m sdst.predict --video V --query "a man opens the door" --checkpoint results/.../checkpoint_best.pt
                           [--backbone-checkpoint InternVideo2-stage2_1b-224p-f4.pt] [--out DIR]

The backbone checkpoint must be the file the training features came from (the SDST checkpoint records its
name and size): another one gives other features and meaningless scores, so it is refused unless
``--allow-backbone-mismatch`` is given.

The video is decoded and encoded with the extraction code path (extract.decode + extract.features) and the
extraction configuration stored in the checkpoint, in bounded-memory chunks, so any length works (no clip
cap; the model's positional encoding is sinusoidal). Writes ``<out>/<video>.json`` (top-10 windows with
scores, one saliency score per clip with its time span) and ``<out>/<video>.png`` (saliency over time,
predicted windows shaded, thumbnails of the top windows).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extract.cli import exits_on_bad_input
from sdst.reporting.plots import fmt_score


@dataclass
class Prediction:
    video: str
    query: str
    duration: float
    clip_len: float
    windows: list[list[float]]  # [start, end, score], best first
    saliency: list[float]  # one per clip
    thumbnails: list[np.ndarray]  # RGB middle frame of each of the top windows (up to 3)

    def to_json(self) -> dict:
        return {"video": self.video, "query": self.query, "duration": self.duration, "clip_len": self.clip_len,
                "pred_relevant_windows": self.windows,
                "pred_saliency_scores": self.saliency,
                "clip_spans": [[round(i * self.clip_len, 3), round(min((i + 1) * self.clip_len, self.duration), 3)]
                               for i in range(len(self.saliency))]}


class Predictor:
    """Loads the SDST checkpoint and the backbone once; ``predict(video, query)`` per call."""

    def __init__(self, checkpoint: str, backbone_checkpoint: str | None = None, device: str = "auto",
                 batch_clips: int = 32, allow_backbone_mismatch: bool = False):
        from extract.backbone import load_backbone
        from extract.tokenizer import build_tokenizer
        from sdst.checkpoint import model_from_checkpoint

        from extract.devices import resolve_device

        self.device = resolve_device(device)
        self.model, self.run, dims = model_from_checkpoint(checkpoint)
        self.ident = dims.get("extraction")
        if not self.ident:
            raise ValueError(f"{checkpoint}: carries no extraction configuration (trained on a cache without a "
                             f"summary identity), so its features cannot be recomputed for a new video")
        if self.ident.get("import"):
            raise ValueError(f"{checkpoint}: trained on imported features ({self.ident['import']} files, no backbone "
                             "here to compute them for a new video); train on features extracted by this project "
                             "to predict on new videos")
        if self.ident.get("checkpoint") and not backbone_checkpoint:
            raise ValueError(f"{checkpoint}: its features came from the {self.ident['backbone']} backbone "
                             f"checkpoint {self.ident['checkpoint']['name']}: pass it with --backbone-checkpoint")
        if backbone_checkpoint and not allow_backbone_mismatch:
            check_backbone(checkpoint, self.ident, backbone_checkpoint)
        self.vision, self.text = load_backbone(self.ident["backbone"], backbone_checkpoint,
                                               seed=self.ident.get("seed") or 0, gelu=self.ident.get("gelu"),
                                               num_frames=self.ident["frames_per_clip"])
        self.vision.eval().to(self.device)
        self.text.eval().to(self.device)
        self.model.to(self.device)
        self.tokenizer = build_tokenizer(self.text.name, max_len=self.ident["text_max_len"])
        recorded = self.ident.get("text_recipe")
        if recorded is not None and recorded != self.tokenizer.recipe.identity():
            raise ValueError(f"{checkpoint}: its queries were tokenised with {recorded}, this code tokenises "
                             f"them with {self.tokenizer.recipe.identity()}: re-extract and retrain")
        self.batch_clips = batch_clips

    def predict(self, video: str, query: str, top_k: int = 10) -> Prediction:
        import torch

        check_query(query)

        from extract.decode import DecodeSpec, VideoDecodeError, iter_video_chunks
        from extract.features import as_cached, encode_clips, encode_queries
        from sdst.config import ranks_by_actionness
        from sdst.postprocess import to_records

        spec = DecodeSpec(clip_len=self.ident["clip_len"], frames_per_clip=self.ident["frames_per_clip"],
                          size=self.ident["image_size"], chunk_clips=self.batch_clips,
                          resize=self.ident.get("resize", "decoder"),  # caches made before the option: decoder
                          clip_rule=self.ident.get("clip_rule", "round"))
        feats, info, middles = [], {}, {}
        try:
            for kind, payload in iter_video_chunks(video, spec):
                if kind == "start":
                    info = payload
                elif kind == "chunk":
                    first, frames = payload
                    feats.append(encode_clips(self.vision, frames, self.ident, self.device))
                    for j in range(len(frames)):  # keep one small frame per clip for thumbnails
                        middles[first + j] = frames[j, len(frames[j]) // 2, :, ::2, ::2].transpose(1, 2, 0)
        except VideoDecodeError as err:
            raise ValueError(f"{video}: cannot be decoded: {err}") from None
        v = torch.from_numpy(as_cached(np.concatenate(feats, axis=1))).unsqueeze(0)  # (1, K, T, D)
        t = torch.from_numpy(as_cached(encode_queries(self.text, self.tokenizer, [query], self.ident,
                                                      self.device)[0])).unsqueeze(0)
        n = v.shape[2]
        with torch.inference_mode():
            out = self.model(v.to(self.device), torch.ones(1, n, dtype=torch.bool, device=self.device),
                             t.to(self.device), torch.ones(1, t.shape[2], dtype=torch.bool, device=self.device))
        clip_len = self.ident["clip_len"]
        meta = [{"qid": 0, "query": query, "vid": Path(video).stem, "n_clips": n, "duration": info["duration"]}]
        rec = to_records(out, meta, clip_len, sigma=self.run["train"]["nms_sigma"], top_k=top_k,
                         use_actionness=ranks_by_actionness(self.run["train"]))[0]
        thumbs = [middles[min(int(((s + e) / 2) // clip_len), n - 1)] for s, e, _ in rec["pred_relevant_windows"][:3]]
        return Prediction(str(video), query, info["duration"], clip_len, rec["pred_relevant_windows"],
                          rec["pred_saliency_scores"], thumbs)


def check_query(query: str) -> None:
    """A query must hold a word to ground: empty or punctuation-only text tokenises to [CLS] alone."""
    if not any(ch.isalnum() for ch in query):
        raise ValueError(f"--query {query!r}: no word to look for (empty or punctuation only); describe the moment, "
                         "e.g. --query 'a man opens a door'")


def _describe(ident: dict | None) -> str:
    if not ident:
        return "a randomly initialised backbone (no checkpoint)"
    size = f" ({ident['size']:,} bytes)" if ident.get("size") is not None else ""
    return f"the backbone checkpoint {ident['name']}{size}"


def check_backbone(checkpoint: str, ident: dict, backbone_checkpoint: str) -> None:
    """Refuse a backbone file other than the one the SDST checkpoint's features came from (its extraction
    identity records name and size, extract.identity.checkpoint_identity): other weights give other features,
    and the model's scores on them mean nothing although it runs."""
    from extract.identity import checkpoint_identity

    if not Path(backbone_checkpoint).is_file():
        raise FileNotFoundError(f"{backbone_checkpoint}: no such backbone checkpoint")
    recorded, given = ident.get("checkpoint"), checkpoint_identity(backbone_checkpoint)
    same = recorded is not None and recorded["name"] == given["name"] and recorded.get("size") in (None, given["size"])
    if not same:
        raise ValueError(f"{checkpoint}: its features came from {_describe(recorded)}, not from "
                         f"{_describe(given)}; pass that file, or --allow-backbone-mismatch to use this one")


def _aspect(video: str) -> float:
    """Width / height of the video as displayed (frames are resized to a square for the model)."""
    try:
        import av

        with av.open(video) as c:
            ctx = c.streams.video[0].codec_context
            return ctx.width / ctx.height
    except Exception:  # noqa: BLE001 - only cosmetic
        return 1.0


def plot(pred: Prediction, path: str | Path, top: int = 5) -> None:
    """Saliency over time, the top windows with their scores, thumbnails of the best ones (sdst.reporting.plots)."""
    import matplotlib.pyplot as plt

    from sdst.reporting.plots import prediction_figure

    fig = prediction_figure(pred.query, Path(pred.video).name, pred.duration, pred.clip_len, pred.saliency,
                            pred.windows, top=top, thumbnails=pred.thumbnails, aspect=_aspect(pred.video))
    fig.savefig(path, dpi=110)
    plt.close(fig)


@exits_on_bad_input
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdst.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--checkpoint", required=True, help="an SDST checkpoint (checkpoint_best.pt)")
    p.add_argument("--backbone-checkpoint", default=None, help="the InternVideo2 checkpoint (1b features)")
    p.add_argument("--allow-backbone-mismatch", action="store_true",
                   help="use a backbone checkpoint other than the one the model's features came from")
    p.add_argument("--out", default="predictions", help="output folder")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if not Path(args.video).is_file():
        raise ValueError(f"{args.video}: no such video file")
    check_query(args.query)
    pred = Predictor(args.checkpoint, args.backbone_checkpoint, args.device,
                     allow_backbone_mismatch=args.allow_backbone_mismatch).predict(args.video, args.query)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.video).stem
    (out / f"{stem}.json").write_text(json.dumps(pred.to_json(), indent=2) + "\n")
    plot(pred, out / f"{stem}.png")
    best = pred.windows[0] if pred.windows else None
    print(f"{stem}: {len(pred.saliency)} clips; best window "
          + (f"{best[0]:.1f}-{best[1]:.1f} s (score {fmt_score(best[2])})" if best else "none")
          + f" -> {out / stem}.json, {out / stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
