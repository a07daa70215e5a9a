"""The offsets diagnostic (paper Fig. 4, §6.2): d_q = Σ_p A_qp Δ_qp per level and head, in half-widths of the
reference. A tiny model with known offsets and weights gives d_q by hand; the shared demo run's checkpoint gives
a figure and finite statistics."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, make_synthetic_cache, synthetic_checkpoint, synthetic_run
from sdst.checkpoint import save_checkpoint
from sdst.diagnose import OffsetRecorder, features_summary, run, summarise
from sdst.model import build_model

# 4 heads x 2 points. Offsets Δ (half-widths) and weight logits, chosen so that d = Σ_p softmax(logits)_p Δ_p is
# exact by hand (softmax(0, ln 3) = (1/4, 3/4), softmax(0, 0) = (1/2, 1/2)):
DELTA = [(-2.0, 0.0), (-2.0, -1.0), (0.4, 0.8), (1.0, 3.0)]
LOGITS = [(0.0, math.log(3)), (0.0, 0.0), (math.log(3), 0.0), (math.log(3), 0.0)]
# head 0: -2/4 + 0 = -0.5; head 1: (-2 - 1)/2 = -1.5; head 2: 0.3 + 0.2 = 0.5; head 3: 0.75 + 0.75 = 1.5
EXPECTED = [-0.5, -1.5, 0.5, 1.5]


def _known_model(tmp_path, sparse_attention="rdsa"):
    cache = make_synthetic_cache(tmp_path / "cache", n_train=4, n_val=6, layers=4)
    run_cfg = synthetic_run(cache["annotations"])
    run_cfg["model"]["params"].update(deform_points=2, sparse_attention=sparse_attention)


    def known_offsets(model):
        for m in OffsetRecorder(model).modules:
            m.offsets.weight.zero_()
            m.offsets.bias.copy_(torch.tensor(DELTA).reshape(-1))
            m.weights.weight.zero_()
            m.weights.bias.copy_(torch.tensor(LOGITS).reshape(-1))

    ckpt = tmp_path / "checkpoint_best.pt"
    synthetic_checkpoint(ckpt, run_cfg, known_offsets)
    return ckpt, cache


@pytest.mark.parametrize("sparse_attention", ["rdsa", "deformable_ca"])
def test_weighted_offsets_of_known_weights_are_the_hand_computed_values(tmp_path, sparse_attention):
    ckpt, cache = _known_model(tmp_path, sparse_attention)
    stats = run(str(ckpt), "val", tmp_path / "out", features=cache["summary"])
    assert stats["queries"] == 6 and stats["decoder_queries"] == 6 and stats["heads"] == 4
    assert [lvl["cache_layer"] for lvl in stats["levels"]] == [-4, -3, -2, -1]
    for lvl in stats["levels"]:
        for h, s in enumerate(lvl["heads"]):
            assert s["mean"] == pytest.approx(EXPECTED[h], abs=1e-6) and s["std"] == pytest.approx(0, abs=1e-6)
            assert s["quantiles"]["0.5"] == pytest.approx(EXPECTED[h], abs=1e-6)
            assert s["frac_below_-1"] == (1.0 if h == 1 else 0.0)
            assert s["frac_above_+1"] == (1.0 if h == 3 else 0.0)
            assert s["frac_beyond_ends_by_margin"] == (1.0 if h in (1, 3) else 0.0)  # 0.5 beyond > 0.1
            assert s["n"] == 6 * 6
    assert [s["init"] for s in stats["levels"][0]["heads"]] == [-1.0, 1.0, 0.0, -0.5]  # head 0 left, 1 right (Fig. 4)
    saved = json.loads((tmp_path / "out" / "offsets.json").read_text())
    assert saved["levels"][2]["heads"][3]["mean"] == pytest.approx(1.5, abs=1e-6)
    assert (tmp_path / "out" / "offsets.png").stat().st_size > 10_000


def test_units_are_half_widths_where_the_module_samples(tmp_path):
    """d in half-widths of the reference: Σ_p A_p (position_p − c) / (w/2) recovers it from the positions the
    module actually samples, and those are the reference's ends at ±1 (head 1: 3/4 of a half-width beyond)."""
    ckpt, cache = _known_model(tmp_path)
    from sdst.checkpoint import model_from_checkpoint

    model, _, _ = model_from_checkpoint(ckpt)
    b, t = 2, 12
    video, text = torch.randn(b, 4, t, 24), torch.randn(b, 4, 5, 20)
    with torch.no_grad(), OffsetRecorder(model) as rec:
        model(video, torch.ones(b, t, dtype=torch.bool), text, torch.ones(b, 5, dtype=torch.bool))
    calls = rec.take()
    assert len(calls) == 4  # one call per level through the shared layer
    for c in calls:
        centre, half = c["references"][..., 0, None, None], c["references"][..., 1, None, None] / 2
        d = (c["weights"] * (c["positions"] - centre) / half).sum(-1)  # (B, M, heads)
        torch.testing.assert_close(d, torch.tensor(EXPECTED).expand_as(d), atol=1e-5, rtol=0)


