"""What identifies a feature cache, and where its files live.

The identity is every setting that changes the cached numbers: backbone and checkpoint, clip length,
frames per clip, the clip count rule (``clip_rule``: round | ceil, recorded only when not round), image size and
resize, which layers, which pooling, text layers and length, the text
encoder's tokenisation recipe (``extract.tokenizer``), the seed of a randomly initialised backbone, and
:data:`extract.FEATURE_VERSION`. Its hash is part of the store path, so a new
configuration builds a new store instead of silently mixing features. Settings under ``extract.run``
(shards, workers, batch size, timeouts, device) only change how the work is done and are not part of it.
Snakemake (workflow/rules/common.smk) and the extraction commands both call these functions.
"""

from __future__ import annotations

import os
from pathlib import Path

from extract import FEATURE_VERSION
from extract.cache import identity_hash
from extract.backbone import BACKBONES
from extract.layers import resolve_layer_indices  # noqa: F401 - where callers look for it
from extract.decode import CLIP_RULES
from extract.tokenizer import recipe_for

# keys of the `extract` config section that define the features (everything else lives in extract.run)
FEATURE_KEYS = ("frames_per_clip", "image_size", "resize", "vision_layers", "pooling", "text_layers", "text_max_len",
                "gelu", "seed")


def checkpoint_identity(path: str | None) -> dict | None:
    """Name and size stand in for the content (hashing a 4 GB file at every DAG build is too slow)."""
    if not path:
        return None
    p = Path(path)
    return {"name": p.name, "size": p.stat().st_size if p.is_file() else None}


def check_layers(backbone: str, extract: dict, where: dict | None = None) -> None:
    """The configured vision and text layers exist in the backbone (before any store is made or job started);
    errors name the setting as ``where`` calls it (default: the config key, e.g. extract.vision_layers)."""
    from extract.encoder_configs import TEXT_CONFIGS, VISION_CONFIGS

    if backbone not in BACKBONES:
        raise ValueError(f"backbone {backbone!r}: one of {', '.join(sorted(BACKBONES))}")
    spec = BACKBONES[backbone]
    depths = {"vision_layers": (VISION_CONFIGS[spec["vision"]].depth, "blocks"),
              "text_layers": (TEXT_CONFIGS[spec["text"]].text_layers, "text-only layers")}
    for key, (depth, unit) in depths.items():
        name = (where or {}).get(key, f"extract.{key}")
        try:
            resolve_layer_indices(extract[key], depth, "layer")
        except (ValueError, TypeError) as err:
            raise ValueError(f"{name} {extract[key]}: {err} (the {backbone} backbone has {depth} {unit})") from None


def extraction_identity(dataset: dict, extract: dict, where: dict | None = None) -> dict:
    check_layers(dataset["backbone"], extract, where)
    ident = {key: extract[key] for key in FEATURE_KEYS}
    ident.update(feature_version=FEATURE_VERSION, backbone=dataset["backbone"],
                 text_recipe=recipe_for(BACKBONES[dataset["backbone"]]["text"]).identity(),
                 checkpoint=checkpoint_identity(dataset.get("checkpoint")), clip_len=float(dataset["clip_len"]))
    if ident["checkpoint"] is not None:
        ident.pop("seed")  # the seed only matters for a randomly initialised backbone
    rule = dataset.get("clip_rule", "round")
    if rule not in CLIP_RULES:
        raise ValueError(f"clip_rule {rule!r}: one of {', '.join(CLIP_RULES)}")
    if rule != "round":  # recorded only when not the default, so caches made before the option keep their hash
        ident["clip_rule"] = rule
    return ident


def cache_dir(name: str, dataset: dict, extract: dict) -> str:
    """``{extract.cache_dir}/{dataset}/{hash}``: the store, its shard sentinels and summary live here."""
    return os.path.join(extract["cache_dir"], name, identity_hash(extraction_identity(dataset, extract)))


def shard_of(vid: str, n_shards: int) -> int:
    """Stable assignment of a video (and its queries) to a shard; independent of Python's hash seed."""
    import hashlib

    return int(hashlib.sha1(vid.encode()).hexdigest()[:8], 16) % n_shards
