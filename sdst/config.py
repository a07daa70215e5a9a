"""Stage-2 configuration: config.yaml sections -> one resolved, self-contained run configuration.

A run is (dataset, model variant, seed). Its configuration merges, in order: the arch's dataclass defaults
(the paper's values, cited there) <- ``model.datasets[dataset]`` (keys the arch has) <- the variant's own
keys <- ``--set`` overrides; and ``train`` <- ``train.datasets[dataset]``. The resolved dict is what Snakemake
passes to the job (its canonical JSON is the rule's parameter, so changing any of it re-runs that job and
nothing upstream) and what checkpoints carry, so a model can be rebuilt from its checkpoint alone.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdst.model.configs import ARCH_CONFIGS, model_config

# Sources a training run depends on (relative to the project root). Snakemake declares them as inputs of the
# train rule and the trainer hashes them to decide whether a run may resume. Shared by every arch:
TRAIN_SOURCES = ("sdst/__init__.py", "sdst/annotations.py", "sdst/checkpoint.py", "sdst/config.py", "sdst/data.py",
                 "sdst/evaluate.py", "sdst/infer.py", "sdst/losses.py", "sdst/matcher.py", "sdst/plots.py",
                 "sdst/postprocess.py", "sdst/train.py", "sdst/model/__init__.py", "sdst/model/configs.py",
                 "sdst/model/layers.py", "extract/cache.py", "extract/devices.py")
# and per arch, its own modules: editing one model never retrains another.
ARCH_SOURCES = {
    "sdst": ("sdst/model/sdst.py", "sdst/model/sparse_attention.py"),
    "actionformer": ("sdst/model/actionformer.py", "sdst/model/dense.py"),
    "r2tuning": ("sdst/model/r2tuning.py", "sdst/model/dense.py"),
}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def train_sources(arch: str) -> tuple[str, ...]:
    if arch not in ARCH_SOURCES:
        raise ValueError(f"arch {arch!r} has no entry in sdst.config.ARCH_SOURCES (add its module files)")
    return TRAIN_SOURCES + ARCH_SOURCES[arch]


def source_files(paths, root: Path = PROJECT_ROOT) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = root / p
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return files


# dims of the cached features per backbone (pooled video dim, text hidden dim) — used when no cache is at
# hand (parameter counts); runs read the dims from the store itself.
BACKBONE_DIMS = {"1b": {"attn": 768, "mean": 1408, "cls": 1408, "text": 1024},
                 "tiny": {"attn": 128, "mean": 128, "cls": 128, "text": 384}}


@dataclass
class LossConfig:
    l1: float = 1.0  # λ_L1 (Tab. G)
    iou: float = 1.0  # λ_IoU (Tab. G)
    sal: float = 0.1  # λ_sal (Tab. G)
    align_video: float = 0.1  # λ_align_video (Tab. G)
    align_layer: float = 0.1  # λ_align_layer (Tab. G)
    act: float = 1.0  # λ_act (Tab. G)
    cls: float = 1.0  # λ_cls (Tab. G)
    focal_alpha: float = 0.25  # [decided]
    focal_gamma: float = 2.0  # [decided]
    temperature: float = 0.07  # SampledNCE τ [decided, R2-Tuning]
    aux: bool = True  # MR losses at every level, not only the last (Eq. 13)


@dataclass
class MatcherConfig:
    """Hungarian matching costs (§C.2) [decided, TadTR / Deformable-DETR: focal class cost + L1 + (1 - IoU)], set
    apart from the loss weights so that a loss ablation (Tab. E, λ = 0) changes the loss, not the matching.
    Defaults are the costs the λ's of Tab. G gave."""
    cls: float = 1.0  # class cost (Tab. G λ_cls)
    l1: float = 1.0  # L1 cost on (centre, width) (Tab. G λ_L1)
    iou: float = 1.0  # 1 - IoU cost (Tab. G λ_IoU)
    alpha: float = 0.25  # focal α of the class cost [decided]
    gamma: float = 2.0  # focal γ of the class cost [decided]


def ranks_by_actionness(train: dict) -> bool:
    """Whether inference confidence is sqrt(p · actionness) (Eq. 23) or p alone: only a trained actionness head
    ranks windows, so a "w/o L_act" run (λ_act = 0, Tab. E) ranks by p."""
    return LossConfig(**train.get("loss", {})).act > 0


@dataclass
class TrainConfig:
    epochs: int = 60  # QVHighlights (Tab. A)
    batch_size: int = 32  # (Tab. A)
    lr: float = 1e-4  # AdamW (§A)
    weight_decay: float = 1e-4  # (§A)
    lr_step: int = 20  # step decay every 20 epochs (§A)
    lr_gamma: float = 0.1  # (§A)
    warmup_iters: int = 2000  # linear warmup (§A)
    warmup_ratio: float = 0.001  # (§A)
    clip_grad: float = 35.0  # max norm (§A)
    min_clips: int = 5  # "minimum video length 5" (Tab. A) [decided: shorter videos are not trained on]
    amp: bool = True  # mixed precision on GPU (§A); CPU runs in fp32
    preload: bool = True  # read the whole cache into RAM once per run (QVH ~4.7 GB at 1b)
    num_workers: int = 0  # DataLoader workers (each opens the store once)
    device: str = "auto"
    threads: int = 0  # torch CPU threads (0: torch's default)
    select_metrics: list[str] | None = None  # summed to pick the best epoch; None: by dataset type
    nms_sigma: float = 0.5  # Gaussian soft-NMS (§C.4) [decided, ActionFormer]
    eval_batch_size: int = 64
    loss: dict = field(default_factory=dict)  # LossConfig overrides (Tab. G)
    matcher: dict = field(default_factory=dict)  # MatcherConfig overrides (Hungarian costs, §C.2)


