"""Where the first window lands (sdst.first_window) against categories worked out by hand, and the generator's
plans regenerated for it (extract.demo_plans) against what extract.demo.generate wrote."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from conftest import ROOT
from extract import demo
from extract.demo_plans import PlanMismatch, all_query_plans, query_plans
from sdst.first_window import PREFIX, breakdown, classify, classify_elsewhere, group_sizes, main
from sdst.reporting.aggregate import aggregate

GT = [[20.0, 30.0], [40.0, 50.0]]


@pytest.mark.parametrize("window, expected", [
    ([21, 30], "hit"),  # IoU 0.9
    ([20, 34], "hit"),  # 10 / 14 = 0.714
    ([20, 36], "loose"),  # 10 / 16 = 0.625
    ([44, 50], "loose"),  # 0.6
    ([25, 45], "merged"),  # overlaps both, IoU 0.25 with each
    ([28, 40], "partial"),  # touches [40, 50] at one point only: overlaps one window
    ([10, 20], "elsewhere"),
    ([52, 60], "elsewhere"),
])
def test_classify_by_hand(window, expected):
    assert classify(window, GT) == expected


# one video, clips of 2 s: object 0 grows at clips 2-5 and 10-14 and blinks at 20-22; object 1 grows at 30-33,
# shrinks at 40-44; the query asks for object 0's growing after something at clip 8: window clips 10-14
PLAN = {"objects": [
    {"events": [{"type": "grow", "param": None, "clips": [2, 5]}, {"type": "grow", "param": None, "clips": [10, 14]},
                {"type": "blink", "param": None, "clips": [20, 22]}]},
    {"events": [{"type": "grow", "param": None, "clips": [30, 33]},
                {"type": "shrink", "param": None, "clips": [40, 44]}]}]}
QUERY = {"target": [0, "grow", None], "windows": [[10, 14]], "kind": "after"}


@pytest.mark.parametrize("window, expected", [
    ([4, 10], "asked change, excluded time"),  # seconds 4-10: clips 2-5, the growing the relation excludes
    ([60, 64], "same change, other object"),  # object 1 grows at 60-66 s
    ([40, 42], "other change, same object"),  # object 0 blinks at 40-44 s
    ([80, 84], "other event"),  # object 1 shrinks
    ([50, 58], "no event"),
    ([38, 62], "same change, other object"),  # blink (same object) and object 1's growing: the earlier rule wins
])
def test_classify_elsewhere_by_hand(window, expected):
    assert classify_elsewhere(window, PLAN, QUERY) == expected


def test_breakdown_with_plans_by_hand():
    simple = {"target": [1, "shrink", None], "windows": [[40, 44]], "kind": "simple"}
    gt = [{"qid": 1, "relevant_windows": [[20.0, 28.0]]}, {"qid": 2, "relevant_windows": [[80.0, 88.0]]},
          {"qid": 3, "relevant_windows": [[80.0, 88.0]]}, {"qid": 4, "relevant_windows": [[80.0, 88.0]]}]
    records = [{"qid": 1, "pred_relevant_windows": [[20, 28, 0.9], [4, 10, 0.1]]},  # hit
               {"qid": 2, "pred_relevant_windows": [[40, 44, 0.9], [80, 88, 0.5]]},  # object 0 blinks
               {"qid": 3, "pred_relevant_windows": [[82, 86, 0.9]]},  # IoU 0.5: loose
               {"qid": 4, "pred_relevant_windows": []}]  # nothing submitted
    plans = {1: (PLAN, QUERY), 2: (PLAN, simple), 3: (PLAN, simple), 4: (PLAN, simple)}
    out = breakdown(records, gt, plans)
    assert out[PREFIX + "hit"] == 25.0 and out[PREFIX + "loose"] == 25.0 and out[PREFIX + "elsewhere"] == 50.0
    assert out[PREFIX + "other event"] == 25.0  # [40, 44]: object 0 blinks, the query asks for object 1 shrinking
    assert out[PREFIX + "no event"] == 25.0  # qid 4
    assert out["MR-R1@0.7-query-after"] == 100.0 and out["MR-R1@0.7-query-simple"] == 0.0
    assert out["MR-R1@0.7-change-grow"] == 100.0 and out["MR-R1@0.7-change-shrink"] == 0.0
    assert group_sizes(gt, plans) == {"query kind": {"after": 1, "simple": 3}, "asked change": {"grow": 1, "shrink": 3}}
    plain = breakdown(records, gt)
    assert set(plain) == {PREFIX + k for k in ("hit", "loose", "partial", "merged", "elsewhere")}


def test_plans_are_those_the_generator_wrote(tmp_path):
    hard = yaml.safe_load((ROOT / "config.yaml").read_text())["datasets"]["demo_hard"]["generate"]
    spec = demo.DemoSpec.from_config({**copy.deepcopy(hard), "videos": {"train": 2, "val": 2}, "min_duration": 16,
                                      "max_duration": 20, "width": 64, "height": 48})
    demo.generate(tmp_path, spec, progress=False)
    plans = all_query_plans(spec)
    for split in ("train", "val"):
        path = tmp_path / f"demo_{split}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        found = query_plans(plans, rows, str(path))
        assert sorted(found) == [r["qid"] for r in rows]
        for r in rows:  # the query's text is the one drawn with the plan
            assert r["query"] == found[r["qid"]][1]["text"]
    # a run that submits each query's ground-truth windows, aggregated with the spec: every query a hit, counted
    run = tmp_path / "runs" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics_val.json").write_text(json.dumps({"brief": {"MR-full-R1@0.7": 100.0}}))
    (run / "train_summary.json").write_text(json.dumps({"parameters": 1, "best_epoch": 1, "mean_it_per_s": 1.0,
                                                        "device": "cpu"}))
    (run / "predictions_val.jsonl").write_text("".join(
        json.dumps({"qid": r["qid"], "pred_relevant_windows": [w + [1.0] for w in r["relevant_windows"]]}) + "\n"
        for r in rows))
    (run / "predictions_val.jsonl.gt.jsonl").write_text(path.read_text())
    val = aggregate("demo_hard", "m", [str(run)], ["val"], demo_spec=spec.record())["metrics"]
    kinds = {}
    for r in rows:
        kinds[found[r["qid"]][1]["kind"]] = kinds.get(found[r["qid"]][1]["kind"], 0) + 1
    assert val["_query_groups"]["query kind"] == dict(sorted(kinds.items()))
    assert sum(val["_query_groups"]["asked change"].values()) == len(rows)
    assert all(val[f"MR-R1@0.7-query-{k}"]["mean"] == 100.0 for k in kinds)
    assert val[PREFIX + "hit"]["mean"] == 100.0 and val[PREFIX + "no event"]["mean"] == 0.0
    # the same submission through the command line, the dataset named in a config
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"datasets": {"tiny": {"generate": spec.record()}}}))
    assert main(["--predictions", str(run / "predictions_val.jsonl"), "--dataset", "tiny", "--config", str(config),
                 "--out", str(tmp_path / "shares.json")]) == 0
    shares = json.loads((tmp_path / "shares.json").read_text())
    assert shares[PREFIX + "hit"] == 100.0 and all(shares[f"MR-R1@0.7-query-{k}"] == 100.0 for k in kinds)
    rows[-1]["relevant_windows"] = [[0.0, 2.0]]
    with pytest.raises(PlanMismatch, match=rf"demo_val.jsonl line {len(rows)}: qid {rows[-1]['qid']} "):
        query_plans(plans, rows, str(path))
    with pytest.raises(ValueError, match="events kind only"):
        all_query_plans(demo.DemoSpec.from_config({"videos": {"train": 1}}))


def test_command_line_by_hand_and_its_bad_input(tmp_path, capsys):
    gt = tmp_path / "gt.jsonl"
    gt.write_text("".join(json.dumps({"qid": q, "duration": 60, "relevant_windows": GT}) + "\n" for q in (1, 2)))
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"qid": 1, "pred_relevant_windows": [[21, 30, 0.9]]}) + "\n"
                    + json.dumps({"qid": 2, "pred_relevant_windows": [[25, 45, 0.9]]}) + "\n")
    assert main(["--predictions", str(pred), "--gt", str(gt)]) == 0
    out = capsys.readouterr().out
    assert "2 queries" in out and "hit" in out and "50.00" in out and "merged" in out and "asked change" not in out
    assert main(["--predictions", str(pred), "--gt", str(gt), "--dataset", "nope",
                 "--config", str(ROOT / "config.yaml")]) == 2
    assert "config.yaml: no dataset 'nope'" in capsys.readouterr().err
    pred.write_text(pred.read_text() + '{"qid": 3, "pred_relevant_windows": [[5]]}\n')
    assert main(["--predictions", str(pred), "--gt", str(gt)]) == 2
    assert "pred.jsonl:3: " in capsys.readouterr().err
