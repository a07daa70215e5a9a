"""The workflow repairs what changed under a finished run, and re-trains only what the change reaches (issue 19,
rows 6 and 7, point 3): a damaged store is re-extracted item by item with no re-training (the same features come
back); a replaced video or an edited query is re-extracted and its runs are planned again. Each scenario runs the
real workflow on its own copy of the shared finished demo run (conftest.demo_workflow)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT, snakemake
from test_workflow import planned

TARGET = "results/demo/metrics.json"


def ran(proc) -> Counter:
    """Jobs a Snakemake run executed, by rule."""
    return Counter(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", proc.stdout + proc.stderr, flags=re.M))


@pytest.fixture
def demo(demo_workflow, tmp_path):
    """(project, a copy of the finished demo's working directory)."""
    proj, work = demo_workflow
    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True, copy_function=shutil.copy2)
    assert planned(proj, copy) == {}
    return proj, copy


def cache(work) -> Path:
    (path,) = (work / "cache" / "demo").iterdir()
    return path


def summary(work) -> dict:
    return json.loads((cache(work) / "summary.json").read_text())


def shard_report(work, vid) -> dict:
    """The report of the shard job that holds video ``vid`` (the summary adds up every shard's latest report)."""
    from extract.identity import shard_of

    return json.loads((cache(work) / "shards" / f"{shard_of(vid, 2)}-of-2.json").read_text())


def chunk_of(work, group, key) -> Path:
    meta = next(m for m in (cache(work) / "features.zarr" / "packs").glob(f"{group}-*/zarr.json")
                if key in json.loads(m.read_text())["attributes"]["index"])
    return meta.parent / "c" / "0"


def test_truncated_chunk_and_touched_video_rerun_extraction_only(demo):
    """Row 7: a finished cache loses the end of a chunk (and a video file is touched, not changed). The next plain
    `snakemake <target>` re-extracts exactly the lost items and re-trains nothing: the same features came back."""
    from extract.identity import shard_of

    proj, work = demo
    chunk = chunk_of(work, "videos", "demo_train_0000")
    index = json.loads((chunk.parent.parent / "zarr.json").read_text())["attributes"]["index"]
    victim = max(index, key=lambda k: index[k]["offset"])
    cut = index[victim]["offset"] * 2 + 10  # bytes: the pack's last video loses its end, the others are whole
    lost = {k for k, e in index.items() if (e["offset"] + math.prod(e["shape"])) * 2 > cut}
    chunk.write_bytes(chunk.read_bytes()[:cut])
    other = next(v for v in sorted((work / "resources/demo/videos").glob("*.mp4"))
                 if shard_of(v.stem, 2) != shard_of(victim, 2))
    other.touch()
    jobs = ran(snakemake(proj, work, "--cores", "2", TARGET))
    assert jobs["extract_shard"] == 2 and jobs["extract_summary"] == 1, jobs
    assert not {"train", "predict", "evaluate_run"} & set(jobs), jobs
    s = summary(work)
    repaired = {d["item"].split("'")[1] for d in s["damaged_reextracted"]}
    assert repaired == lost == {victim}
    assert s["changed_reextracted"] == [] and s["videos"]["failed"] == 0  # touched: same content, kept
    assert shard_report(work, victim)["videos"]["extracted"] == 1
    assert shard_report(work, other.stem)["videos"]["extracted"] == 0
    assert planned(proj, work) == {}


def test_altered_bytes_verify_then_snakemake(demo):
    """Rows 6 and 7, and the README's repair command: altered bytes are not visible without reading them, so the
    workflow cannot see them; `python -m extract verify --store <cache>` finds them and marks their shard, and the
    next `snakemake <target>` (the target where it belongs, no --forcerun) re-extracts them."""
    proj, work = demo
    chunk = chunk_of(work, "queries", "3")
    index = json.loads((chunk.parent.parent / "zarr.json").read_text())["attributes"]["index"]
    damaged = max(index, key=lambda k: index[k]["offset"])  # the pack's last query holds its last byte
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0x01
    chunk.write_bytes(bytes(data))
    assert planned(proj, work) == {}
    verify = [sys.executable, "-m", "extract", "verify", "--store", str(cache(work))]
    found = subprocess.run(verify, cwd=ROOT, capture_output=True, text=True)
    assert found.returncode == 1 and "checksum mismatch" in found.stdout
    assert "the next `snakemake <target>` re-extracts exactly the damaged items" in found.stdout
    readme = (ROOT / "README.md").read_text()
    assert "python -m extract verify --store cache/<dataset>/<hash>" in readme and "--forcerun" not in readme
    jobs = ran(snakemake(proj, work, "--cores", "2", TARGET))
    assert jobs["extract_shard"] == 1 and "train" not in jobs, jobs
    assert [d["item"] for d in summary(work)["damaged_reextracted"]] == [f"query '{damaged}'"]
    assert subprocess.run(verify, cwd=ROOT, capture_output=True, text=True).returncode == 0
    assert planned(proj, work) == {}


def test_replaced_video_and_edited_query_are_reextracted_and_retrained(demo):
    """Rows 1 and 2 in the workflow: exactly the replaced video, then exactly the edited query, are extracted
    again; after the video, training is planned again because its features changed, although none of its input
    files did (run to the extraction; training itself is the demo's own, four minutes a seed)."""
    proj, work = demo
    videos = work / "resources/demo/videos"
    shutil.copy(videos / "demo_train_0002.mp4", videos / "demo_train_0001.mp4")
    jobs = ran(snakemake(proj, work, "--cores", "2", "results/demo/extraction.json"))
    assert jobs["extract_shard"] == 1 and "train" not in jobs, jobs
    s, report = summary(work), shard_report(work, "demo_train_0001")
    assert [c["item"] for c in s["changed_reextracted"]] == ["video 'demo_train_0001'"]
    assert report["videos"]["extracted"] == 1 and report["queries"]["extracted"] == 0
    jobs = planned(proj, work)
    assert jobs.get("train") == 2 and "extract_shard" not in jobs, jobs

    ann = work / "resources/demo/demo_train.jsonl"
    rows = [json.loads(line) for line in ann.read_text().splitlines()]
    rows[0]["query"] = "a purple star spins slowly"
    ann.write_text("\n".join(json.dumps(r) for r in rows))
    snakemake(proj, work, "--cores", "2", "results/demo/extraction.json")
    s, report = summary(work), shard_report(work, rows[0]["vid"])
    assert [c["item"] for c in s["changed_reextracted"]] == [f"query '{rows[0]['qid']}'"]
    assert report["videos"]["extracted"] == 0 and report["queries"]["extracted"] == 1
