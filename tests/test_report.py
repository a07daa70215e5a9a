"""The significance report: tables from aggregated metrics, statistics reproducible from its scores.csv."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT
from sdst.reporting.significance import build

SETS = {"qvh": ["MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "HL-min-VeryGood-Hit1"],
        "mr": ["MR-R1@0.3", "MR-R1@0.5", "MR-R1@0.7", "MR-mIoU"]}


def _metrics(tmp_path, model, dataset, base, kind="qvh", params=1_000_000):
    names = SETS[kind]
    split = {n: {"mean": base + i, "std": 0.5, "values": [base + i - 0.5, base + i, base + i + 0.5]}
             for i, n in enumerate(names)}
    path = tmp_path / f"{dataset}_{model}.json"
    path.write_text(json.dumps({"dataset": dataset, "model": model, "seeds": [0, 1, 2], "headline_split": "val",
                                "splits": {"val": split}, "training": {"parameters": params}}))
    return str(path)


def test_report_tables_statistics_and_reproducible_scores(tmp_path):
    paths = []
    for model, base in (("a", 70.0), ("b", 60.0), ("c", 50.0)):
        paths.append(_metrics(tmp_path, model, "qvhlike", base, "qvh", params=int(base) * 100_000))
        paths.append(_metrics(tmp_path, model, "mrlike", base - 5, "mr"))
    out = tmp_path / "rep" / "report.md"
    result = build(paths, out, SETS)
    text = out.read_text()
    assert "## qvhlike" in text and "## mrlike" in text and "7.00 M" in text  # params of model a
    assert "| a | 7.00 M | 3 | 70.00 ± 0.50 |" in text
    # a strict ordering in all 8 blocks: ranks 1, 2, 3
    assert result["friedman"]["n_blocks"] == 8 and result["mean_rank"] == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert (out.parent / "cd_diagram.png").stat().st_size > 5_000
    # the page Snakemake's report shows: the same tables, the diagram embedded
    page = (out.parent / "report.html").read_text()
    assert '<td class="num" data-row="a" data-col="parameters">7.00 M</td>' in page
    assert '<img alt="critical-difference diagram" src="data:image/png;base64,' in page
    # the statistics are reproducible from the scores file with the standalone CLI
    cli = subprocess.run([sys.executable, "-m", "sdst.reporting.stats", "--scores", str(out.parent / "scores.csv"),
                          "--out", str(tmp_path / "cli.json")], cwd=ROOT, capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    again = json.loads((tmp_path / "cli.json").read_text())
    assert abs(again["friedman"]["statistic"] - result["friedman"]["statistic"]) < 1e-9
    assert json.loads((out.parent / "report.json").read_text())["mean_rank"] == result["mean_rank"]


def test_missing_metric_drops_its_block_and_is_reported(tmp_path):
    paths = [_metrics(tmp_path, m, "d", b) for m, b in (("a", 70.0), ("b", 60.0), ("c", 65.0))]
    broken = json.loads(open(paths[2]).read())
    broken["splits"]["val"].pop("MR-full-mAP")
    open(paths[2], "w").write(json.dumps(broken))
    result = build(paths, tmp_path / "r" / "report.md", SETS)
    assert result["dropped_blocks"]["count"] == 1
    assert "dropped blocks with a missing value: 1" in (tmp_path / "r" / "report.md").read_text()


def test_a_report_without_statistics_still_has_its_diagram_file(tmp_path):
    """One model cannot be ranked: the report says why, and cd_diagram.png (a workflow output) says so too."""
    paths = [_metrics(tmp_path, "a", "d", 70.0)]
    assert build(paths, tmp_path / "r" / "report.md", SETS) is None
    assert "Not computed:" in (tmp_path / "r" / "report.md").read_text()
    assert (tmp_path / "r" / "cd_diagram.png").stat().st_size > 1_000


def test_report_shows_the_length_breakdown_and_the_offsets_figures(tmp_path):
    """The sections sdst.reporting.budget, lengths and sdst.diagnose add: here a leads on the full set and on short
    moments, b on long ones, so the ranking changes with length; the offsets figure is embedded in the page."""
    import numpy as np

    from sdst.diagnose import plot, statistics

    paths = []
    for model, base, short, long in (("a", 70.0, 40.0, 10.0), ("b", 60.0, 20.0, 30.0)):
        path = _metrics(tmp_path, model, "d", base)
        m = json.loads(open(path).read())
        for name, x in (("MR-short-mAP", short), ("MR-middle-mAP", 50.0), ("MR-long-mAP", long)):
            m["splits"]["val"][name] = {"mean": x, "std": 0.5, "values": [x - 0.5, x, x + 0.5]}
        m["training"]["runs"] = [{"seed": s, "best_epoch": 20 + s, "epochs_trained": 30 + s, "epochs": 100,
                                  "at_cap": False, "longest_wait": 4 + s} for s in (0, 1, 2)]
        open(path, "w").write(json.dumps(m))
        paths.append(path)
    rng = np.random.default_rng(0)
    collected = {"d": [rng.normal(0, 1.2, (5, 3, 2)) for _ in range(2)], "mass_outside": [np.zeros((5, 3, 2))] * 2,
                 "best": np.zeros(5, dtype=int)}
    stats = statistics(collected, [-2, -1], {"model": "a", "dataset": "d", "split": "val", "seed": 0,
                                             "sparse_attention": "rdsa"})
    folder = tmp_path / "results" / "d" / "a" / "seed0" / "diagnose"
    folder.mkdir(parents=True)
    (folder / "offsets.json").write_text(json.dumps(stats))
    plot(collected, stats, folder / "offsets.png")
    out = tmp_path / "rep" / "report.md"
    metrics = {k: 10.0 * i for i, k in enumerate(["MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-short-mAP",
                                                   "MR-middle-mAP"])}
    levels = {"model": "a", "dataset": "d", "seed": 0, "queries": 5, "output": {"ranked_by": "p", "metrics": {
        **metrics, "MR-long-mAP": 7.0}}, "levels": [{"level": 1, "cache_layer": -2, "metrics": {
            **metrics, "MR-long-mAP": None}},
        {"level": 2, "cache_layer": -1, "metrics": {**metrics, "MR-long-mAP": 5.0}}]}
    (folder / "levels.json").write_text(json.dumps(levels))
    build(paths, out, SETS, block_by_seed=True, offsets=[str(folder / "offsets.json"), str(folder / "offsets.png")],
          levels=[str(folder / "levels.json")])
    text = out.read_text()
    assert text.index("## Friedman / Nemenyi") < text.index("## Training budget") < text.index("## By moment length")
    assert text.index("## By moment length") < text.index("## Where the")
    assert "| a | 3 | 20 (30), 21 (31), 22 (32) | 6 (seed 2) | none |" in text
    assert text.index("## Where the") < text.index("## Moment retrieval per refinement level")
    assert "| 1 (-2) | 0.00 | 10.00 | 20.00 | 30.00 | 40.00 | – |" in text  # no long windows: no value
    assert "| output, ranked by p | 0.00 | 10.00 | 20.00 | 30.00 | 40.00 | 7.00 |" in text
    assert "| a | 40.00 ± 0.50 | 50.00 ± 0.50 | 10.00 ± 0.50 | 72.00 ± 0.50 |" in text
    assert "pairs in reverse order: a / b" in text and "The ranking changes with moment length" in text
    mean0 = stats["levels"][0]["heads"][0]["mean"]
    assert f"| 1 (layer -2) | {mean0:+.2f} (" in text and "| init | -1.00 | +1.00 |" in text
    assert "![offsets of a](../results/d/a/seed0/diagnose/offsets.png)" in text
    page = (out.parent / "report.html").read_text()
    assert '<img alt="offsets of a" src="data:image/png;base64,' in page
    by_length = json.loads((out.parent / "report.json").read_text())["by_length"]["d"]
    assert by_length["vs_full"]["long"]["swapped_pairs"] == [["a", "b"]]