# How a run executes, not what it computes: left out of the run identity (the rule parameter Snakemake compares
# and the resume check), passed to the job as flags instead.
TRAIN_RUNTIME_KEYS = ("device", "threads", "num_workers", "preload", "eval_batch_size")


def run_identity(run: dict) -> dict:
    """The run configuration without the runtime keys: equal identities give equal results."""
    out = copy.deepcopy(run)
    out["train"] = {k: v for k, v in out["train"].items() if k not in TRAIN_RUNTIME_KEYS}
    return out


def with_runtime(run: dict, **overrides) -> dict:
    """Fill the runtime keys (TrainConfig defaults where absent) and apply the non-None ``overrides``."""
    out = copy.deepcopy(run)
    defaults = dataclasses.asdict(TrainConfig())
    for key in TRAIN_RUNTIME_KEYS:
        out["train"].setdefault(key, defaults[key])
        if overrides.get(key) is not None:
            out["train"][key] = overrides[key]
    return out


SELECT_METRICS = {"qvh": ["MR-full-mAP", "HL-min-VeryGood-mAP"], "mr": ["MR-R1@0.5", "MR-R1@0.7", "MR-mIoU"]}


def dataclass_from(cls, values: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


def parse_set(items: list[str] | None) -> dict:
    """``["model.share_weights=false", "train.lr=2e-4"]`` -> nested dict (values parsed as JSON, else YAML)."""
    import yaml

    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        parts = key.split(".")
        if parts[0] not in ("model", "train"):
            parts = ["model"] + parts  # bare keys are model parameters
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        try:
            node[parts[-1]] = json.loads(value)  # numbers like 2e-4, true/false, lists
        except json.JSONDecodeError:
            node[parts[-1]] = yaml.safe_load(value)  # bare words and YAML forms
    return out


def resolve_run(config: dict, dataset: str, model: str, seed: int = 0, sets: dict | None = None) -> dict:
    """The complete configuration of one run, as plain JSON-able data."""
    if dataset not in config["datasets"]:
        raise ValueError(f"dataset {dataset!r} is not configured; configured: {sorted(config['datasets'])}")
    variants = config["model"]["variants"]
    if model not in variants:
        raise ValueError(f"model {model!r} is not a configured variant; variants: {sorted(variants)}")
    sets = sets or {}
    variant = dict(variants[model])
    arch = variant.pop("arch")
    if arch not in ARCH_CONFIGS:
        raise ValueError(f"model variant {model!r}: unknown arch {arch!r}; registered: {sorted(ARCH_CONFIGS)}")
    known = {f.name for f in dataclasses.fields(ARCH_CONFIGS[arch])}
    params = {k: v for k, v in config["model"].get("datasets", {}).get(dataset, {}).items() if k in known}
    params.update(variant)
    params.update(sets.get("model", {}))
    cfg = model_config(arch, params)  # validates

    train = {k: v for k, v in config["train"].items() if k not in ("seeds", "datasets")}
    for k, v in config["train"].get("datasets", {}).get(dataset, {}).items():
        if k in ("loss", "matcher"):
            train[k] = {**train.get(k, {}), **v}
        else:
            train[k] = v
    for k, v in sets.get("train", {}).items():
        train[k] = v
    tcfg = dataclass_from(TrainConfig, train, "train")
    dataclass_from(LossConfig, tcfg.loss, "train.loss")
    dataclass_from(MatcherConfig, tcfg.matcher, "train.matcher")

    ds = config["datasets"][dataset]
    data = {k: copy.deepcopy(ds[k]) for k in ("annotations", "clip_len", "saliency", "splits", "backbone")}
    data["name"] = dataset
    data["eval_type"] = "qvh" if ds["saliency"] == "qvh" else "mr"
    if tcfg.select_metrics is None:
        tcfg.select_metrics = SELECT_METRICS[data["eval_type"]]
    return {"model": {"name": model, "arch": arch, "params": dataclasses.asdict(cfg)},
            "train": dataclasses.asdict(tcfg), "data": data, "seed": int(seed)}


def load_config(path: str | Path) -> dict:
    """config.yaml, validated against the workflow schema (the same check Snakemake runs)."""
    import jsonschema
    import yaml

    path = Path(path)
    config = yaml.safe_load(path.read_text())
    schema_path = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as err:
        loc = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ValueError(f"{path}: {loc}: {err.message}") from None
    return config


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
