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
from dataclasses import dataclass
from pathlib import Path

from sdst.model.configs import ARCH_CONFIGS, model_config
from sdst.values import ConfigValueError, check_values, field_default, value

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def code_files(modules, arch: str | None = None) -> list[Path]:
    """The source files a job running ``modules`` executes: their import closure (extract.imports), and with
    ``arch`` the registry's modules of that arch (sdst.model.ARCHS imports them by name), so that editing one
    model's modules never re-runs another's jobs."""
    from extract.imports import closure
    from sdst.model import arch_modules

    return closure([*modules, *(arch_modules(arch) if arch else [])], root=PROJECT_ROOT)


# dims of the cached features per backbone (pooled video dim, text hidden dim) — used when no cache is at
# hand (parameter counts); runs read the dims from the store itself.
BACKBONE_DIMS = {"1b": {"attn": 768, "mean": 1408, "cls": 1408, "text": 1024},
                 "tiny": {"attn": 128, "mean": 128, "cls": 128, "text": 384}}


@dataclass
class LossConfig:
    l1: float = value(1.0, ge=0)  # λ_L1 (Tab. G)
    iou: float = value(1.0, ge=0)  # λ_IoU (Tab. G)
    sal: float = value(0.1, ge=0)  # λ_sal (Tab. G)
    align_video: float = value(0.1, ge=0)  # λ_align_video (Tab. G)
    align_layer: float = value(0.1, ge=0)  # λ_align_layer (Tab. G)
    act: float = value(1.0, ge=0)  # λ_act (Tab. G)
    cls: float = value(1.0, ge=0)  # λ_cls (Tab. G)
    focal_alpha: float = value(0.25, ge=0, le=1)  # [decided]
    focal_gamma: float = value(2.0, ge=0)  # [decided]
    temperature: float = value(0.07, gt=0)  # SampledNCE τ [decided, R2-Tuning]
    aux: bool = value(True)  # MR losses at every level, not only the last (Eq. 13)
    cls_norm: str = value("queries", choices=("queries", "windows"))  # SDST's focal loss divided by the number of
    #   queries (Eq. 17: the mean over M) or, as DETR's and Deformable-DETR's code, summed and divided by the
    #   number of ground-truth windows; the dense detectors' is ActionFormer's (by positive points)


@dataclass
class MatcherConfig:
    """Hungarian matching costs (§C.2) [decided, TadTR / Deformable-DETR: focal class cost + L1 + (1 - IoU)], set
    apart from the loss weights so that a loss ablation (Tab. E, λ = 0) changes the loss, not the matching.
    Defaults are the costs the λ's of Tab. G gave."""
    cls: float = value(1.0, ge=0)  # class cost (Tab. G λ_cls)
    l1: float = value(1.0, ge=0)  # L1 cost on (centre, width) (Tab. G λ_L1)
    iou: float = value(1.0, ge=0)  # 1 - IoU cost (Tab. G λ_IoU)
    alpha: float = value(0.25, ge=0, le=1)  # focal α of the class cost [decided]
    gamma: float = value(2.0, ge=0)  # focal γ of the class cost [decided]


def ranks_by_actionness(train: dict) -> bool:
    """Whether inference confidence is sqrt(p · actionness) (Eq. 23) or p alone: only a trained actionness head
    ranks windows, so a "w/o L_act" run (λ_act = 0, Tab. E) ranks by p."""
    return LossConfig(**train.get("loss", {})).act > 0


@dataclass
class TrainConfig:
    epochs: int = value(60, ge=1)  # QVHighlights (Tab. A); with patience, the most epochs
    patience: int = value(0, ge=0)  # [decided] stop once the selection score has not improved for this many epochs
    #                                 (0: train all epochs); one budget rule for every model
    batch_size: int = value(32, ge=1)  # (Tab. A)
    lr: float = value(1e-4, gt=0)  # AdamW (§A)
    weight_decay: float = value(1e-4, ge=0)  # (§A)
    lr_step: int = value(20, ge=1)  # step decay every 20 epochs (§A)
    lr_gamma: float = value(0.1, gt=0)  # (§A)
    warmup_iters: int = value(2000, ge=0)  # linear warmup (§A)
    warmup_ratio: float = value(0.001, ge=0, le=1)  # (§A)
    clip_grad: float = value(35.0, gt=0)  # max norm (§A)
    min_clips: int = value(5, ge=0)  # "minimum video length 5" (Tab. A) [decided: shorter videos are not trained on]
    amp: bool = value(True)  # mixed precision on GPU (§A); CPU runs in fp32
    preload: bool = value(True)  # read the whole cache into RAM once per run (QVH ~4.7 GB at 1b)
    num_workers: int = value(0, ge=0)  # DataLoader workers (each opens the store once)
    device: str = value("auto", pattern=r"auto|cpu|cuda(:[0-9]+)?")
    threads: int = value(0, ge=0)  # torch CPU threads (0: torch's default)
    select_metrics: list[str] | None = value(None, min_len=1)  # summed to pick the best epoch; None: by dataset type
    nms_sigma: float = value(0.5, gt=0)  # Gaussian soft-NMS (§C.4) [decided, ActionFormer]
    eval_batch_size: int = value(64, ge=1)
    loss: dict = value({}, of=LossConfig)  # LossConfig overrides (Tab. G)
    matcher: dict = value({}, of=MatcherConfig)  # MatcherConfig overrides (Hungarian costs, §C.2)