def test_models_without_deformable_offsets_are_refused(tmp_path):
    ckpt, cache = _known_model(tmp_path)
    state = torch.load(ckpt, weights_only=True)
    state["run"]["model"]["params"]["sparse_attention"] = "standard_ca"
    state["model"] = build_model("sdst", state["run"]["model"]["params"], 24, 20, 4).state_dict()
    save_checkpoint(ckpt, state)
    proc = subprocess.run([sys.executable, "-m", "sdst.diagnose", "--checkpoint", str(ckpt), "--split", "val",
                           "--out", str(tmp_path / "o"), "--features", cache["summary"]],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "no deformable attention" in proc.stderr and "standard_ca" in proc.stderr


def test_features_are_found_from_the_checkpoints_extraction_identity(tmp_path):
    from extract.cache import identity_hash

    ident = {"backbone": "tiny", "clip_len": 2.0}
    folder = tmp_path / "cache" / "demo" / identity_hash(ident)
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text("{}")
    assert features_summary({"extraction": ident}, "demo", tmp_path / "cache") == folder / "summary.json"
    with pytest.raises(FileNotFoundError, match="not there"):
        features_summary({"extraction": {**ident, "clip_len": 1.0}}, "demo", tmp_path / "cache")


def test_summary_statistics_by_hand():
    s = summarise([-3.0, -1.0, 0.0, 1.0, 3.0])
    assert s["mean"] == 0.0 and s["std"] == pytest.approx(2.0)  # sqrt((9 + 1 + 0 + 1 + 9) / 5)
    assert s["frac_below_-1"] == 0.2 and s["frac_above_+1"] == 0.2 and s["frac_beyond_ends"] == 0.4  # ±1 is inside
    assert summarise([1.05, -1.05, 1.2])["frac_beyond_ends_by_margin"] == pytest.approx(1 / 3)  # margin 0.1
    assert s["quantiles"]["0.5"] == 0.0 and s["quantiles"]["0.25"] == -1.0


def test_demo_checkpoint_offsets_figure_and_statistics(demo_workflow):
    """The shared demo run builds the figure for SDST (rule all); its statistics are finite and complete."""
    _, work = demo_workflow
    folder = work / "results" / "demo" / "sdst" / "seed0" / "diagnose"
    assert (folder / "offsets.png").stat().st_size > 10_000
    stats = json.loads((folder / "offsets.json").read_text())
    assert stats["dataset"] == "demo" and stats["split"] == "val" and stats["seed"] == 0
    assert len(stats["levels"]) == 4 and stats["queries"] > 0
    for lvl in stats["levels"]:
        assert len(lvl["heads"]) == 8
        for s in lvl["heads"]:
            values = [s["mean"], s["std"], *s["quantiles"].values(), s["best_query"]["mean"]]
            assert all(math.isfinite(v) for v in values)
            assert 0.0 <= s["frac_beyond_ends"] <= 1.0 and 0.0 <= s["attention_beyond_video"] <= 1.0


def test_report_section_averages_the_offsets_over_seeds(tmp_path):
    """Two seeds' offsets.json: each cell is the mean over seeds of the head's mean d_q ± their std (ddof 1), and
    the share beyond the ends is averaged; the figure shown is the first seed's."""
    from sdst.diagnose import report_section

    paths = []
    for seed, (d0, share0) in ((1, (-1.3, 0.5)), (0, (-1.1, 0.1))):
        heads = [{"init": -1.0, "mean": d0, "frac_beyond_ends_by_margin": share0},
                 {"init": 1.0, "mean": 0.9, "frac_beyond_ends_by_margin": 0.0}]
        stats = {"model": "m", "dataset": "d", "seed": seed, "sparse_attention": "rdsa", "heads": 2,
                 "levels": [{"level": 1, "cache_layer": -1, "heads": heads}]}
        folder = tmp_path / "results" / "d" / "m" / f"seed{seed}" / "diagnose"
        folder.mkdir(parents=True)
        (folder / "offsets.json").write_text(json.dumps(stats))
        paths.append(str(folder / "offsets.json"))
    text = report_section(paths, tmp_path / "rep")
    assert "### m on d (rdsa, 2 seeds: 0, 1)" in text
    # head 0: (−1.1 − 1.3) / 2 = −1.2, std sqrt(2 · 0.1²) = 0.14, share (10 % + 50 %) / 2 = 30 %
    assert "| 1 (layer -1) | -1.20 ± 0.14 (30%) | +0.90 ± 0.00 (0%) |" in text
    assert "![offsets of m](../results/d/m/seed0/diagnose/offsets.png)" in text
