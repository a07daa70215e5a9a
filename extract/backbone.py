"""Inspect an InternVideo2 stage-2 checkpoint: which keys load into the vision and text encoders.

The official layout (``InternVideo2-stage2_1b-224p-f4.pt``): ``vision_encoder.*`` (the InternVideo2Vision
module), ``text_encoder.bert.*`` (a BertModel of which the first ``fusion_layer`` layers are text-only),
plus training-only and retrieval heads that are ignored. The top level may be the state dict itself,
``{"model": ...}`` or ``{"module": ...}`` (DeepSpeed); files are read by :mod:`extract.weights`. torch is imported inside the functions so that
``python -m extract --help`` stays fast.

This module is also the backbone registry (:data:`BACKBONES`: each name's vision and text encoders) and builds
a backbone from its checkpoint (:func:`load_backbone`); ``python -m extract inspect-checkpoint`` runs
:func:`inspect_main`.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extract.weights import SHOW, WRAPPERS, CheckpointError, LoadReport, check_and_load, drop_pages
from extract.weights import mapped_ranges, read_weights
from extract.weights import CheckpointNotFoundError, find_problems, load_state_dict  # noqa: F401 - this module's API

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor, nn

    from extract.internvideo2 import InternVideo2Vision, VisionConfig
    from extract.text import TextEncoder

# name -> spec. "offline": with no checkpoint, vision = seeded random init of the same architecture and
# text = the pretrained weights that ship in a package (text.OFFLINE_WEIGHTS); otherwise a file is required.
BACKBONES: dict[str, dict[str, Any]] = {
    "1b": {"vision": "1b", "text": "bert-large-19", "offline": False},
    "tiny": {"vision": "tiny", "text": "minilm-l6", "offline": True},
}

VISION_PREFIX = "vision_encoder."
TEXT_PREFIX = "text_encoder.bert."

# group -> pattern of checkpoint keys that no encoder here uses (text-side groups come from text.py)
IGNORED_GROUPS: dict[str, re.Pattern[str]] = {
    "training-only vision heads": re.compile(
        r"^vision_encoder\.(clip_decoder\.|final_clip_decoder\.|clip_pos_embed$|clip_img_pos_embed$)"),
    "retrieval/ITM heads": re.compile(r"^(vision_proj\.|text_proj\.|itm_head\.|temp$)"),
    "MLM head": re.compile(r"^text_encoder\.cls\."),
}


# -------------------------------------------------------------------------------------------- loading
@dataclass
class BackboneReport:
    checkpoint: str | None
    wrappers: list[str]
    vision: LoadReport
    text: LoadReport
    pos_embed_frames: int | None  # frames the stored pos_embed was for (None: random init)
    model_frames: int
    ignored: dict[str, list[str]] = field(default_factory=dict)  # group -> checkpoint keys not used
    unexpected: list[str] = field(default_factory=list)  # keys nothing uses and no group explains


def _vision_from_state_dict(cfg: "VisionConfig", sd: dict[str, "Tensor"], source: str
                            ) -> tuple["InternVideo2Vision" | None, LoadReport, int | None, CheckpointError | None]:
    import torch

    from extract.internvideo2 import InternVideo2Vision, interpolate_pos_embed_time

    sub = {k[len(VISION_PREFIX):]: v for k, v in sd.items() if k.startswith(VISION_PREFIX)}
    stored_frames = None
    pos = sub.get("pos_embed")
    if pos is not None and pos.ndim == 3 and pos.shape[-1] == cfg.embed_dim:
        frames, rem = divmod(pos.shape[1] - 1, cfg.patches_per_frame)
        if rem == 0 and frames >= 1:
            stored_frames = frames
            sub["pos_embed"] = interpolate_pos_embed_time(pos, cfg.num_frames, cfg.patches_per_frame)
    with torch.device("meta"):
        vision = InternVideo2Vision(cfg)
    try:
        report = check_and_load(vision, sub, source=source, key_prefix=VISION_PREFIX)
    except CheckpointError as err:
        return None, LoadReport(), stored_frames, err
    # keys below vision_encoder. that neither load nor belong to an ignored group
    report.unexpected = [k for k in report.unexpected if not any(p.match(k) for p in IGNORED_GROUPS.values())]
    return vision.eval(), report, stored_frames, None


def _cast_used(sd: dict[str, "Tensor"], text_name: str, path: str | Path) -> None:
    """Cast, in place and one tensor at a time, the floating-point entries the encoders will load to the
    modules' dtype (torch's default). Each source is dropped as its copy is made, its pages handed back when it
    is the file's memory-mapped bytes, so a float16 file is never held beside its float32 copy; entries already
    in that dtype stay the file's own (mapped) tensors."""
    import torch

    from extract.text import select_text_keys

    dtype = torch.get_default_dtype()
    used = [k for k in sd if k.startswith(VISION_PREFIX) and not any(p.match(k) for p in IGNORED_GROUPS.values())]
    used += [TEXT_PREFIX + k for k in select_text_keys(text_name, sd, TEXT_PREFIX)[0]]
    ranges = None
    for key in used:
        src = sd[key]
        if src.is_floating_point() and src.dtype != dtype:
            sd[key] = src.to(dtype)
            ranges = mapped_ranges(path) if ranges is None else ranges
            drop_pages(src, ranges)


