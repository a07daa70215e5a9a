"""sdst.reporting.stats: Friedman / Nemenyi / CD checked against scipy, scikit-posthocs and hand-computed values."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scikit_posthocs as sp
from scipy import stats as ss

from sdst.reporting.stats import ScoresError, cd_cliques, critical_difference, friedman_nemenyi

REPO = Path(__file__).resolve().parents[1]


def records(matrix, metric="acc", seeds=(0,)):
    """blocks x models matrix -> records; block b is dataset d<b>, model j is m<j>.

    With several seeds, matrix is [seed, block, model].
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim == 2:
        m = m[None]
    out = []
    for s, seed in enumerate(seeds):
        for b in range(m.shape[1]):
            for j in range(m.shape[2]):
                out.append({"model": f"m{j}", "dataset": f"d{b}", "metric": metric, "seed": seed, "value": m[s, b, j]})
    return out


def _matrices():
    rng = np.random.default_rng(0)
    return {
        "normal_12x5": rng.normal(size=(12, 5)),
        "normal_30x10": rng.normal(size=(30, 10)),
        "rounded_20x6": np.round(rng.normal(size=(20, 6)), 1),  # a few ties
        "int_15x6": rng.integers(0, 3, size=(15, 6)).astype(float),  # many ties
        "int_40x4": rng.integers(0, 2, size=(40, 4)).astype(float),  # mostly ties, some fully tied blocks
        "int_8x3": np.array([[1, 1, 2], [3, 3, 3], [2, 1, 1], [5, 4, 4], [0, 1, 0], [2, 2, 1], [1, 2, 3], [4, 4, 4]], float),
    }


MATRICES = _matrices()


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_friedman_matches_scipy(name):
    m = MATRICES[name]
    res = friedman_nemenyi(records(m))
    ref = ss.friedmanchisquare(*m.T)
    fr = res["friedman"]
    assert fr["n_blocks"] == m.shape[0] and fr["k_models"] == m.shape[1]
    assert fr["statistic"] == pytest.approx(ref.statistic, rel=1e-9, abs=1e-12)
    assert fr["pvalue"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_nemenyi_matches_scikit_posthocs(name):
    m = MATRICES[name]
    res = friedman_nemenyi(records(m))
    ref = sp.posthoc_nemenyi_friedman(m).to_numpy()
    k = m.shape[1]
    got = np.array([[res["nemenyi"][f"m{i}"][f"m{j}"] for j in range(k)] for i in range(k)])
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.diag(got), 1.0)
    np.testing.assert_array_equal(got, got.T)


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_mean_ranks_and_iman_davenport(name):
    m = MATRICES[name]
    n, k = m.shape
    res = friedman_nemenyi(records(m))
    # scipy ranks ascending (1 = smallest); higher is better here, so rank 1 = largest
    ranks = (k + 1) - ss.rankdata(m, method="average", axis=1)
    for j in range(k):
        assert res["mean_rank"][f"m{j}"] == pytest.approx(ranks[:, j].mean(), abs=1e-12)
    # Iman-Davenport F is the two-way ANOVA F of the ranks (Iman & Davenport 1980)
    grand = ranks.mean()
    ss_treat = n * np.sum((ranks.mean(axis=0) - grand) ** 2)
    ss_block = k * np.sum((ranks.mean(axis=1) - grand) ** 2)  # 0: every block has the same mean rank
    ss_err = np.sum((ranks - grand) ** 2) - ss_treat - ss_block
    f_ref = (ss_treat / (k - 1)) / (ss_err / ((k - 1) * (n - 1)))
    fr = res["friedman"]
    assert fr["iman_davenport_F"] == pytest.approx(f_ref, rel=1e-9)
    assert fr["iman_davenport_pvalue"] == pytest.approx(ss.f.sf(f_ref, k - 1, (k - 1) * (n - 1)), rel=1e-9, abs=1e-15)


def test_critical_difference_demsar():
    # Demšar (2006) Tab. 5a: q_0.05 = 2.728 for k = 5, 2.569 for k = 4; his example: k = 4, N = 14 -> CD = 1.25
    assert critical_difference(5, 14) == pytest.approx(2.728 * math.sqrt(5 * 6 / (6 * 14)), abs=1e-3)
    assert critical_difference(4, 14) == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 14)), abs=1e-3)
    assert critical_difference(4, 14) == pytest.approx(1.25, abs=5e-3)
    # alpha = 0.10, k = 5: q_0.10 = 2.459 (Tab. 5a)
    assert critical_difference(5, 14, alpha=0.10) == pytest.approx(2.459 * math.sqrt(30 / 84), abs=1e-3)
    res = friedman_nemenyi(records(np.random.default_rng(1).normal(size=(14, 5))))
    assert res["critical_difference"] == pytest.approx(2.728 * math.sqrt(30 / 84), abs=1e-3)
    assert res["alpha"] == 0.05


