"""Training runs: same seed -> same metrics; a killed run resumes and ends as an uninterrupted one; window
ranking follows the run's configuration (Eq. 23 only with a trained actionness head)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, make_synthetic_cache, synthetic_run
from extract.annotations import load_annotations
from sdst.checkpoint import model_from_checkpoint, save_checkpoint
from sdst.data import FeatureDataset, cache_info, collate
from sdst.infer import run_split
from sdst.model import build_model
from sdst.train import train, trains_through


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
    wa = torch.load(tmp_path / "a" / "checkpoint_best.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "checkpoint_best.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # Snakemake re-running the job over a finished run (its input was rewritten) deletes the outputs first: the
    # run resumes after its last epoch, trains nothing, and writes every output again
    log = (tmp_path / "a" / "train_log.csv").read_text()
    for name in ("train_log.csv", "checkpoint_best.pt", "curves.png", "train_summary.json"):
        (tmp_path / "a" / name).unlink()
    again = train(run, syn["summary"], tmp_path / "a", progress=False)
    assert again["select_metrics"] == a["select_metrics"] and (tmp_path / "a" / "train_log.csv").read_text() == log
    assert (tmp_path / "a" / "checkpoint_best.pt").is_file() and (tmp_path / "a" / "curves.png").is_file()


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
    # the resumed run's log (train.log: Snakemake starts it empty) holds the whole history, each epoch once
    assert [resumed.stderr.count(f"epoch {e}/6:") for e in range(1, 7)] == [1] * 6, resumed.stderr
    a, b = (json.loads((d / "train_summary.json").read_text()) for d in (tmp_path / "full", out))
    assert a["select_metrics"] == b["select_metrics"] and a["best_epoch"] == b["best_epoch"]
    assert (tmp_path / "full" / "train_log.csv").read_text().splitlines()[1:] != []
    wa = torch.load(tmp_path / "full" / "checkpoint_last.pt", weights_only=True)["model"]
    wb = torch.load(out / "checkpoint_last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # a run of another configuration in the same folder starts afresh, and so does its log
    shorter = {**run, "train": {**run["train"], "epochs": 2}}
    other = subprocess.run(_train_cmd(shorter, syn["summary"], out), cwd=ROOT, env=env, capture_output=True, text=True)
    assert other.returncode == 0, other.stderr
    assert "starting afresh" in other.stderr and "resuming" not in other.stderr
    assert "epoch 1/2:" in other.stderr and "epoch 2/2:" in other.stderr and "/6:" not in other.stderr


@pytest.mark.parametrize("act", [1.0, 0.0])
def test_windows_rank_by_actionness_only_when_it_is_trained(tmp_path, act):
    """Eq. 23 ranks by sqrt(p · actionness); a "w/o L_act" run (λ_act = 0, Tab. E) never trains the actionness
    head, so its checkpoint's predictions rank by p alone."""
    syn = make_synthetic_cache(tmp_path / "cache", n_train=8, n_val=6)
    run = synthetic_run(syn["annotations"], loss={"act": act})
    info = cache_info(syn["summary"])
    torch.manual_seed(0)
    model = build_model("sdst", run["model"]["params"], info.video_dim, info.text_dim, info.layers).eval()
    with torch.no_grad():  # an actionness head far from uniform, so that it would reorder the windows
        model.act_head.net[-1].weight.normal_(std=2.0)
    dims = {"video": info.video_dim, "text": info.text_dim, "layers": info.layers, "extraction": info.identity}
    save_checkpoint(tmp_path / "c.pt", {"run": run, "dims": dims, "model": model.state_dict()})
    run_split(str(tmp_path / "c.pt"), syn["summary"], "val", str(tmp_path / "val.jsonl"), device="cpu")
    records = [json.loads(line) for line in (tmp_path / "val.jsonl").read_text().splitlines()]
    ds = FeatureDataset(load_annotations(run["data"]["annotations"]["val"]), info.store, 2.0, "qvh")
    batch = collate([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        out = model(batch["video"].float(), batch["video_mask"], batch["text"].float(), batch["text_mask"])
    p = out["pred_logits"].sigmoid()
    conf = (p * out["pred_actionness"]).sqrt() if act > 0 else p
    differ = 0
    assert [r["qid"] for r in records] == [m["qid"] for m in batch["meta"]]
    for i, rec in enumerate(records):
        spans, n = out["pred_spans"][i], batch["meta"][i]["n_clips"]
        ok = (spans[:, 0] + spans[:, 1] / 2).clamp(max=1) > (spans[:, 0] - spans[:, 1] / 2).clamp(min=0)
        top = rec["pred_relevant_windows"][0][2]  # soft-NMS keeps the best window's score undecayed
        assert top == pytest.approx(float(conf[i][ok].max()), abs=1e-5), (i, n)
        differ += p[i][ok].argmax() != (p * out["pred_actionness"])[i][ok].argmax()
    assert differ > 0  # the two rankings disagree on some query, so the check above tells them apart


def test_patience_stops_when_the_selection_score_stops_improving(tmp_path):
    """train.patience: stop once the selection score has not improved for that many epochs. With a learning rate
    too small to change the predictions the score never improves after epoch 1, so 2 epochs of patience stop the
    run after epoch 3 of 10; a job re-run over the stopped run trains nothing more."""
    syn = make_synthetic_cache(tmp_path / "cache")
    run = synthetic_run(syn["annotations"], epochs=10, patience=2, lr=1e-12)
    summary = train(run, syn["summary"], tmp_path / "r", progress=False)
    assert (summary["best_epoch"], summary["epochs_trained"], summary["epochs"]) == (1, 3, 10)
    log = (tmp_path / "r" / "train_log.csv").read_text()
    again = train(run, syn["summary"], tmp_path / "r", progress=False)
    assert again["epochs_trained"] == 3 and (tmp_path / "r" / "train_log.csv").read_text() == log


def _rows(out):
    """train_log.csv's rows without the one column that measures the machine (it_per_s)."""
    with (out / "train_log.csv").open() as fh:
        return [{k: v for k, v in row.items() if k != "it_per_s"} for row in csv.DictReader(fh)]


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_trains_through_replays_the_budget_rule():
    """Epoch e (1-based) is trained while e - 1 < epochs and, with patience P, while fewer than P epochs have passed
    since the best selection score so far; the history's scores decide, as they did while it trained."""
    history = [{"select_score": s} for s in (5.0, 4.0, 4.5, 6.0, 6.0, 5.0)]  # best @ 1, then @ 4
    assert trains_through(history, {"epochs": 6, "patience": 0})
    assert not trains_through(history, {"epochs": 5, "patience": 0})
    assert trains_through(history, {"epochs": 400, "patience": 3})  # epoch 4 is 3 after the best (1): trained
    assert not trains_through(history, {"epochs": 400, "patience": 2})  # stops before epoch 4 (1-based)
    assert trains_through(history[:3], {"epochs": 400, "patience": 2})
    assert trains_through([], {"epochs": 1, "patience": 1})


def test_a_run_resumes_under_a_longer_budget_and_ends_as_from_scratch(tmp_path, capsys):
    """The budget rule (epochs, patience) decides where a run stops, not what an epoch computes: a finished or
    stopped run asked for more epochs, or a longer patience, continues from checkpoint_last.pt and ends exactly as
    the same run from scratch; one whose history the new rule would not all have trained starts afresh."""
    syn = make_synthetic_cache(tmp_path / "cache")
    short, long_ = (synthetic_run(syn["annotations"], epochs=e) for e in (2, 4))
    train(short, syn["summary"], tmp_path / "grown", progress=False)
    grown = train(long_, syn["summary"], tmp_path / "grown", progress=False)
    fresh = train(long_, syn["summary"], tmp_path / "fresh", progress=False)
    assert grown["epochs_trained"] == fresh["epochs_trained"] == 4
    assert _rows(tmp_path / "grown") == _rows(tmp_path / "fresh")
    wa, wb = _weights(tmp_path / "grown" / "checkpoint_last.pt"), _weights(tmp_path / "fresh" / "checkpoint_last.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert grown["select_metrics"] == fresh["select_metrics"] and grown["best_epoch"] == fresh["best_epoch"]

    # patience: with a learning rate too small to move the score it never improves after epoch 1
    def stalled(patience):
        return synthetic_run(syn["annotations"], epochs=10, patience=patience, lr=1e-12)

    out = tmp_path / "stalled"
    assert train(stalled(2), syn["summary"], out, progress=False)["epochs_trained"] == 3
    capsys.readouterr()
    assert train(stalled(4), syn["summary"], out, progress=False)["epochs_trained"] == 5  # 2 more
    said = capsys.readouterr().err  # what the job's train.log gets
    assert "same run under another budget rule (10 epochs, patience 4), which trains all its 3 epochs" in said
    assert "resuming from" in said and "epoch 4/10:" in said and "starting afresh" not in said
    assert len(_rows(out)) == 5
    # patience 1 would have stopped after epoch 2 of these 5: afresh, and 2 epochs
    assert train(stalled(1), syn["summary"], out, progress=False)["epochs_trained"] == 2
    assert "trained past where this run's budget rule (10 epochs, patience 1) stops; starting afresh" in \
        capsys.readouterr().err


def test_a_run_over_other_features_starts_afresh(tmp_path):
    """Same configuration and code but a cache of another identity (e.g. a regenerated demo dataset under the same
    annotation paths): checkpoint_last.pt is not resumed from."""
    syn = make_synthetic_cache(tmp_path / "cache")
    run = synthetic_run(syn["annotations"], epochs=1)
    train(run, syn["summary"], tmp_path / "r", progress=False)
    summary = json.loads(open(syn["summary"]).read())
    with open(syn["summary"], "w") as fh:
        json.dump({**summary, "identity": {"generated": {"spec": {"seed": 1}}}}, fh)
    again = train(run, syn["summary"], tmp_path / "r", progress=False)
    assert again["epochs_trained"] == 1
    assert "trained on features of another extraction; starting afresh" in torch.load(
        tmp_path / "r" / "checkpoint_last.pt", weights_only=True)["log"][0]