def _load(name: str, checkpoint: str | None, seed: int = 0, gelu: str | None = None, num_frames: int | None = None
          ) -> tuple["InternVideo2Vision", "TextEncoder", BackboneReport]:
    from extract.internvideo2 import build_vision, resolve_vision_config
    from extract.text import OFFLINE_WEIGHTS, load_text_encoder

    if name not in BACKBONES:
        raise CheckpointError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    spec = BACKBONES[name]
    vcfg = resolve_vision_config(spec["vision"], gelu=gelu, num_frames=num_frames)
    if checkpoint is None:
        if not spec["offline"] or spec["text"] not in OFFLINE_WEIGHTS:
            raise CheckpointError(f"backbone {name!r} has no offline weights: a checkpoint is required "
                                  f"(the official InternVideo2-stage2_1b-224p-f4.pt for '1b')")
        vision = build_vision(vcfg, seed=seed)
        read, prefix = OFFLINE_WEIGHTS[spec["text"]]
        text = load_text_encoder(spec["text"], read(), prefix, source=f"{spec['text']} package weights")
        vreport = LoadReport(params=vision.num_params(), keys=len(vision.state_dict()))
        report = BackboneReport(None, [], vreport, text.load_report, None, vision.cfg.num_frames,
                                dict(text.load_report.ignored), list(text.load_report.unexpected))
        return vision, text, report

    sd, wrappers = read_weights(checkpoint)
    source, what = str(checkpoint), f"backbone {name!r}"
    _cast_used(sd, spec["text"], checkpoint)
    vision, vreport, stored_frames, verr = _vision_from_state_dict(vcfg, sd, source)
    missing, misshaped = (verr.missing, verr.misshaped) if verr else ([], [])
    try:
        text = load_text_encoder(spec["text"], sd, TEXT_PREFIX, source=source)
    except CheckpointError as terr:
        if not (terr.missing or terr.misshaped):
            raise
        missing, misshaped = missing + terr.missing, misshaped + terr.misshaped
    if missing or misshaped:
        raise CheckpointError.from_problems(source, missing, misshaped, what)

    treport = text.load_report
    ignored: dict[str, list[str]] = {}
    for key in sd:
        group = next((g for g, pat in IGNORED_GROUPS.items() if pat.match(key)), None)
        if group is not None:
            ignored.setdefault(group, []).append(key)
    for group, keys in treport.ignored.items():
        ignored.setdefault(group, []).extend(keys)
    outside = [k for k in sd if not k.startswith((VISION_PREFIX, TEXT_PREFIX))
               and not any(p.match(k) for p in IGNORED_GROUPS.values())]
    report = BackboneReport(source, wrappers, vreport, treport, stored_frames, vision.cfg.num_frames,
                            ignored, vreport.unexpected + treport.unexpected + outside)
    return vision, text, report


def load_backbone(name: str, checkpoint: str | None, seed: int = 0, gelu: str | None = None,
                  num_frames: int | None = None) -> tuple["InternVideo2Vision", "TextEncoder"]:
    """(vision encoder, text encoder) of BACKBONES[name], from an official-layout checkpoint or offline weights.

    With a checkpoint: vision from ``vision_encoder.*`` (pos_embed resampled in time when stored for another
    frame count), text from ``text_encoder.bert.*``; training-only, retrieval/ITM, cross-attention and MLM
    keys are ignored. Missing or mis-shaped keys raise CheckpointError. Without one: only for offline
    backbones ("tiny": seeded random vision + the packaged MiniLM text encoder).
    ``gelu`` ("exact" / "tanh") and ``num_frames`` (frames of the model's positional table; a stored table
    is resampled to it) override the vision config when given.
    """
    vision, text, _ = _load(name, checkpoint, seed, gelu, num_frames)
    return vision, text


