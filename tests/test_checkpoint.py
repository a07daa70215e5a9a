"""Checkpoints hold tensors and plain values only and are read with weights_only=True: a crafted file that
would run code when unpickled is refused in one line and runs nothing."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from sdst.checkpoint import UnsafeCheckpointError, load_checkpoint, save_checkpoint


class _Marker:
    """Unpickling this calls os.system, which writes the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "shared.pt"
    # a checkpoint as sdst writes it, with one entry that runs code when unpickled
    torch.save({"run": {"seed": 0}, "dims": _Marker(marker), "model": {"w": torch.zeros(2)}}, path)
    return path, marker


def test_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    path, marker = _crafted(tmp_path)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message and "posix.system" in message
    assert not marker.exists()
    # the same through a command line that loads a checkpoint: one line on stderr, exit 2, nothing ran
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "sdst.predict", "--video", str(video), "--query", "q",
                           "--checkpoint", str(path), "--out", str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith(f"error: {path}: refused")
    assert not marker.exists()


def test_plain_pickle_is_refused_too(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "old.pt"
    path.write_bytes(pickle.dumps({"run": {}, "dims": {}, "model": _Marker(marker)}))  # not even a zip
    with pytest.raises(ValueError, match=str(path)):
        load_checkpoint(path)
    assert not marker.exists()


def test_unreadable_file_is_named_in_one_line(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"run": {}, "dims": {}, "model": {"w": torch.ones(3)}})
    whole = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "cut.pt")
    assert str(tmp_path / "cut.pt") in str(err.value) and "\n" not in str(err.value)


def test_written_state_loads_with_weights_only(tmp_path):
    state = {"run": {"lr": 1e-4, "levels": [-1]}, "dims": {"video": 8}, "model": {"w": torch.ones(2)},
             "history": [{"score": np.float64(0.5)}], "rng": [torch.get_rng_state(), (3, (1, 2), None)]}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    assert loaded["history"] == [{"score": 0.5}] and type(loaded["history"][0]["score"]) is float
    assert torch.equal(loaded["rng"][0], state["rng"][0]) and loaded["rng"][1] == (3, (1, 2), None)
    with pytest.raises(TypeError, match=r"checkpoint\['dims'\]\['bad'\]: numpy.ndarray"):
        save_checkpoint(tmp_path / "d.pt", {**state, "dims": {"bad": np.zeros(3)}})
    assert not (tmp_path / "d.pt").exists()
