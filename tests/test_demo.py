"""The demo generator (extract/demo.py, extract/demo_events.py): the demo's output as it was before the events kind
existed; demo_hard (kind events) deterministic from its seed, shaped like real grounding data, its windows,
composed queries and saliency true of the rendered frames, and every event type visible to the tiny backbone."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT
from extract import demo, demo_events, demo_events_render
from extract.demo_shapes import CLIP

CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())
HARD = CONFIG["datasets"]["demo_hard"]["generate"]


def _hard_spec(**over) -> demo.DemoSpec:
    return demo.DemoSpec.from_config({**copy.deepcopy(HARD), **over})


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def test_demo_output_is_what_it_was_before_the_events_kind(tmp_path, monkeypatch):
    """Hashes taken from the generator before the events kind was added (commit 85e3cdb): the annotations of the
    configured demo and of a small spec, and the frames of the demo's first video. (The mp4 bytes of its first
    3 videos were compared too, by hand: identical.)"""
    frames = demo.render_frames(demo._plan_video(np.random.default_rng([0, 0, 0]), demo.DemoSpec()), demo.DemoSpec())
    assert _digest(*(f.tobytes() for f in frames)) == "f4514ef511c8d1fa6c2b152c262e0b4fbee47a428db248213fef5c227bc8044d"
    monkeypatch.setattr(demo, "write_video", lambda *a, **k: None)  # annotations only: no rendering
    spec = demo.DemoSpec.from_config(CONFIG["datasets"]["demo"]["generate"])
    manifest = demo.generate(tmp_path / "full", spec, progress=False)
    assert "kind" not in manifest["spec"] and "events" not in manifest["spec"]
    assert _digest(*((tmp_path / "full" / f"demo_{s}.jsonl").read_bytes() for s in ("train", "val"))) == \
        "74696333135c036bdb6e53efd602cfc644396f6f6cc21649cbc800ee6c40ebc2"
    small = demo.DemoSpec(seed=3, videos={"train": 3, "val": 2}, min_duration=14, max_duration=18, fps=4, width=96,
                          height=72, min_objects=1, max_objects=3, min_window=2, max_window=6)
    demo.generate(tmp_path / "small", small, progress=False)
    assert _digest(*((tmp_path / "small" / f"demo_{s}.jsonl").read_bytes() for s in ("train", "val"))) == \
        "8820ccec395604fa4e1f5ebd2fd2b2df9857920731bee83bfab8f397dcbb5497"


def test_spec_is_checked():
    with pytest.raises(ValueError, match="kind 'hard'"):
        demo.DemoSpec(kind="hard")
    with pytest.raises(ValueError, match="only for kind: events"):
        demo.DemoSpec(events={"colours": 2})
    with pytest.raises(ValueError, match=r"unknown keys \['colors'\]"):
        _hard_spec(events={"colors": 2})
    with pytest.raises(ValueError, match="unknown event types"):
        _hard_spec(events={"types": ["jump"]})
    with pytest.raises(ValueError, match="flash 'blue'"):
        _hard_spec(events={**HARD.get("events", {}), "flash": "blue"})
    with pytest.raises(ValueError, match="max_objects <= 6"):
        _hard_spec(max_objects=7, events={**HARD.get("events", {}), "grid": [3, 2]})


def test_events_kind_is_deterministic_from_its_seed(tmp_path):
    spec = _hard_spec(videos={"train": 2}, min_duration=16, max_duration=20, width=64, height=48)
    for run in ("a", "b"):
        demo.generate(tmp_path / run, spec, progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 4  # 2 videos, the annotations, the manifest
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    demo.generate(tmp_path / "c", _hard_spec(videos={"train": 2}, min_duration=16, max_duration=20, width=64,
                                             height=48, seed=HARD["seed"] + 1), progress=False)
    assert (tmp_path / "c" / "demo_train.jsonl").read_text() != (tmp_path / "a" / "demo_train.jsonl").read_text()
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["spec"]["kind"] == "events"


def test_demo_hard_is_shaped_like_real_grounding_data():
    """Over 150 planned videos of the configured spec: 30-75 clips, objects on screen for most of the video and
    sharing colours or shapes, windows from one clip to half the video, queries with 2-3 windows, every query
    kind (QVHighlights: 75 clips, moments of 2 s to half the video, several windows per query at times)."""
    spec = _hard_spec()
    clips, windows, kinds, shared, on_screen = [], [], set(), [], []
    for i in range(150):
        plan = demo.plan_video(np.random.default_rng([spec.seed, 0, i]), spec)
        n = round(plan["duration"] / CLIP)
        clips.append(n)
        objs = plan["objects"]
        for q in plan["queries"]:
            kinds.add(q["kind"])
            windows.append(len(q["windows"]))
            assert all(1 <= e - s <= n // 2 for s, e in q["windows"])
            t = objs[q["target"][0]]
            shared.append(any(o is not t and (o["colour"] == t["colour"] or o["shape"] == t["shape"]) for o in objs))
        on_screen += [(o["present"][1] - o["present"][0]) / n for o in objs]
    assert min(clips) >= 30 and max(clips) <= 75
    assert kinds == {"simple", "while", "after", "before"}
    assert set(windows) == {1, 2, 3} and 1.2 < np.mean(windows) < 2.0
    assert all(shared)  # a colour or a shape alone never names the target
    assert np.mean(on_screen) > 0.9 and min(on_screen) >= 0.5


# ------------------------------------------------------------------- windows checked on the rendered frames
FPS = 4


def _sample_times(n_clips: int) -> np.ndarray:
    """(clips, 4) times of the frames the extraction decodes (extract.decode.clip_frame_times), moved to the
    time the generator renders the frame shown then (frame f shows (f + 0.5) / fps)."""
    t = (np.arange(n_clips)[:, None] + (np.arange(4) + 0.5) / 4) * CLIP
    return (np.floor(t * FPS) + 0.5) / FPS


def _render(plan, spec, times) -> np.ndarray:
    return np.stack(list(demo_events_render.render_at(plan, spec, spec.event_spec(), times.ravel()))).astype(np.int16)


def _changed(full: np.ndarray, other: np.ndarray, n_clips: int) -> np.ndarray:
    """(clips, 4): summed absolute difference between two renderings per sampled frame."""
    return np.abs(full - other).reshape(n_clips, 4, -1).sum(-1)


def _measured(plan, spec, full, n):
    """What the frames show, found by rendering variants of the plan (never reading its queries' windows): per
    (object, type, param) that a query names, the change those events make to each clip (0: none), and per
    object a query refers to, the clips it is on screen in."""
    times = _sample_times(n)
    change, present = {}, {}
    for q in plan["queries"]:
        ref = q["ref"] or {}
        keys = [tuple(q["target"])]
        if ref.get("what") == "event":
            keys.append((ref["object"], ref["type"], ref["param"]))
        for i, t, p in keys:
            if (i, t, p) not in change:
                other = copy.deepcopy(plan)
                other["objects"][i]["events"] = [e for e in other["objects"][i]["events"]
                                                 if (e["type"], e["param"]) != (t, p)]
                change[(i, t, p)] = _changed(full, _render(other, spec, times), n).mean(1)
        if ref.get("what") in ("enter", "leave", "present") and ref["object"] not in present:
            i, plain = ref["object"], copy.deepcopy(plan)
            plain["objects"][i]["events"] = []
            gone = copy.deepcopy(plain)
            gone["objects"][i]["present"] = [n, n]  # never on screen
            px = _changed(_render(plain, spec, times), _render(gone, spec, times), n)
            present[i] = {c for c in range(n) if px[c].any()}
    return {k: {c for c in range(n) if v[c] > 0} for k, v in change.items()}, change, present


def _runs(clips) -> list[list[int]]:
    out = []
    for c in sorted(clips):
        if out and out[-1][1] == c:
            out[-1][1] += 1
        else:
            out.append([c, c + 1])
    return out


def _expected(q, active, present):
    """The windows the query's words ask for, from the measured clips."""
    target = active[tuple(q["target"])]
    runs = _runs(target)
    ref = q["ref"]
    if q["kind"] == "simple":
        return runs
    if ref["what"] == "event":
        r = active[(ref["object"], ref["type"], ref["param"])]
        a, b = min(r), max(r) + 1
    else:
        r = present[ref["object"]]
        first, end = min(r), max(r) + 1
        a, b = {"enter": (first, first), "leave": (end, end), "present": (first, end)}[ref["what"]]
    if q["kind"] == "while":
        assert not target <= r, "the condition leaves no target clip out"
        return _runs(target & r)
    before, after = [w for w in runs if w[1] <= a], [w for w in runs if w[0] >= b]
    assert before and after and len(before) + len(after) == len(runs), "the target is not on both sides of the ref"
    return after if q["kind"] == "after" else before


def _names(plan, q):
    i, t, p = q["target"]
    objs = plan["objects"]
    words = [f"{objs[i]['colour']} {objs[i]['shape']}"]
    assert any(ph.replace("{p}", str(p)) in q["text"] for ph in demo_events.EVENTS[t][0]), q["text"]
    if q["ref"] is not None:
        words.append(f"{objs[q['ref']['object']]['colour']} {objs[q['ref']['object']]['shape']}")
    return words


def test_windows_compositions_and_saliency_follow_the_rendered_frames():
    spec = _hard_spec(width=64, height=48, fps=FPS)  # small frames: the same plans, fast to render
    kinds, pairs = set(), []
    for v in range(8):
        rng = np.random.default_rng([spec.seed, 7, v])
        plan = demo.plan_video(rng, spec)
        rows = demo_events.annotations(f"v{v}", plan, rng, 0, spec.event_spec())
        n = round(plan["duration"] / CLIP)
        full = _render(plan, spec, _sample_times(n))
        active, change, present = _measured(plan, spec, full, n)
        for q, row in zip(plan["queries"], rows):
            kinds.add(q["kind"])
            assert all(name in row["query"] for name in _names(plan, q)), row["query"]
            want = _expected(q, active, present)
            assert row["relevant_windows"] == [[s * CLIP, e * CLIP] for s, e in want], (row["query"], want)
            assert row["relevant_clip_ids"] == [c for s, e in want for c in range(s, e)]
            # saliency follows the strength of the target's change, measured as changed pixels per frame
            px = change[tuple(q["target"])]
            for c, scores in zip(row["relevant_clip_ids"], row["saliency_scores"]):
                pairs.append((px[c] / px.max(), np.mean(scores)))
    assert kinds == {"simple", "while", "after", "before"}
    strength, rating = np.array(pairs).T
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(strength), rank(rating))[0, 1] > 0.4  # 0.54 (3 noisy annotators, ratings 1-4)
    assert rating[strength < 0.5].mean() < rating[strength > 0.8].mean() - 1  # 2.36 against 3.62