def train_setting(config: dict, key: str):
    """A top-level training value: config.yaml's ``train`` section, else its one declaration (TrainConfig)."""
    return config["train"][key] if key in config["train"] else field_default(TrainConfig, key)


# How a run executes, not what it computes: left out of the run identity (the rule parameter Snakemake compares
# and the resume check), passed to the job as flags instead.
TRAIN_RUNTIME_KEYS = ("device", "threads", "num_workers", "preload", "eval_batch_size")
# Where a run stops, not what an epoch computes: a run that differs from a checkpoint's only in these resumes from it
# when its rule would have trained every epoch the checkpoint holds (sdst.train.trains_through).
TRAIN_BUDGET_KEYS = ("epochs", "patience")


def run_identity(run: dict, budget: bool = True) -> dict:
    """The run configuration without the runtime keys: equal identities give equal results. ``budget=False`` also
    leaves out the budget rule (TRAIN_BUDGET_KEYS): equal then means equal epochs for as long as both runs train."""
    leave_out = TRAIN_RUNTIME_KEYS + (() if budget else TRAIN_BUDGET_KEYS)
    out = copy.deepcopy(run)
    out["train"] = {k: v for k, v in out["train"].items() if k not in leave_out}
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
    check_values(cls, values, where)  # unknown keys, types, ranges (sdst.values)
    return cls(**values)


def parse_set(items: list[str] | None) -> dict:
    """``["model.share_weights=false", "train.lr=2e-4"]`` -> nested dict (values parsed as JSON, else YAML)."""
    import yaml

    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        parts = key.split(".")
        if parts[0] not in ("model", "train"):
            parts = ["model"] + parts  # bare keys are model parameters
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        try:
            node[parts[-1]] = json.loads(text)  # numbers like 2e-4, true/false, lists
        except json.JSONDecodeError:
            node[parts[-1]] = yaml.safe_load(text)  # bare words and YAML forms
    return out


def resolve_run(config: dict, dataset: str, model: str, seed: int = 0, sets: dict | None = None) -> dict:
    """The complete configuration of one run, as plain JSON-able data.

    Every source of a value (``model.datasets.<dataset>``, ``model.variants.<model>``, ``train``,
    ``train.datasets.<dataset>``, ``model.variants.<model>.train``, ``--set``) is checked on its own against the
    dataclasses' declared types and ranges, so an error names the key as the user wrote it (e.g.
    ``model.datasets.demo.hidden_dim``). The workflow resolves every dataset x variant when it loads, so a bad
    value stops it before any job."""
    if dataset not in config["datasets"]:
        raise ValueError(f"dataset {dataset!r} is not configured; configured: {sorted(config['datasets'])}")
    variants = config["model"]["variants"]
    if model not in variants:
        raise ValueError(f"model {model!r} is not a configured variant; variants: {sorted(variants)}")
    sets = sets or {}
    variant = dict(variants[model])
    arch = variant.pop("arch")
    variant_train = variant.pop("train", {})  # training values of this variant only (e.g. a loss option)
    if arch not in ARCH_CONFIGS:
        raise ValueError(f"model variant {model!r}: unknown arch {arch!r}; registered: {sorted(ARCH_CONFIGS)}")
    for section in ("model", "train"):
        unknown = sorted(set(config[section].get("datasets", {})) - set(config["datasets"]))
        if unknown:
            raise ConfigValueError(f"{section}.datasets: {unknown} not among the configured datasets "
                                   f"{sorted(config['datasets'])}")
    cls = ARCH_CONFIGS[arch]
    known = {f.name for f in dataclasses.fields(cls)}
    per_dataset = config["model"].get("datasets", {}).get(dataset, {})
    any_arch = {f.name for c in ARCH_CONFIGS.values() for f in dataclasses.fields(c)}
    stray = sorted(set(per_dataset) - any_arch)
    if stray:  # applied to the variants whose arch has the key: one that no arch has is a typo
        raise ConfigValueError(f"model.datasets.{dataset}: no model arch has the key(s) {stray}")
    params = {k: v for k, v in per_dataset.items() if k in known}
    check_values(cls, params, f"model.datasets.{dataset}")
    check_values(cls, variant, f"model.variants.{model}")
    check_values(cls, sets.get("model", {}), "--set model")
    params.update(variant)
    params.update(sets.get("model", {}))
    cfg = model_config(arch, params)

    top = {k: v for k, v in config["train"].items() if k not in ("seeds", "datasets")}
    per_ds_train = {k: v for k, v in config["train"].get("datasets", {}).get(dataset, {}).items() if k != "seeds"}
    train: dict = {}
    batch_key = "train.batch_size"
    for where, values in (("train", top), (f"train.datasets.{dataset}", per_ds_train),
                          (f"model.variants.{model}.train", variant_train), ("--set train", sets.get("train", {}))):
        check_values(TrainConfig, values, where)
        for k, v in values.items():  # loss and matcher merge key by key; the rest replace
            train[k] = {**train.get(k, {}), **v} if k in ("loss", "matcher") else v
        if "batch_size" in values:
            batch_key = f"{where}.batch_size"
    tcfg = dataclass_from(TrainConfig, train, "train")
    _check_batch(tcfg, arch, batch_key)
    check_set_loss_options(tcfg.loss.get("cls_norm", LossConfig.cls_norm), arch, f"model {model!r} (arch {arch})")

    ds = config["datasets"][dataset]
    data = {k: copy.deepcopy(ds[k]) for k in ("annotations", "clip_len", "saliency", "splits")}
    data["backbone"] = ds.get("backbone", "1b")  # imported features (datasets.<d>.features) need not name one
    data["name"] = dataset
    data["eval_type"] = "qvh" if ds["saliency"] == "qvh" else "mr"
    if tcfg.select_metrics is None:
        tcfg.select_metrics = SELECT_METRICS[data["eval_type"]]
    return {"model": {"name": model, "arch": arch, "params": dataclasses.asdict(cfg)},
            "train": dataclasses.asdict(tcfg), "data": data, "seed": int(seed)}


