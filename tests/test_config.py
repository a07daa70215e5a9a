"""Configuration values: every model and training value is checked (type, range) when the workflow loads, and the
error names the key where the user wrote it; one declaration per value (beside its dataclass field)."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from sdst.config import LossConfig, MatcherConfig, TrainConfig, parse_set, resolve_run
from sdst.model.configs import ARCH_CONFIGS
from sdst.values import ConfigValueError, check_values

SHIPPED = yaml.safe_load((ROOT / "config.yaml").read_text())


def _with(path: str, v):
    """The shipped configuration with one value set at a dotted path."""
    cfg = copy.deepcopy(SHIPPED)
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = v
    return cfg


@pytest.mark.parametrize("path, v, model, message", [
    ("model.datasets.demo.hidden_dim", -128, "sdst", "model.datasets.demo.hidden_dim: must be >= 1, got -128"),
    ("model.datasets.demo.hidden_dim", 12.5, "r2tuning", "model.datasets.demo.hidden_dim: expected an integer"),
    ("model.variants.sdst.droppath", 1.5, "sdst", "model.variants.sdst.droppath: must be < 1"),
    ("model.variants.sdst.share_weights", "no", "sdst", "model.variants.sdst.share_weights: expected true or false"),
    ("model.variants.sdst.levels", [], "sdst", "model.variants.sdst.levels: needs at least 1 item"),
    ("model.variants.sdst.sparse_order", ["ca", "self"], "sdst", "model.variants.sdst.sparse_order: every item must "
                                                                  "be one of ca, sa, deform, ffn"),
    ("model.variants.actionformer.head_kernel", 4, "actionformer", "model.variants.actionformer.head_kernel: must be odd"),
    ("model.variants.r2tuning.reg_activation", "tanh", "r2tuning", "model.variants.r2tuning.reg_activation: must be "
                                                                   "one of exp, relu"),
    ("model.variants.r2tuning.regression_bounds", [0, -2], "r2tuning", "every item must be >= 0"),
    ("model.datasets.demo.hiden_dim", 64, "sdst", "model.datasets.demo: no model arch has the key(s) ['hiden_dim']"),
    ("train.epochs", 2.5, "sdst", "train.epochs: expected an integer, got 2.5"),
    ("train.datasets.demo.lr", -1e-4, "sdst", "train.datasets.demo.lr: must be > 0"),
    ("train.datasets.demo.loss", {"act": -1}, "sdst", "train.datasets.demo.loss.act: must be >= 0"),
    ("train.matcher.alpha", 2, "sdst", "train.matcher.alpha: must be <= 1"),
    ("train.device", "gpu", "sdst", "train.device: must match"),
    ("train.datasets.demo.nms_sigma", float("nan"), "sdst", "train.datasets.demo.nms_sigma: expected a finite number"),
    ("train.datasets.demo.epoch", 3, "sdst", "train.datasets.demo: unknown key(s) ['epoch']"),
    ("train.datasets.dmeo", {"epochs": 3}, "sdst", "train.datasets: ['dmeo'] not among the configured datasets"),
    ("model.variants.sdst.train", {"loss": {"cls_norm": "boxes"}}, "sdst",
     "model.variants.sdst.train.loss.cls_norm: must be one of queries, windows"),
    ("model.variants.sdst.train", {"epoch": 3}, "sdst", "model.variants.sdst.train: unknown key(s) ['epoch']"),
    ("model.variants.actionformer.train", {"loss": {"cls_norm": "windows"}}, "actionformer",
     "train.loss.cls_norm 'windows' is an option of SDST's set criterion"),
])
def test_bad_value_is_refused_naming_its_key(path, v, model, message):
    with pytest.raises(ConfigValueError) as err:
        resolve_run(_with(path, v), "demo", model, 0)
    assert message in str(err.value)


def test_command_line_overrides_are_checked_too():
    with pytest.raises(ConfigValueError, match=r"--set model\.hidden_dim: must be >= 1"):
        resolve_run(SHIPPED, "demo", "sdst", 0, parse_set(["hidden_dim=0"]))
    with pytest.raises(ConfigValueError, match=r"--set train\.loss\.temperature: must be > 0"):
        resolve_run(SHIPPED, "demo", "sdst", 0, parse_set(["train.loss.temperature=0"]))
    # a --set of one loss weight keeps the configuration's other loss overrides
    cfg = _with("train.loss", {"sal": 0.5})
    assert resolve_run(cfg, "demo", "sdst", 0, parse_set(["train.loss.act=0"]))["train"]["loss"] == {"sal": 0.5, "act": 0}


def test_a_variant_sets_training_values_of_its_own_between_the_datasets_and_the_command_line():
    cfg = _with("model.variants.sdst_cls_windows",
                {"arch": "sdst", "train": {"lr": 2e-4, "loss": {"cls_norm": "windows"}}})
    cfg["train"]["datasets"]["demo"]["loss"] = {"sal": 0.5}
    run = resolve_run(cfg, "demo", "sdst_cls_windows", 0)
    assert run["train"]["loss"] == {"sal": 0.5, "cls_norm": "windows"} and run["train"]["lr"] == 2e-4
    assert "train" not in run["model"]["params"]
    assert resolve_run(cfg, "demo", "sdst", 0)["train"]["loss"] == {"sal": 0.5}  # the other variants keep theirs
    assert resolve_run(cfg, "demo", "sdst_cls_windows", 0, parse_set(["train.lr=1e-3"]))["train"]["lr"] == 1e-3


def test_shipped_configuration_and_every_default_pass():
    for ds in SHIPPED["datasets"]:
        for variant in SHIPPED["model"]["variants"]:
            resolve_run(SHIPPED, ds, variant, 0)
    for cls in (*ARCH_CONFIGS.values(), TrainConfig, LossConfig, MatcherConfig):
        check_values(cls, dataclasses.asdict(cls()), cls.__name__)


def test_declared_choices_are_the_registries():
    """The choices declared beside the fields (torch-free, for the workflow) are the registries' keys."""
    from sdst.model import actionformer, dense, sdst, sparse_attention

    def choices(cls, name):
        return set(next(f for f in dataclasses.fields(cls) if f.name == name).metadata["limits"]["choices"])

    sd, af, r2 = ARCH_CONFIGS["sdst"], ARCH_CONFIGS["actionformer"], ARCH_CONFIGS["r2tuning"]
    assert choices(sd, "sparse_attention") == set(sparse_attention.SPARSE_ATTENTION)
    assert choices(sd, "query_init") == set(sdst.QUERY_INITS)
    assert choices(sd, "condition") == set(sdst.CONDITIONS)
    assert choices(sd, "sparse_order") == set(sdst.SPARSE_MODULES)
    assert choices(sd, "sampling_points") == set(sparse_attention.SAMPLING_POINTS)
    assert choices(af, "backbone") == set(actionformer.BACKBONES)
    assert choices(af, "neck") == set(actionformer.NECKS)
    assert choices(r2, "reg_activation") == set(dense.REG_ACTIVATIONS)