# ------------------------------------------------------------------------------ what the tiny backbone sees
def test_every_event_type_is_visible_to_the_tiny_backbone():
    """A linear probe on the pooled last layer of the demo's seeded tiny InternVideo2 (the shard job's load_backbone
    and encode_clips, on frames rendered at its 224 x 224 input). Per event type, 20 scenes of 3-5 objects, each
    rendered three times: a clip before, the clip 4 s later as it is, and that clip with the event on one object.
    The probe tells |f(later) - f(before)| with the event from without it: 5-fold ridge, folds by scene, chance
    0.5. Measured: colour 0.75, grow 0.80, shrink 0.85, flash 0.80, vanish 0.85."""
    import torch

    from extract.backbone import load_backbone
    from extract.features import encode_clips

    x = CONFIG["extract"]
    size = x["image_size"]
    spec = _hard_spec(min_duration=8, max_duration=8, width=size, height=size,
                      events={**HARD.get("events", {}), "context": 0, "order": 0})
    es, rng, types = spec.event_spec(), np.random.default_rng(0), list(spec.event_spec().types)
    times, clips = _sample_times(4), []
    for k in range(20 * len(types)):
        plan = demo.plan_video(np.random.default_rng([1234, k]), spec)
        for o in plan["objects"]:
            o["events"] = []
        still = list(demo_events_render.render_at(plan, spec, es, times[[0, 2]].ravel()))
        o, t = plan["objects"][int(rng.integers(len(plan["objects"])))], types[k % len(types)]
        p = str(rng.choice([c for c in demo_events.PALETTE if c != o["colour"]])) if t == "colour" else None
        o["events"] = [{"type": t, "param": p, "clips": [1, 4], "mag": float(rng.uniform(0.7, 1.0))}]
        clips.append(np.stack(still + list(demo_events_render.render_at(plan, spec, es, times[2]))))
    clips = np.stack(clips).transpose(0, 1, 4, 2, 3).reshape(-1, 4, 3, size, size)  # before, later, later + event
    torch.manual_seed(0)
    vision, _ = load_backbone("tiny", None, seed=x["seed"], gelu=x["gelu"], num_frames=x["frames_per_clip"])
    ident = {"vision_layers": x["vision_layers"], "pooling": x["pooling"]}
    feats = np.concatenate([encode_clips(vision.eval(), clips[b:b + 60], ident, "cpu")[-1]
                            for b in range(0, len(clips), 60)]).reshape(len(clips) // 3, 3, -1)
    accuracy = {}
    for k, t in enumerate(types):
        f = feats[k::len(types)]
        diff = np.concatenate([np.abs(f[:, 1] - f[:, 0]), np.abs(f[:, 2] - f[:, 0])])
        scene = np.r_[np.arange(len(f)), np.arange(len(f))]
        accuracy[t] = _ridge_cv(diff, np.r_[np.zeros(len(f), bool), np.ones(len(f), bool)], scene)
    assert min(accuracy.values()) >= 0.7, accuracy


def _ridge_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray, lam: float = 100.0, folds: int = 5) -> float:
    """Held-out accuracy of a ridge classifier (standardised features, targets +-1), folds by group."""
    hits, target = 0, np.where(y, 1.0, -1.0)
    for f in range(folds):
        tr = groups % folds != f
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        z = np.c_[(x - mu) / sd, np.ones(len(y))]
        w = np.linalg.solve(z[tr].T @ z[tr] + lam * np.eye(z.shape[1]), z[tr].T @ target[tr])
        hits += int(((z[~tr] @ w > 0) == y[~tr]).sum())
    return hits / len(y)
