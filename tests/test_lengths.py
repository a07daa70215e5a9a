"""The significance report's breakdown by moment length: values per range, ranks with seeds as blocks, the
comparison with the full-set ranking and the GT windows per range, against values worked out by hand."""

from __future__ import annotations

import json
import math

import pytest

from sdst.reporting.lengths import breakdown, count_windows, render

# per model and range, the 3 seeds' MR mAP: a leads on short moments, c on long ones, a and b tie on middle
VALUES = {
    "a": {"short": [30, 31, 32], "middle": [50, 50, 50], "long": [10, 11, 12], "full": [60, 61, 62]},
    "b": {"short": [20, 21, 22], "middle": [50, 50, 50], "long": [20, 21, 22], "full": [55, 56, 57]},
    "c": {"short": [10, 11, 12], "middle": [40, 40, 40], "long": [30, 31, 32], "full": [50, 51, 52]},
}


def _metrics(tmp_path, model, values, dataset="d"):
    split = {}
    for r, v in values.items():
        if v[0] is None:  # no GT window in the range: the evaluator gives None
            split[f"MR-{r}-mAP"] = {"mean": None, "std": None, "values": v}
            continue
        mean = sum(v) / 3
        split[f"MR-{r}-mAP"] = {"mean": mean, "std": math.sqrt(sum((x - mean) ** 2 for x in v) / 2), "values": v}
    path = tmp_path / f"{dataset}_{model}.json"
    path.write_text(json.dumps({"dataset": dataset, "model": model, "seeds": [0, 1, 2], "headline_split": "val",
                                "splits": {"val": split}}))
    return str(path)


def _gt(tmp_path):
    rows = [{"qid": 1, "vid": "v1", "duration": 150, "relevant_windows": [[0, 4], [10, 20]]},  # 4 s, 10 s: short
            {"qid": 2, "vid": "v2", "duration": 150, "relevant_windows": [[0, 10.5], [20, 60]]},  # middle, long
            {"qid": 3, "vid": "v3", "duration": 300, "relevant_windows": [[0, 200]]}]  # 200 s: in no range
    path = tmp_path / "gt.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_windows_are_counted_in_the_evaluators_ranges(tmp_path):
    assert count_windows(_gt(tmp_path)) == {"short": {"windows": 2, "queries": 1},  # (0, 10]: 10 s is short
                                            "middle": {"windows": 1, "queries": 1},
                                            "long": {"windows": 1, "queries": 1}}


def test_ranks_per_range_and_the_change_of_ranking_with_length(tmp_path):
    paths = [_metrics(tmp_path, m, v) for m, v in VALUES.items()]
    d = breakdown(paths, {"d": _gt(tmp_path)})["d"]
    assert d["models"]["a"]["short"]["mean"] == 31 and d["models"]["a"]["short"]["std"] == 1
    ranks = {r: d["ranks"][r]["mean_rank"] for r in ("short", "middle", "long", "full")}
    assert ranks["short"] == ranks["full"] == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert ranks["middle"] == {"a": 1.5, "b": 1.5, "c": 3.0}
    assert ranks["long"] == {"c": 1.0, "b": 2.0, "a": 3.0}
    # 3 seeds in perfect agreement, k = 3: chi2 = 12·3/(3·4)·(1 + 4 + 9 − 3·16/4) = 6, p = exp(−6/2) (2 dof)
    assert d["ranks"]["short"]["friedman_p"] == pytest.approx(math.exp(-3))
    # Kendall's tau-b: long reverses all 3 pairs (−1); middle has 2 concordant pairs and 1 tie on its side:
    # (2 − 0) / sqrt((3 − 1) · 3) = 2 / sqrt(6)
    assert d["vs_full"]["short"] == {"kendall_tau": pytest.approx(1.0), "swapped_pairs": []}
    assert d["vs_full"]["middle"]["kendall_tau"] == pytest.approx(2 / math.sqrt(6))
    assert d["vs_full"]["middle"]["swapped_pairs"] == []  # a tie is not a reversal
    assert d["vs_full"]["long"]["kendall_tau"] == pytest.approx(-1.0)
    assert sorted(map(sorted, d["vs_full"]["long"]["swapped_pairs"])) == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert d["ranking_changes"] is True
    text = render({"d": d})
    assert "| a | 31.00 ± 1.00 | 50.00 ± 0.00 | 11.00 ± 1.00 | 61.00 ± 1.00 |" in text
    assert "| c | 3.00 | 3.00 | 1.00 | 3.00 |" in text  # mean ranks: short, middle, long, full
    assert "GT windows (queries) per range: short 2 (1), middle 1 (1), long 1 (1)." in text
    assert "The ranking changes with moment length" in text


def test_a_range_without_windows_and_datasets_without_ranges(tmp_path):
    values = {m: {**v, "long": [None, None, None]} for m, v in VALUES.items()}
    d = breakdown([_metrics(tmp_path, m, v) for m, v in values.items()])["d"]
    assert "error" in d["ranks"]["long"] and "long" not in d["vs_full"]
    assert d["ranking_changes"] is False and d["windows"] is None
    text = render({"d": d})
    assert "- long: ranks not computed" in text
    assert "(mean ranks of each range against the full set; ranges compared: short, middle)" in text
    mr = tmp_path / "mr.json"  # Charades-STA / TACoS metrics have no length ranges
    mr.write_text(json.dumps({"dataset": "c", "model": "a", "seeds": [0], "headline_split": "test",
                              "splits": {"test": {"MR-R1@0.5": {"mean": 1.0, "std": 0.0, "values": [1.0]}}}}))
    assert breakdown([str(mr)]) == {} and render({}) == ""


def test_one_seed_says_the_change_of_ranking_is_not_known(tmp_path):
    """One seed is one block: no range can be ranked, so the report must not claim the ranking holds."""
    paths = []
    for m, v in VALUES.items():
        path = tmp_path / f"one_{m}.json"
        split = {f"MR-{r}-mAP": {"mean": x[0], "std": 0.0, "values": x[:1]} for r, x in v.items()}
        path.write_text(json.dumps({"dataset": "d", "model": m, "seeds": [0], "headline_split": "val",
                                    "splits": {"val": split}}))
        paths.append(str(path))
    d = breakdown(paths)["d"]
    assert d["vs_full"] == {} and d["ranking_changes"] is None
    text = render({"d": d})
    assert "does not change" not in text and "changes with moment length is not known" in text
