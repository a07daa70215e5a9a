"""Checkpoints that carry their configuration: a model is rebuilt from the file alone.

Contents: ``run`` (the resolved run configuration, see :mod:`sdst.config`), ``dims`` (video/text feature
dims, cached layers and ``extraction``, the identity of the feature cache it was trained on, so features
can be recomputed for a new video exactly as they were cached), ``model`` (state dict), and for resuming ``optimizer``, ``scaler``, ``epoch``,
``rng`` (torch/numpy/python states), ``best``, ``history`` (one row per finished epoch) and ``log`` (the lines
the run printed).

Checkpoints are shared (people publish trained ones), and unpickling an arbitrary object can run code. So
every checkpoint holds only tensors and plain values (dict, list, tuple, str, int, float, bool, None), checked
when it is written, and is read only with ``torch.load(..., weights_only=True)``: a file that needs anything
else is refused with a one-line error before any of it runs.
Writes are atomic (temporary file + rename), so a killed job leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from sdst.model import build_model

_LEAVES = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


class UnsafeCheckpointError(ValueError):
    """A checkpoint that holds more than tensors and plain values (it could run code when unpickled)."""


def plain(obj, where: str = "checkpoint"):
    """``obj`` as tensors and plain values only (numpy scalars become Python numbers); a TypeError naming the
    entry for anything else, so an unsafe entry fails when it is written, not when someone loads it."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, _LEAVES):
        return obj
    if isinstance(obj, dict):  # OrderedDict (state dicts) is allowed by weights_only
        kind = OrderedDict if isinstance(obj, OrderedDict) else dict
        return kind((k, plain(v, f"{where}[{k!r}]")) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise TypeError(f"{where}: {type(obj).__module__}.{type(obj).__qualname__} cannot go into a checkpoint "
                    f"(tensors and plain values only, so that it loads with weights_only=True)")


def save_checkpoint(path: str | Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(plain(state), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The checkpoint's contents, read with weights_only=True; anything else is refused in one line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says enough
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise ValueError(f"{path}: not a readable checkpoint ({_first_line(err)})") from None
        found = re.search(r"GLOBAL (\S+)", str(err))
        raise UnsafeCheckpointError(
            f"{path}: refused: it holds more than tensors and plain values"
            + (f" (it names {found.group(1)})" if found else "")
            + ", and loading it could run code; only checkpoints written by sdst are read") from None
    except Exception as err:  # noqa: BLE001 - truncated or foreign file
        raise ValueError(f"{path}: not a readable checkpoint ({_first_line(err)})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not an SDST checkpoint (top level is {type(state).__name__})")
    for key in ("run", "dims", "model"):
        if key not in state:
            raise ValueError(f"{path}: not an SDST checkpoint (no '{key}' entry)")
    return state


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def model_from_checkpoint(path: str | Path, map_location="cpu"):
    """(model in eval mode, run config, dims) rebuilt from the checkpoint alone."""
    state = load_checkpoint(path, map_location)
    run, dims = state["run"], state["dims"]
    model = build_model(run["model"]["arch"], run["model"]["params"], dims["video"], dims["text"], dims["layers"])
    model.load_state_dict(state["model"])
    return model.eval(), run, dims
