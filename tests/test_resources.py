"""Local runs keep concurrent jobs within the machine: its memory (`--resources mem_mb`) and, without any
`--resources gpu=N`, the GPUs it has. Checked on a real run of the tiny demo, from the order in which Snakemake
logged each job's start and end (its own accounting: a job's process starts after its start line and has
ended before its "Finished jobid" line)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from conftest import ROOT, snakemake, tiny_demo_config


def job_events(log: str) -> list[tuple[str, int, str, dict]]:
    """('start' | 'end', jobid, rule, resources) in the order Snakemake logged them."""
    events, rules, block = [], {}, None
    for line in log.splitlines() + [""]:
        m = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line)
        if m:
            block = {"rule": m.group(1)}
            continue
        if block is not None:
            if m := re.match(r"^\s+jobid: (\d+)$", line):
                block["jobid"] = int(m.group(1))
            elif m := re.match(r"^\s+resources: (.*)$", line):
                block["resources"] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
            elif not line.startswith(" "):  # the block ends
                res = block.get("resources", {})
                events.append(("start", block["jobid"], block["rule"], res))
                rules[block["jobid"]] = (block["rule"], res)
                block = None
        if m := re.match(r"^Finished jobid: (\d+)", line):
            jobid = int(m.group(1))
            events.append(("end", jobid, *rules[jobid]))
    return events


def peak_use(events, key: str) -> tuple[int, list[str]]:
    """Largest sum of a resource over the jobs running at once, and those jobs."""
    running, peak, at = {}, 0, []
    for kind, jobid, rule, res in events:
        if kind == "start":
            running[jobid] = (rule, int(res.get(key, 0)))
            total = sum(v for _, v in running.values())
            if total > peak:
                peak, at = total, sorted(f"{r}({v})" for r, v in running.values())
        else:
            running.pop(jobid, None)
    return peak, at


def overlapped(events, rule: str) -> bool:
    """Whether two jobs of `rule` ever ran at the same time."""
    running = set()
    for kind, jobid, r, _ in events:
        if r != rule:
            continue
        if kind == "start":
            if running:
                return True
            running.add(jobid)
        else:
            running.discard(jobid)
    return False


def provided(log: str) -> dict[str, int]:
    """The limits Snakemake says it runs within ('Provided resources: ...')."""
    m = re.search(r"^Provided resources: (.*)$", log, flags=re.M)
    return {k: int(v) for k, v in re.findall(r'(\w+)=(?:Resource\("\w+", )?(\d+)', m.group(1))} if m else {}


@pytest.mark.slow
def test_local_run_fits_memory_and_gives_gpu_jobs_the_machines_gpus(tiny_demo, tmp_path, monkeypatch):
    # Two extraction shards on the CPU (no GPU asked): only memory can keep them apart. Two training seeds with
    # device auto (one GPU each) whose memory fits the limit together: only the GPU count can keep them apart.
    # The machine "has" one GPU (CUDA_VISIBLE_DEVICES=0; this venv's torch is a CPU build, so the jobs still run
    # on the CPU) and the command gives no --resources gpu=N.
    cfg = tiny_demo_config(seeds=[0, 1])
    cfg["extract"]["run"]["device"] = "cpu"
    cfg["train"]["datasets"]["demo"]["epochs"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copytree(tiny_demo, tmp_path / "resources")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    limit = 4000
    proc = snakemake(ROOT, tmp_path, "--cores", "4", "results/demo/extraction.json",
                     "results/demo/sdst/seed0/train_summary.json", "results/demo/sdst/seed1/train_summary.json",
                     "--resources", f"mem_mb={limit}")
    log = proc.stdout + proc.stderr
    assert provided(log) == {"mem_mb": limit, "gpu": 1}, log[:3000]

    events = job_events(log)
    jobs = {(rule, jobid): res for kind, jobid, rule, res in events if kind == "start"}
    shards = [res for (rule, _), res in jobs.items() if rule == "extract_shard"]
    trains = [res for (rule, _), res in jobs.items() if rule == "train"]
    assert len(shards) == 2 and len(trains) == 2, sorted(jobs)
    assert all(r.get("gpu") == "0" and int(r.get("mem_mb", 0)) > limit / 2 for r in shards), shards
    assert all(r.get("gpu") == "1" and 0 < int(r.get("mem_mb", 0)) <= limit / 2 for r in trains), trains
    mem, at = peak_use(events, "mem_mb")
    assert mem <= limit, f"jobs using {mem} MB ran at once: {at}"
    gpu, at = peak_use(events, "gpu")
    assert gpu <= 1, f"jobs using {gpu} GPUs ran at once: {at}"
    assert not overlapped(events, "extract_shard") and not overlapped(events, "train")

    extraction = json.loads((tmp_path / "results/demo/extraction.json").read_text())
    assert extraction["videos"]["total"] == 10 and extraction["videos"]["failed"] == 0
    for seed in (0, 1):
        assert json.loads((tmp_path / f"results/demo/sdst/seed{seed}/train_summary.json").read_text())["epochs"] == 1