def test_lower_is_better_flips_ranks():
    rows = []
    for ds, vals in {"d0": (0.9, 0.8, 0.7), "d1": (0.6, 0.9, 0.3)}.items():
        for model, v in zip("ABC", vals):
            rows.append({"model": model, "dataset": ds, "metric": "err", "seed": 0, "value": v})
    # higher is better: d0 ranks A1 B2 C3, d1 ranks B1 A2 C3
    hi = friedman_nemenyi(rows)["mean_rank"]
    assert hi == pytest.approx({"A": 1.5, "B": 1.5, "C": 3.0})
    # lower is better: d0 C1 B2 A3, d1 C1 A2 B3
    lo = friedman_nemenyi(rows, lower_is_better=["err"])
    assert lo["mean_rank"] == pytest.approx({"A": 2.5, "B": 2.5, "C": 1.0})
    assert lo["models"][0] == "C"
    assert lo["lower_is_better"] == ["err"]


def test_lower_is_better_only_for_named_metric():
    rows = []
    for metric, vals in {"acc": (3.0, 2.0, 1.0), "loss": (3.0, 2.0, 1.0)}.items():
        for model, v in zip("ABC", vals):
            rows.append({"model": model, "dataset": "d0", "metric": metric, "seed": 0, "value": v})
    res = friedman_nemenyi(rows, lower_is_better=("loss",))
    # acc: A1 B2 C3; loss: C1 B2 A3
    assert res["mean_rank"] == pytest.approx({"A": 2.0, "B": 2.0, "C": 2.0})
    with pytest.raises(ScoresError, match="lose"):
        friedman_nemenyi(rows, lower_is_better=("lose",))  # a typo must not silently flip nothing


def test_ties_get_average_ranks():
    rows = records([[5.0, 5.0, 1.0, 0.0], [2.0, 2.0, 0.5, 1.0]])
    res = friedman_nemenyi(rows)
    assert res["mean_rank"] == pytest.approx({"m0": 1.5, "m1": 1.5, "m2": 3.5, "m3": 3.5})


def test_missing_value_drops_block():
    m = MATRICES["normal_12x5"]
    rows = records(m)
    rows = [r for r in rows if not (r["dataset"] == "d3" and r["model"] == "m2")]  # no row at all
    for r in rows:
        if r["dataset"] == "d7" and r["model"] == "m1":
            r["value"] = None  # an empty value
    res = friedman_nemenyi(rows)
    assert res["dropped_blocks"]["count"] == 2
    assert res["dropped_blocks"]["blocks"] == [["d3", "acc"], ["d7", "acc"]]
    keep = [b for b in range(12) if b not in (3, 7)]
    ref = ss.friedmanchisquare(*m[keep].T)
    assert res["friedman"]["n_blocks"] == 10 == len(res["blocks_used"])
    assert res["friedman"]["statistic"] == pytest.approx(ref.statistic, rel=1e-9)
    ref_p = sp.posthoc_nemenyi_friedman(m[keep]).to_numpy()
    assert res["nemenyi"]["m0"]["m4"] == pytest.approx(ref_p[0, 4], abs=1e-6)


def test_seeds_averaged_or_blocks_by_seed():
    rng = np.random.default_rng(3)
    cube = rng.normal(size=(3, 6, 4))  # seed x block x model
    rows = records(cube, seeds=(0, 1, 2))
    avg = friedman_nemenyi(rows)
    assert avg["friedman"]["n_blocks"] == 6
    ref = ss.friedmanchisquare(*cube.mean(axis=0).T)
    assert avg["friedman"]["statistic"] == pytest.approx(ref.statistic, rel=1e-9)
    per_seed = friedman_nemenyi(rows, block_by_seed=True)
    assert per_seed["friedman"]["n_blocks"] == 18
    assert len(per_seed["blocks_used"][0]) == 3
    ref = ss.friedmanchisquare(*cube.reshape(18, 4).T)
    assert per_seed["friedman"]["statistic"] == pytest.approx(ref.statistic, rel=1e-9)
    ref_p = sp.posthoc_nemenyi_friedman(cube.reshape(18, 4)).to_numpy()
    assert per_seed["nemenyi"]["m1"]["m3"] == pytest.approx(ref_p[1, 3], abs=1e-6)
    assert per_seed["critical_difference"] == pytest.approx(critical_difference(4, 18))
    assert per_seed["critical_difference"] < avg["critical_difference"]


def test_cd_cliques_hand_computed():
    assert cd_cliques({"a": 1.0, "b": 1.5, "c": 3.0, "d": 3.2}, 1.0) == [["a", "b"], ["c", "d"]]
    assert cd_cliques({"a": 1.0, "b": 1.8, "c": 2.6}, 1.0) == [["a", "b"], ["b", "c"]]
    assert cd_cliques({"a": 1.0, "b": 2.0, "c": 3.0}, 1.0) == []  # a difference of exactly CD is significant
    assert cd_cliques({"a": 1.0, "b": 2.0, "c": 2.5}, 5.0) == [["a", "b", "c"]]


