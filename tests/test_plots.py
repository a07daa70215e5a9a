"""Figures: training curves label every axis and mark the selected epoch with 14 metrics; the one-video figure
shows small scores with their digits and says when they are too low to mean anything."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np

from sdst.reporting.plots import (LOW_SCORE, curves_figure, fmt_score, gt_clip_saliency, main, pick_examples,
                                  plot_submission,
                        prediction_figure, submission_figure)

METRICS = ["MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75", "MR-long-mAP",
           "MR-middle-mAP", "MR-short-mAP", "HL-min-Fair-mAP", "HL-min-Fair-Hit1", "HL-min-Good-mAP",
           "HL-min-Good-Hit1", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1"]


def _history(epochs=6):
    rng = np.random.default_rng(0)
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "lr": 1e-4, "it_per_s": 3.0, "train_loss": 3.0 / e, "train_cls": 1.0 / e, "train_l1": 0.5}
        row.update({f"select_{m}": float(rng.uniform(10, 90)) for m in METRICS})
        row["select_MR-long-mAP"] = None  # no long moments in the split
        row["select_score"] = row["select_MR-full-mAP"] + row["select_HL-min-VeryGood-mAP"]
        rows.append(row)
    return rows


def _panels(fig):
    """The panels (not the learning rate's twin axis, which has no title)."""
    return [ax for ax in fig.axes if ax.get_title()]


def test_curves_label_every_axis_mark_the_selected_epoch_and_show_all_14_metrics():
    import matplotlib.pyplot as plt

    history = _history()
    at = max(range(len(history)), key=lambda i: history[i]["select_score"])
    best = history[at]["epoch"]
    fig = curves_figure(history, "sdst on demo, seed 0", ["MR-full-mAP", "HL-min-VeryGood-mAP"])
    assert len(_panels(fig)) == 6
    for ax in fig.axes:
        assert ax.get_ylabel(), ax.get_title()
    for ax in _panels(fig):
        assert ax.get_xlabel() == "epoch", ax.get_title()
        marks = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--" and list(ln.get_xdata()) == [best, best]]
        assert len(marks) == 1, ax.get_title()
        for ln in ax.get_lines():  # every curve in a legend has its dot at the selected epoch
            if not ln.get_label().startswith("_"):
                assert ln.get_markevery() == [at], (ax.get_title(), ln.get_label())
    score = next(ax for ax in fig.axes if ax.get_ylabel().startswith("selection score"))
    assert "sum" in score.get_ylabel() and "%" in score.get_ylabel()
    assert "MR-full-mAP + HL-min-VeryGood-mAP" in score.get_ylabel().replace("\n", " ")
    assert f"epoch {best}, score {history[at]['select_score']:.2f}" in " ".join(t.get_text() for t in score.texts)
    shown = {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
    for m in METRICS:  # each metric in a legend with its value at the selected epoch
        value = history[at][f"select_{m}"]
        short = m.replace("MR-full-", "").replace("HL-min-", "")
        assert f"{short}: " + ("no data" if value is None else f"{value:.4g}") in shown, m
    assert f"selected epoch {best}" in fig._suptitle.get_text()
    plt.close(fig)


def test_curves_of_a_dataset_without_highlight_detection_leave_no_empty_panel():
    import matplotlib.pyplot as plt

    names = ["MR-R1@0.3", "MR-R1@0.5", "MR-R1@0.7", "MR-mIoU", "MR-mAP", "MR-mAP@0.5", "MR-mAP@0.75"]
    history = [{"epoch": e, "lr": 1e-4, "it_per_s": 3.0, "train_loss": 1.0 / e, "select_score": float(e),
                **{f"select_{m}": 10.0 * e for m in names}} for e in (1, 2, 3)]
    fig = curves_figure(history, "", ["MR-R1@0.5", "MR-R1@0.7", "MR-mIoU"])
    panels = _panels(fig)
    assert len(panels) == 5 and len(fig.axes) == 6 and all(ax.get_lines() for ax in fig.axes)  # 6: the lr twin
    assert any(ax.get_ylabel() == "moment retrieval: R1 and mIoU (%)" for ax in panels)
    plt.close(fig)


def test_small_scores_keep_their_digits_and_low_scores_are_called_out():
    import matplotlib.pyplot as plt

    assert fmt_score(2e-06) == "2.0e-06" and fmt_score(0.047) == "0.047" and fmt_score(0.83) == "0.83"

    def texts(fig):
        return " ".join(t.get_text() for t in fig.texts + [t for ax in fig.axes for t in ax.texts])

    sal = np.linspace(0, 1, 15)
    low = prediction_figure("a dog", "v", 30.0, 2.0, sal, [[4.0, 10.0, 2e-06], [0.0, 2.0, 1e-06]])
    assert "score 2.0e-06" in texts(low) and "not meaningful" in texts(low) and str(LOW_SCORE) in texts(low)
    sure = prediction_figure("a dog", "v", 30.0, 2.0, sal, [[4.0, 10.0, 0.62]])
    assert "score 0.62" in texts(sure) and "not meaningful" not in texts(sure)
    for fig in (low, sure):
        for ax in fig.axes:
            assert ax.get_ylabel()
        plt.close(fig)


def test_window_labels_stay_inside_their_panel():
    import matplotlib.pyplot as plt

    fig = prediction_figure("a dog", "v", 30.0, 2.0, np.zeros(15), [[26.0, 29.5, 0.4], [0.5, 29.0, 0.3],
                                                                    [1.0, 3.0, 0.2]])
    fig.canvas.draw()
    wax = next(ax for ax in fig.axes if ax.get_xlabel())
    box = wax.get_window_extent()
    assert len(wax.texts) == 3
    for t in wax.texts:  # a window ending near the end of the video wrote its label off the axes
        ext = t.get_window_extent()
        assert box.x0 <= ext.x0 and ext.x1 <= box.x1, t.get_text()
    plt.close(fig)


GT = {"qid": 7, "query": "a dog runs", "vid": "v", "duration": 30.0, "relevant_windows": [[4.0, 10.0], [20.0, 24.0]],
      "relevant_clip_ids": [2, 3, 4, 10, 11],
      "saliency_scores": [[2, 3, 4], [4, 4, 4], [1, 1, 1], [0, 3, 3], [2, 2, 2]]}
PRED = {"qid": 7, "query": "a dog runs", "vid": "v", "pred_relevant_windows": [[4.0, 12.0, 0.71], [18.0, 26.0, 0.2]],
        "pred_saliency_scores": list(np.linspace(-0.2, 0.4, 15))}


def test_submission_figure_marks_the_ground_truth_windows_and_ratings():
    import matplotlib.pyplot as plt

    sal = gt_clip_saliency(GT, 15)
    assert np.isnan(sal[[0, 1, 5, 14]]).all() and list(sal[[2, 3, 4, 10, 11]]) == [3.0, 4.0, 1.0, 2.0, 2.0]
    fig = submission_figure(PRED, GT, 2.0)
    saliency_ax = next(ax for ax in fig.axes if ax.get_ylabel().startswith("predicted saliency"))
    windows_ax = next(ax for ax in fig.axes if ax.get_xlabel() == "time in the video (s)")
    for ax in (saliency_ax, windows_ax):  # green spans = the ground-truth windows, on both panels
        green = [p for p in ax.patches if p.get_facecolor()[1] > 0.5 > p.get_facecolor()[0]]
        assert sorted((p.get_x(), p.get_x() + p.get_width()) for p in green) == [(4.0, 10.0), (20.0, 24.0)]
    rated = next(ax for ax in fig.axes if ax.get_ylabel().startswith("ground-truth saliency"))
    y = rated.get_lines()[0].get_ydata()
    assert np.allclose(y[[2, 3, 4]], [3.0, 4.0, 1.0]) and "0\u20134" in rated.get_ylabel()
    assert "not meaningful" not in " ".join(t.get_text() for t in fig.texts)
    plt.close(fig)


def test_plot_submission_writes_a_png_showing_the_ground_truth(tmp_path):
    shade = np.array([1 - 0.18 * (1 - c) for c in (0.173, 0.627, 0.173)])  # tab:green at alpha 0.18 over white
    counts = {}
    for name, gt in (("with", GT), ("without", None)):
        plot_submission(PRED, gt, tmp_path / f"{name}.png", 2.0)
        img = mpimg.imread(tmp_path / f"{name}.png")[..., :3]
        assert img.shape[0] > 300 and img.shape[1] > 800
        counts[name] = int((np.abs(img - shade).max(-1) < 0.03).sum())
    assert counts["without"] == 0 and counts["with"] > 10_000, counts


def test_examples_cli_draws_the_first_query_of_the_first_videos_with_ground_truth(tmp_path):
    preds, gts = [], []
    for qid, vid in ((5, "b"), (3, "a"), (4, "a"), (9, "c")):
        preds.append({"qid": qid, "query": f"q{qid}", "vid": vid, "pred_relevant_windows": [[2.0, 6.0, 0.7]],
                      "pred_saliency_scores": [0.1] * 10})
        gts.append({"qid": qid, "query": f"q{qid}", "vid": vid, "duration": 20.0, "relevant_windows": [[4.0, 8.0]]})
    assert [p["qid"] for p in pick_examples(preds, 2)] == [3, 5]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    (tmp_path / "g.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gts))
    outs = [str(tmp_path / f"{i}.png") for i in range(3)]
    assert main(["examples", "--pred", str(tmp_path / "p.jsonl"), "--gt", str(tmp_path / "g.jsonl"),
                 "--clip-len", "2", "--out", *outs]) == 0
    for out in outs:
        img = mpimg.imread(out)
        assert img.shape[0] > 300 and img.shape[1] > 800
    assert main(["examples", "--pred", str(tmp_path / "p.jsonl"), "--clip-len", "2",
                 "--out", *[str(tmp_path / f"x{i}.png") for i in range(4)]]) == 2  # 3 videos only
