"""results/{dataset}/summary.md, .csv and .html (sdst.reporting.summary) and the Markdown-to-HTML page
(sdst.reporting.html)."""

from __future__ import annotations

import csv
import json
import re

from sdst.reporting.html import markdown_to_html
from sdst.reporting.significance import DEFAULT_METRICS
from sdst.reporting.summary import build


def _metrics(model, values, params, splits=("val",)):
    per_split = {n: {"mean": round(sum(v) / len(v), 2), "std": 1.5, "values": v} for n, v in values.items()}
    return {"dataset": "d", "model": model, "seeds": [0, 1], "headline_split": splits[0],
            "splits": {s: per_split for s in splits}, "metrics": per_split,
            "training": {"parameters": params},
            "random_baseline": {"split": splits[0], "metrics": {n: 3.25 for n in values}}}


def test_summary_files_hold_the_same_table(tmp_path):
    names = DEFAULT_METRICS["qvh"]
    paths = []
    for model, base, params in (("sdst", 60.0, 2_500_000), ("r2tuning", 50.0, 1_000_000)):
        p = tmp_path / f"{model}.json"
        p.write_text(json.dumps(_metrics(model, {n: [base + i, base + i + 2] for i, n in enumerate(names)}, params,
                                         splits=("val", "test"))))
        paths.append(str(p))
    ex = {"store": "cache/d/abc/features.zarr", "identity_hash": "abc", "identity": {"backbone": "tiny"},
          "videos": {"total": 3, "extracted": 2, "already_complete": 0, "failed": 1},
          "queries": {"total": 5}, "clips": 40, "seconds": 2.0,
          "failed_videos": [{"vid": "v9", "file": "videos/v9.mp4", "reason": "cannot open: moov atom not found"}]}
    (tmp_path / "ex.json").write_text(json.dumps(ex))
    build("d", paths, str(tmp_path / "ex.json"), tmp_path / "out" / "summary.md")
    md = (tmp_path / "out" / "summary.md").read_text()
    # every model x reported split, then the baseline; header = the paper's Tab. 1 columns
    assert "| model | split | parameters | seeds | " + " | ".join(names) + " |" in md
    assert "| sdst | test | 2.50 M | 2 | 61.00 ± 1.50 |" in md and "| r2tuning | val | 1.00 M | 2 | 51.00 ± 1.50" in md
    assert "| random baseline | val | 0 | – | 3.25 | 3.25 |" in md
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    assert [(r["model"], r["split"]) for r in rows] == [("sdst", "val"), ("sdst", "test"), ("r2tuning", "val"),
                                                         ("r2tuning", "test"), ("random baseline", "val")]
    assert float(rows[3]["MR-full-mAP mean"]) == 55.0 and float(rows[3]["MR-full-mAP std"]) == 1.5
    page = (tmp_path / "out" / "summary.html").read_text()
    cell = re.search(r'<td class="num" data-row="r2tuning" data-col="MR-full-mAP">([^<]*)</td>', page)
    assert cell and cell.group(1) == "55.00 ± 1.50"
    ex_md = (tmp_path / "out" / "extraction.md").read_text()
    assert "| videos failed | 1 |" in ex_md and "| v9 | videos/v9.mp4 | cannot open: moov atom not found |" in ex_md
    assert "v9" in (tmp_path / "out" / "extraction.html").read_text()


def test_markdown_page_escapes_text_and_embeds_images(tmp_path):
    import base64

    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    (tmp_path / "cd.png").write_bytes(png)
    page = markdown_to_html("# A <b> title\n\nsome **bold** `x<y`\n\n![cd diagram](cd.png)\n", "t", tmp_path)
    assert "<h1>A &lt;b&gt; title</h1>" in page and "<strong>bold</strong>" in page and "<code>x&lt;y</code>" in page
    assert 'src="data:image/png;base64,' + base64.b64encode(png).decode() + '"' in page


def test_paper_numbers_beside_the_run_with_both_protocols(tmp_path):
    """sdst.reporting.paper: the paper's Tab. 2 TACoS test numbers beside the default model's, run − paper in its
    std."""
    from sdst.reporting.paper import run_protocol

    names = DEFAULT_METRICS["mr"]
    p = tmp_path / "sdst.json"
    p.write_text(json.dumps(_metrics("sdst", {"MR-R1@0.3": [50.0, 52.0], "MR-R1@0.5": [40.0, 42.0],
                                              "MR-R1@0.7": [30.0, 32.0], "MR-mIoU": [40.0, 41.0]}, 1, ("test",))))
    (tmp_path / "ex.json").write_text(json.dumps({"store": "s", "identity_hash": "h", "identity": {},
                                                  "videos": {"total": 1, "extracted": 1, "already_complete": 0,
                                                             "failed": 0}, "queries": {"total": 1}, "clips": 1,
                                                  "seconds": 1.0, "failed_videos": []}))
    protocol = run_protocol({"train": "train", "select": "val", "report": ["test"]})
    build("tacos", [str(p)], str(tmp_path / "ex.json"), tmp_path / "summary.md", paper="tacos", protocol=protocol)
    md = (tmp_path / "summary.md").read_text()
    assert "| | split | " + " | ".join(names) + " |" in md
    assert "| paper (Tab. 2) | test | – | 44.50 | 32.30 | 42.20 |" in md
    # means 41.00, 31.00, 40.50 with std 1.5 (the fixture's): 41.00 - 44.50 = -3.50, i.e. 2.3 std
    assert "| run − paper | test | – | -3.50 (2.3 std) | -1.30 (0.9 std) | -1.70 (1.1 std) |" in md
    assert "model selection in this run: the best epoch on val (not a reported split)" in md
    assert "moment_detr-family code it builds on keeps the epoch that scores best" in md
    build("tacos", [str(p)], str(tmp_path / "ex.json"), tmp_path / "none" / "summary.md")
    assert "Beside the paper" not in (tmp_path / "none" / "summary.md").read_text()


def test_paper_protocol_preset_is_a_valid_overlay(tmp_path):
    """config/presets/paper_protocol.yaml over config.yaml (as `--configfile` merges it): valid, selects on QVHighlights
    val and reports it, and names that protocol; without select_on_reported that split choice is refused."""
    import jsonschema
    import pytest
    import yaml
    from snakemake.utils import update_config

    from conftest import ROOT
    from sdst.config import resolve_run
    from sdst.data import split_queries
    from sdst.reporting.paper import run_protocol

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    update_config(cfg, yaml.safe_load((ROOT / "config/presets/paper_protocol.yaml").read_text()))
    jsonschema.validate(cfg, yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text()))
    splits = resolve_run(cfg, "qvh_release", "sdst")["data"]["splits"]
    assert splits == {"train": "train", "select": "val", "report": ["val", "test"], "select_on_reported": True}
    assert "a reported split (the paper's protocol: optimistic)" in run_protocol(splits)
    (tmp_path / "a.jsonl").write_text(json.dumps({"qid": 1, "query": "q", "vid": "v", "duration": 10,
                                                  "relevant_windows": [[0, 2]]}) + "\n")
    data = {"name": "d", "annotations": {"train": str(tmp_path / "a.jsonl"), "val": str(tmp_path / "a.jsonl")},
            "splits": {"train": "train", "select": "val", "report": ["val"]}}
    with pytest.raises(ValueError, match="is also reported"):
        split_queries(data)
    data["splits"]["select_on_reported"] = True
    assert set(split_queries(data)) == {"train", "select", "report:val"}