def test_too_few_models_or_blocks():
    with pytest.raises(ScoresError, match="at least 2 models"):
        friedman_nemenyi(records([[1.0], [2.0], [3.0]]))
    with pytest.raises(ScoresError, match="at least 2 complete blocks"):
        friedman_nemenyi(records([[1.0, 2.0, 3.0]]))
    rows = records([[1.0, 2.0], [3.0, 1.0]])
    rows[0]["value"] = float("nan")
    with pytest.raises(ScoresError, match="1 block"):
        friedman_nemenyi(rows)


def test_duplicate_record_is_an_error():
    rows = records([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    rows.append(dict(rows[1]))
    with pytest.raises(ScoresError, match=r"record 6: duplicate .*record 1"):
        friedman_nemenyi(rows)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def write_csv(path: Path, matrix, metric="acc", extra_lines=()):
    lines = ["model,dataset,metric,seed,value"]
    for r in records(matrix, metric=metric):
        lines.append(f"{r['model']},{r['dataset']},{r['metric']},{r['seed']},{float(r['value'])!r}")
    lines.extend(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "sdst.reporting.stats", *map(str, args)], cwd=REPO, capture_output=True, text=True,
        timeout=120
    )


def test_cli_end_to_end(tmp_path):
    m = MATRICES["rounded_20x6"]
    scores = write_csv(tmp_path / "scores.csv", m, metric="loss")
    out, png = tmp_path / "out" / "report.json", tmp_path / "cd.png"
    proc = cli("--scores", scores, "--out", out, "--plot", png, "--lower-is-better", "loss")
    assert proc.returncode == 0, proc.stderr
    assert "Friedman" in proc.stdout
    rep = json.loads(out.read_text())
    ref = ss.friedmanchisquare(*m.T)  # the statistic does not depend on the direction
    assert rep["friedman"]["statistic"] == pytest.approx(ref.statistic, rel=1e-9)
    assert rep["friedman"]["pvalue"] == pytest.approx(ref.pvalue, rel=1e-9)
    ranks = ss.rankdata(m, axis=1).mean(axis=0)  # ascending = lower is better
    assert [rep["mean_rank"][f"m{j}"] for j in range(6)] == pytest.approx(list(ranks), abs=1e-12)
    ref_p = sp.posthoc_nemenyi_friedman(m).to_numpy()
    assert rep["nemenyi"]["m2"]["m5"] == pytest.approx(ref_p[2, 5], abs=1e-6)
    assert rep["dropped_blocks"] == {"count": 0, "blocks": []}
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_cli_bad_value_names_file_and_line(tmp_path):
    scores = write_csv(tmp_path / "bad.csv", [[1.0, 2.0, 3.0], [2.0, 1.0, 3.0]])
    lines = scores.read_text().splitlines()
    lines[3] = "m2,d0,acc,0,abc"  # line 4 of the file
    scores.write_text("\n".join(lines) + "\n")
    proc = cli("--scores", scores, "--out", tmp_path / "r.json")
    assert proc.returncode != 0
    assert "bad.csv" in proc.stderr and "line 4" in proc.stderr and "'abc'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_cli_duplicate_and_missing_column(tmp_path):
    scores = write_csv(tmp_path / "dup.csv", [[1.0, 2.0, 3.0], [2.0, 1.0, 3.0]], extra_lines=["m1,d0,acc,0,5.0"])
    proc = cli("--scores", scores, "--out", tmp_path / "r.json")
    assert proc.returncode != 0
    assert "line 8" in proc.stderr and "duplicate" in proc.stderr and "line 3" in proc.stderr
    assert "Traceback" not in proc.stderr

    nocol = tmp_path / "nocol.csv"
    nocol.write_text("model,dataset,metric,value\nm0,d0,acc,1.0\n")
    proc = cli("--scores", nocol, "--out", tmp_path / "r.json")
    assert proc.returncode != 0 and "nocol.csv" in proc.stderr and "seed" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = cli("--scores", tmp_path / "absent.csv", "--out", tmp_path / "r.json")
    assert proc.returncode != 0 and "absent.csv" in proc.stderr and "Traceback" not in proc.stderr


def test_csv_empty_value_drops_block(tmp_path):
    scores = write_csv(tmp_path / "s.csv", MATRICES["normal_12x5"])
    lines = scores.read_text().splitlines()
    assert lines[1 + 2 * 5 + 3].startswith("m3,d2,")
    lines[1 + 2 * 5 + 3] = "m3,d2,acc,0,"
    scores.write_text("\n".join(lines) + "\n")
    res = friedman_nemenyi(scores)
    assert res["dropped_blocks"] == {"count": 1, "blocks": [["d2", "acc"]]}
    ref = ss.friedmanchisquare(*np.delete(MATRICES["normal_12x5"], 2, axis=0).T)
    assert res["friedman"]["statistic"] == pytest.approx(ref.statistic, rel=1e-9)