def test_snakemake_dry_run_stops_on_a_bad_model_value(tmp_path):
    cfg = _with("model.datasets.demo.hidden_dim", -128)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "-n"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "model.datasets.demo.hidden_dim: must be >= 1, got -128" in proc.stdout + proc.stderr


def test_a_dataset_can_have_its_own_seeds():
    """train.datasets.<ds>.seeds: which runs exist on that dataset (the demo_hard comparison needs 5), not a
    training value: the runs' configurations are those of train.seeds' runs."""
    from sdst.config import dataset_seeds

    cfg = _with("train.datasets.demo.seeds", [3, 7])
    assert dataset_seeds(cfg, "demo") == [3, 7] and dataset_seeds(cfg, "qvh") == SHIPPED["train"]["seeds"]
    assert resolve_run(cfg, "demo", "sdst", 3)["train"] == resolve_run(SHIPPED, "demo", "sdst", 3)["train"]


def test_k_sweep_variants_are_the_papers_fig3():
    """Fig. 3 / Tab. K: K steps on the last K cached layers, shallowest first like `sdst` (levels [-4, -3, -2, -1]),
    or K steps on the last layer only (video and text)."""
    levels = {m: resolve_run(SHIPPED, "qvh", m)["model"]["params"] for m in SHIPPED["model"]["variants"]
              if m == "sdst" or m.startswith("sdst_k") or m.startswith("sdst_last_k")}
    assert {m: p["levels"] for m, p in levels.items()} == {
        "sdst": [-4, -3, -2, -1], "sdst_k1": [-1], "sdst_k2": [-2, -1], "sdst_k3": [-3, -2, -1],
        "sdst_k5": [-5, -4, -3, -2, -1], "sdst_last_k2": [-1, -1], "sdst_last_k3": [-1, -1, -1],
        "sdst_last_k4": [-1, -1, -1, -1], "sdst_last_k5": [-1, -1, -1, -1, -1]}
    assert all(p["text_levels"] is None for p in levels.values())  # the text follows the video's levels


def test_config_yaml_writes_only_what_differs_from_the_declared_defaults():
    """Issue 20 point 3: a default lives in one place, its dataclass field; config.yaml's `train` (and each
    dataset's override of it) and `model.datasets` write only values that change something. (A variant may spell
    out its defining values, e.g. the ActionFormer family's backbone x neck of Tab. I.)"""
    from sdst.config import train_setting
    from sdst.values import field_default as default

    same = [f"train.{k}" for k in SHIPPED["train"] if k not in ("seeds", "datasets")
            and SHIPPED["train"][k] == default(TrainConfig, k)]
    for ds, values in SHIPPED["train"].get("datasets", {}).items():
        same += [f"train.datasets.{ds}.{k}" for k, v in values.items()
                 if k != "seeds" and v == train_setting(SHIPPED, k)]
    for ds, values in SHIPPED["model"].get("datasets", {}).items():  # applied to every arch that has the key
        same += [f"model.datasets.{ds}.{k}" for k, v in values.items()
                 if all(v == default(cls, k) for cls in ARCH_CONFIGS.values() if k in cls.__dataclass_fields__)]
    assert same == []
    assert train_setting(SHIPPED, "epochs") == 60 and train_setting(SHIPPED, "threads") == 1  # default; override
