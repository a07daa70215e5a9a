"""The workflow repairs what changed under a finished run, and re-trains only what the change reaches (issue 19,
rows 6 and 7, point 3): a damaged store is re-extracted item by item with no re-training (the same features come
back); a replaced video or an edited query is re-extracted and re-trained. The real workflow on the tiny demo
(10 videos, 2 shards, 1 seed, 1 epoch), each scenario on its own copy of one finished run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, snakemake, tiny_demo_config

TARGET = "results/demo/metrics.json"


def ran(proc) -> Counter:
    """Jobs a Snakemake run executed, by rule."""
    return Counter(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", proc.stdout + proc.stderr, flags=re.M))


def nothing_to_do(work) -> bool:
    proc = snakemake(ROOT, work, "-n", "--cores", "2", TARGET)
    return "Nothing to be done" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def finished(tiny_demo, tmp_path_factory):
    work = tmp_path_factory.mktemp("repair") / "work"
    work.mkdir()
    cfg = tiny_demo_config()
    cfg["train"]["datasets"]["demo"]["epochs"] = 1
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copytree(tiny_demo, work / "resources")
    snakemake(ROOT, work, "--cores", "2", TARGET)
    assert nothing_to_do(work)
    return work


@pytest.fixture
def work(finished, tmp_path):
    copy = tmp_path / "work"
    shutil.copytree(finished, copy, symlinks=True, copy_function=shutil.copy2)
    return copy


def cache(work) -> Path:
    (path,) = (work / "cache" / "demo").iterdir()
    return path


def summary(work) -> dict:
    return json.loads((cache(work) / "summary.json").read_text())


def chunk_of(work, group, key) -> Path:
    meta = next(m for m in (cache(work) / "features.zarr" / "packs").glob(f"{group}-*/zarr.json")
                if key in json.loads(m.read_text())["attributes"]["index"])
    return meta.parent / "c" / "0"


def test_truncated_chunk_and_touched_video_rerun_extraction_only(work):
    """Row 7: a finished cache loses the end of a chunk (and a video file is touched, not changed). The next plain
    `snakemake <target>` re-extracts exactly the lost items and re-trains nothing: the same features came back."""
    from extract.config import shard_of

    chunk = chunk_of(work, "videos", "demo_train_0000")
    chunk.write_bytes(chunk.read_bytes()[:100])
    other = next(v for v in sorted((work / "resources/demo/videos").glob("*.mp4"))
                 if shard_of(v.stem, 2) != shard_of("demo_train_0000", 2))
    other.touch()
    proc = snakemake(ROOT, work, "--cores", "2", TARGET)
    jobs = ran(proc)
    assert jobs["extract_shard"] == 2 and jobs["extract_summary"] == 1, jobs
    assert not {"train", "predict", "evaluate_run"} & set(jobs), jobs
    s = summary(work)
    assert "demo_train_0000" in {d["item"].split("'")[1] for d in s["damaged_reextracted"]}
    assert s["changed_reextracted"] == [] and s["videos"]["failed"] == 0  # touched: same content, kept
    assert nothing_to_do(work)


def test_altered_bytes_verify_then_snakemake(work):
    """Rows 6 and 7, and the README's repair command: altered bytes are not visible without reading them, so the
    workflow cannot see them; `python -m extract verify --store <cache>` finds them and marks their shard, and the
    next `snakemake <target>` (the target where it belongs, no --forcerun) re-extracts them."""
    chunk = chunk_of(work, "queries", "3")
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0x01
    chunk.write_bytes(bytes(data))
    assert nothing_to_do(work)
    verify = [sys.executable, "-m", "extract", "verify", "--store", str(cache(work))]
    found = subprocess.run(verify, cwd=ROOT, capture_output=True, text=True)
    assert found.returncode == 1 and "checksum mismatch" in found.stdout
    assert "the next `snakemake <target>` re-extracts exactly the damaged items" in found.stdout
    readme = (ROOT / "README.md").read_text()
    assert "python -m extract verify --store cache/<dataset>/<hash>" in readme and "--forcerun" not in readme
    jobs = ran(snakemake(ROOT, work, "--cores", "2", TARGET))
    assert jobs["extract_shard"] == 1 and "train" not in jobs, jobs
    assert subprocess.run(verify, cwd=ROOT, capture_output=True, text=True).returncode == 0
    assert nothing_to_do(work)


def test_replaced_video_and_edited_query_are_reextracted_and_retrained(work):
    """Rows 1 and 2 in the workflow: exactly the replaced video and the edited query are extracted again, and
    training runs again because its features changed."""
    videos = work / "resources/demo/videos"
    shutil.copy(videos / "demo_train_0002.mp4", videos / "demo_train_0001.mp4")
    ann = work / "resources/demo/demo_train.jsonl"
    rows = [json.loads(line) for line in ann.read_text().splitlines()]
    rows[0]["query"] = "a purple star spins slowly"
    ann.write_text("\n".join(json.dumps(r) for r in rows))
    jobs = ran(snakemake(ROOT, work, "--cores", "2", TARGET))
    assert jobs["extract_shard"] == 2 and jobs["train"] == 1 and jobs["predict"] == 1, jobs
    s = summary(work)
    assert sorted(c["item"] for c in s["changed_reextracted"]) == [f"query '{rows[0]['qid']}'",
                                                                  "video 'demo_train_0001'"]
    assert s["videos"]["extracted"] == 1 and s["queries"]["extracted"] == 1
    assert nothing_to_do(work)
