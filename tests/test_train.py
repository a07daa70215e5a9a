"""Training runs: same seed -> same metrics; a killed run resumes and ends as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from conftest import ROOT, make_synthetic_cache, synthetic_run
from sdst.checkpoint import model_from_checkpoint
from sdst.train import train


def _train_cmd(run, summary, out):
    return [sys.executable, "-m", "sdst.train", "--run", json.dumps(run), "--features", summary, "--out", str(out),
            "--no-progress"]


def test_same_seed_same_result_and_checkpoint_carries_config(tmp_path):
    syn = make_synthetic_cache(tmp_path / "cache")
    run = synthetic_run(syn["annotations"], epochs=3)
    a = train(run, syn["summary"], tmp_path / "a", progress=False)
    b = train(run, syn["summary"], tmp_path / "b", progress=False)
    assert a["select_metrics"] == b["select_metrics"] and a["best_epoch"] == b["best_epoch"]
    assert (tmp_path / "a" / "train_log.csv").read_text() != ""
    assert (tmp_path / "a" / "curves.png").stat().st_size > 10_000
    model, loaded_run, dims = model_from_checkpoint(tmp_path / "a" / "checkpoint_best.pt")
    assert loaded_run == run and dims["video"] == 24
    wa = torch.load(tmp_path / "a" / "checkpoint_best.pt", weights_only=False)["model"]
    wb = torch.load(tmp_path / "b" / "checkpoint_best.pt", weights_only=False)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    syn = make_synthetic_cache(tmp_path / "cache", n_train=96)
    run = synthetic_run(syn["annotations"], epochs=6)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.run(_train_cmd(run, syn["summary"], tmp_path / "full"), cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert full.returncode == 0, full.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(run, syn["summary"], out), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "train_log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.05)  # wait for epoch 2 to be checkpointed
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "checkpoint_best.pt").exists()  # outputs appear only at the end
    resumed = subprocess.run(_train_cmd(run, syn["summary"], out), cwd=ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    a, b = (json.loads((d / "train_summary.json").read_text()) for d in (tmp_path / "full", out))
    assert a["select_metrics"] == b["select_metrics"] and a["best_epoch"] == b["best_epoch"]
    assert (tmp_path / "full" / "train_log.csv").read_text().splitlines()[1:] != []
    wa = torch.load(tmp_path / "full" / "checkpoint_last.pt", weights_only=False)["model"]
    wb = torch.load(out / "checkpoint_last.pt", weights_only=False)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
