"""Checkpoints that carry their configuration: a model is rebuilt from the file alone.

Contents: ``run`` (the resolved run configuration, see :mod:`sdst.config`), ``dims`` (video/text feature
dims, cached layers and ``extraction``, the identity of the feature cache it was trained on, so features
can be recomputed for a new video exactly as they were cached), ``model`` (state dict), and for resuming ``optimizer``, ``scheduler``, ``epoch``,
``rng`` (torch/numpy/python states), ``best`` and ``history`` (one row per finished epoch).
Writes are atomic (temporary file + rename), so a killed job leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sdst.model import build_model


def save_checkpoint(path: str | Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - truncated or foreign file
        raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    for key in ("run", "dims", "model"):
        if key not in state:
            raise ValueError(f"{path}: not an SDST checkpoint (no '{key}' entry)")
    return state


def model_from_checkpoint(path: str | Path, map_location="cpu"):
    """(model in eval mode, run config, dims) rebuilt from the checkpoint alone."""
    state = load_checkpoint(path, map_location)
    run, dims = state["run"], state["dims"]
    model = build_model(run["model"]["arch"], run["model"]["params"], dims["video"], dims["text"], dims["layers"])
    model.load_state_dict(state["model"])
    return model.eval(), run, dims
