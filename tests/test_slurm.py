"""The SLURM profile: a dry run with the executor plugin shows what each job would request."""

from __future__ import annotations

import re
import shutil

import pytest

from conftest import ROOT, snakemake

pytest.importorskip("snakemake_executor_plugin_slurm")


def _jobs(stdout: str) -> dict[str, list[str]]:
    """rule -> the 'resources:' lines of its jobs in a dry run."""
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?rule )", stdout):
        rule = re.search(r"^(?:local)?rule (\w+):", block, flags=re.M)
        res = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        if rule and res:
            jobs.setdefault(rule.group(1), []).append(res.group(1))
    return jobs


def test_slurm_dry_run_requests_gpus_memory_and_runtime_per_rule(tmp_path):
    shutil.copy2(ROOT / "config.yaml", tmp_path / "config.yaml")
    out = snakemake(ROOT, tmp_path, "--profile", str(ROOT / "profiles" / "slurm"), "-n", "--cores", "64",
                    "results/demo/metrics.json").stdout
    assert "Using profiles" in out or "profile" in out
    jobs = _jobs(out)
    shard = jobs["extract_shard"][0]
    assert "gpu=1" in shard and "mem_mb=32000" in shard and "runtime=60" in shard and "cpus_per_gpu=8" in shard
    assert "slurm_partition=gpu" in shard
    train = jobs["train"][0]
    assert len(jobs["train"]) == 3 and "gpu=1" in train and "runtime=480" in train and "mem_mb=24000" in train
    assert "gpu=" not in jobs["evaluate_run"][0]  # CPU-only steps ask for no GPU
    assert "--threads 8" in out  # set-threads reaches the extraction command


def test_profiles_document_every_key():
    for name in ("default", "slurm"):
        lines = (ROOT / "profiles" / name / "config.yaml").read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^[a-z-]+:", line):  # a top-level key needs a comment right above it
                assert lines[i - 1].lstrip().startswith("#"), f"profiles/{name}: {line!r} has no comment"