# --------------------------------------------------------------------------------------------- saving
def save_official_layout(vision: "InternVideo2Vision", text_encoder: "TextEncoder", path: str | Path,
                         wrapper: str | None = "module", extra_keys: bool = True) -> Path:
    """Write the encoders under the official key layout (``vision_encoder.*``, ``text_encoder.bert.*``).

    ``wrapper``: "module" / "model" / None (flat). ``extra_keys`` adds training-only heads, retrieval/ITM heads,
    two cross-attention fusion layers and an MLM head with plausible shapes, which a loader must ignore.
    A ``.safetensors`` path is written flat (no wrapper).
    """
    import torch

    sd: dict[str, torch.Tensor] = {}  # the modules' own tensors, not copies: writing a 1b model needs no second copy
    sd.update({VISION_PREFIX + k: v.detach() for k, v in vision.state_dict().items()})
    sd.update({TEXT_PREFIX + k: v.detach() for k, v in text_encoder.bert.state_dict().items()})
    tcfg = text_encoder.cfg
    sd[TEXT_PREFIX + "embeddings.position_ids"] = torch.arange(tcfg.max_positions)[None]
    if extra_keys:
        gen = torch.Generator().manual_seed(0)
        vcfg = vision.cfg
        d, c, h = vcfg.embed_dim, vcfg.clip_embed_dim, tcfg.hidden

        def rand(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen) * 0.02

        sd[VISION_PREFIX + "clip_pos_embed"] = vision.pos_embed.detach().clone()
        sd[VISION_PREFIX + "clip_img_pos_embed"] = vision.img_pos_embed.detach().clone()
        for i in range(2):  # the official has 6 (1408 -> 3200)
            sd[f"{VISION_PREFIX}clip_decoder.{i}.head.weight"] = rand(2 * d, d)
            sd[f"{VISION_PREFIX}clip_decoder.{i}.head.bias"] = torch.zeros(2 * d)
            sd[f"{VISION_PREFIX}clip_decoder.{i}.norm.weight"] = torch.ones(2 * d)
            sd[f"{VISION_PREFIX}clip_decoder.{i}.norm.bias"] = torch.zeros(2 * d)
        sd[VISION_PREFIX + "final_clip_decoder.head.weight"] = rand(c, c)
        sd[VISION_PREFIX + "final_clip_decoder.head.bias"] = torch.zeros(c)
        sd["vision_proj.weight"], sd["vision_proj.bias"] = rand(512, c), torch.zeros(512)
        sd["text_proj.weight"], sd["text_proj.bias"] = rand(512, h), torch.zeros(512)
        sd["itm_head.weight"], sd["itm_head.bias"] = rand(2, h), torch.zeros(2)
        sd["temp"] = torch.tensor(0.07)
        last = tcfg.text_layers - 1
        layer_keys = [k for k in text_encoder.bert.state_dict() if k.startswith(f"encoder.layer.{last}.")]
        for j in (tcfg.text_layers, tcfg.text_layers + 1):  # fusion layers: self-attn + cross-attn to video
            for k in layer_keys:
                sd[TEXT_PREFIX + k.replace(f"encoder.layer.{last}.", f"encoder.layer.{j}.")] = rand(
                    *text_encoder.bert.state_dict()[k].shape)
            base = f"{TEXT_PREFIX}encoder.layer.{j}.crossattention."
            for part, width in (("query", h), ("key", d), ("value", d)):
                sd[f"{base}self.{part}.weight"], sd[f"{base}self.{part}.bias"] = rand(h, width), torch.zeros(h)
            sd[f"{base}output.dense.weight"], sd[f"{base}output.dense.bias"] = rand(h, h), torch.zeros(h)
            sd[f"{base}output.LayerNorm.weight"], sd[f"{base}output.LayerNorm.bias"] = torch.ones(h), torch.zeros(h)
        sd["text_encoder.cls.predictions.bias"] = torch.zeros(tcfg.vocab)
        sd["text_encoder.cls.predictions.transform.dense.weight"] = rand(h, h)
        sd["text_encoder.cls.predictions.transform.LayerNorm.weight"] = torch.ones(h)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        if wrapper is not None and wrapper not in WRAPPERS:
            raise ValueError(f"wrapper must be one of {WRAPPERS} or None, got {wrapper!r}")
        torch.save({wrapper: sd} if wrapper else sd, path)
    return path


# ------------------------------------------------------------------------------------------------ CLI
def add_inspect_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="official-layout checkpoint (.pt/.pth torch file or .safetensors)")
    parser.add_argument("--backbone", default="1b", choices=sorted(BACKBONES),
                        help="backbone the checkpoint must serve (default: 1b)")


def _summary(name: str, report: BackboneReport) -> str:
    spec = BACKBONES[name]
    v, t = report.vision, report.text
    wrap = "".join(f'["{w}"]' for w in report.wrappers) or "(none)"
    lines = [f"checkpoint: {report.checkpoint}", f"wrapper: {wrap}",
             f"backbone: {name} (vision {spec['vision']}, text {spec['text']})",
             f"vision: {v.params:,} parameters loaded from {v.keys} keys",
             f"text:   {t.params:,} parameters loaded from {t.keys} keys"]
    if report.pos_embed_frames is not None:
        note = ("" if report.pos_embed_frames == report.model_frames
                else f", interpolated in time to {report.model_frames}")
        lines.append(f"pos_embed: stored for {report.pos_embed_frames} frames{note}")
    lines.append("ignored:")
    lines += [f"  {group}: {len(keys)} keys" for group, keys in report.ignored.items()] or ["  (nothing)"]
    if report.unexpected:
        shown = ", ".join(report.unexpected[:SHOW]) + (" ..." if len(report.unexpected) > SHOW else "")
        lines.append(f"unexpected (not used): {len(report.unexpected)} keys: {shown}")
    return "\n".join(lines)


def inspect_main(args: argparse.Namespace) -> int:
    try:
        _, _, report = _load(args.backbone, args.checkpoint)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(_summary(args.backbone, report))
    return 0
