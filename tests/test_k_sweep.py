"""The paper's Fig. 3 in the significance report (sdst.reporting.k_sweep): each model placed at the K its
levels.json refine, its mean ± std over seeds from metrics.json, lines as the report names them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from sdst.levels import SHOWN
from sdst.reporting.k_sweep import SweepError, points

# model -> (K, layer of every level, R1@0.7 per seed, mAP per seed)
MODELS = {"k1": (1, [-1], [10.0, 12.0], [20.0, 22.0]), "k2": (2, [-2, -1], [30.0, 34.0], [31.0, 31.0]),
          "last2": (2, [-1, -1], [40.0, 44.0], [30.0, 32.0]), "other": (1, [-1], [1.0, 1.0], [1.0, 1.0])}


def _write(tmp_path, model, dataset="d"):
    k, layers, r17, amap = MODELS[model]
    split = {}
    for name, values in (("MR-full-R1@0.7", r17), ("MR-full-mAP", amap), ("MR-full-R1@0.5", [50.0, 50.0])):
        mean = sum(values) / 2
        split[name] = {"mean": mean, "std": abs(values[0] - values[1]) / 2 ** 0.5, "values": values}
    metrics = tmp_path / f"{model}_metrics.json"
    metrics.write_text(json.dumps({"dataset": dataset, "model": model, "seeds": [0, 1], "headline_split": "val",
                                   "splits": {"val": split}}))
    levels = []
    for seed in (0, 1):
        path = tmp_path / f"{model}_levels{seed}.json"
        brief = {name: 1.0 for name in SHOWN}  # what sdst.levels writes per level (the levels section shows it)
        path.write_text(json.dumps({"dataset": dataset, "model": model, "seed": seed, "queries": 3,
                                    "levels": [{"level": i + 1, "cache_layer": c, "metrics": brief}
                                               for i, c in enumerate(layers)],
                                    "output": {"ranked_by": "p", "metrics": brief}}))
        levels.append(str(path))
    return str(metrics), levels


def _all(tmp_path, models=("k2", "k1", "last2")):
    metrics, levels = [], []
    for m in models:
        a, b = _write(tmp_path, m)
        metrics.append(a)
        levels += b
    return metrics, levels


def test_models_are_placed_at_their_k_with_the_seed_mean_and_std(tmp_path):
    metrics, levels = _all(tmp_path)
    data = points(metrics, levels, {"intermediate": ["k2", "k1"], "last": ["k1", "last2"]})["d"]
    assert data["metrics"] == ("MR-full-R1@0.7", "MR-full-mAP")
    inter = data["lines"]["intermediate"]
    assert [(p["model"], p["K"]) for p in inter] == [("k1", 1), ("k2", 2)]  # sorted by K, not by the order given
    r17 = inter[1]["MR-full-R1@0.7"]  # 30, 34: std sqrt(2 · 2²) = 2.83
    assert r17["mean"] == 32.0 and r17["std"] == pytest.approx(2.828, 1e-3)
    assert [(p["model"], p["K"], p["MR-full-mAP"]["mean"]) for p in data["lines"]["last"]] == [("k1", 1, 21.0),
                                                                                              ("last2", 2, 31.0)]


def test_a_model_without_levels_or_outside_the_report_is_refused(tmp_path):
    metrics, levels = _all(tmp_path)
    with pytest.raises(SweepError, match="'l': other is not among the report's models on d"):
        points(metrics, levels, {"l": ["k1", "other"]})
    m_other, _ = _write(tmp_path, "other")  # metrics but no levels.json: not an SDST-family model
    with pytest.raises(SweepError, match="other has no refinement levels on d"):
        points(metrics + [m_other], levels, {"l": ["k1", "other"]})


def test_the_report_shows_the_table_and_the_figure_from_the_command_line(tmp_path):
    metrics, levels = _all(tmp_path)
    out = tmp_path / "rep" / "report.md"
    cli = subprocess.run([sys.executable, "-m", "sdst.reporting.significance", "--metrics", *metrics, "--levels",
                          *levels, "--block-by-seed", "--out", str(out), "--k-sweep", "inter layers=k1,k2",
                          "--k-sweep", "last=k1,last2"], cwd=ROOT, capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    text = out.read_text()
    assert "## Refinement steps K (paper Fig. 3)" in text
    assert "| inter layers | 2 | k2 | 32.00 ± 2.83 | 31.00 ± 0.00 |" in text
    assert "| last | 2 | last2 | 42.00 ± 2.83 | 31.00 ± 1.41 |" in text
    assert (out.parent / "k_sweep.png").stat().st_size > 10_000
    assert '<img alt="refinement steps K" src="data:image/png;base64,' in (out.parent / "report.html").read_text()
    plain = tmp_path / "plain" / "report.md"  # no lines named: no section, no figure
    subprocess.run([sys.executable, "-m", "sdst.reporting.significance", "--metrics", *metrics, "--out", str(plain)],
                   cwd=ROOT, check=True, capture_output=True)
    assert "Refinement steps K" not in plain.read_text() and not (plain.parent / "k_sweep.png").exists()