def layers_needed(model: dict) -> tuple[int, int]:
    """(video, text) cached layers a resolved run's model reads at least: its levels name them from the end
    (-1 = the last cached layer) or from the start (0 = the first), as the models index the cache."""
    params = model["params"]
    if "cache_level" in params:  # ActionFormer: one level each
        video, text = [params["cache_level"]], [params.get("text_level", params["cache_level"])]
        text = [t if t is not None else params["cache_level"] for t in text]
    else:
        video, text = list(params["levels"]), list(params.get("text_levels") or params["levels"])
    need = lambda levels: max(-lv if lv < 0 else lv + 1 for lv in levels)  # noqa: E731
    return need(video), need(text)


def check_layers_held(run: dict, video_layers: int, text_layers: int, where: str) -> None:
    """One line when the store (``where``) holds fewer cached layers than the run's model reads (e.g. K = 5 levels
    of the paper's Fig. 3 on a store of the last 4 layers)."""
    need_v, need_t = layers_needed(run["model"])
    if need_v > video_layers or need_t > text_layers:
        p = run["model"]["params"]
        levels = p.get("levels", p.get("cache_level"))
        raise ValueError(f"model {run['model']['name']} reads levels {levels} and needs {need_v} video and {need_t} "
                         f"text layers; {where} holds {video_layers} and {text_layers}: cache more layers "
                         "(extract.vision_layers / text_layers, e.g. [-5, -4, -3, -2, -1]; the SDST release has 5) "
                         "or use fewer levels")


def _check_batch(tcfg, arch: str, key: str) -> None:
    """Eq. 21 contrasts each query with the other videos of its batch: with one video per batch its loss is 0
    whatever the model does (SDST's archs only; the others have no alignment loss). ``key``: where batch_size was
    set, for the message."""
    align = tcfg.loss.get("align_video", LossConfig().align_video)
    if arch == "sdst" and tcfg.batch_size < 2 and align > 0:
        raise ConfigValueError(f"{key} {tcfg.batch_size}: the video-level alignment loss (Eq. 21, λ_align_video "
                               f"{align:g}) contrasts each query with the other videos of its batch and is always 0 "
                               "with one; use batch_size >= 2 or set train.loss.align_video: 0")


def check_set_loss_options(cls_norm: str, arch: str, where: str) -> None:
    """Options of SDST's set criterion only: refused for other archs, where the workflow loads (resolve_run) and
    where a criterion is built (the dense detectors' criterion calls this too)."""
    if arch != "sdst" and cls_norm != LossConfig.cls_norm:
        raise ConfigValueError(f"{where}: train.loss.cls_norm {cls_norm!r} is an option of SDST's set criterion; "
                               "the dense detectors divide the focal loss by the positive points (ActionFormer)")


def dataset_seeds(config: dict, dataset: str) -> list[int]:
    """Seeds of the runs on ``dataset``: ``train.datasets.<dataset>.seeds`` when set (a comparison that needs more
    seeds than the others, issue 21: at least 5), else ``train.seeds``. Seeds are which runs exist, not part of a
    run's configuration (each run has its own ``seed``)."""
    return list(config["train"].get("datasets", {}).get(dataset, {}).get("seeds", config["train"]["seeds"]))


def load_config(path: str | Path) -> dict:
    """config.yaml, validated against the workflow schema and completed with its defaults: the configuration the
    Snakefile's ``validate`` gives the workflow, so that a run resolved here (``python -m sdst.train --config``)
    is the run the workflow trains."""
    import jsonschema
    import yaml
    from snakemake.utils import validate

    path = Path(path)
    config = yaml.safe_load(path.read_text())
    schema_path = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    try:  # first for its error, which names the key
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as err:
        loc = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ValueError(f"{path}: {loc}: {err.message}") from None
    validate(config, str(schema_path), set_default=True)  # Snakemake's own call: fills the schema's defaults
    return config
