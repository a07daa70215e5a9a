"""Concurrent GPU jobs on one machine each claim their own device."""

from __future__ import annotations

import subprocess
import sys
import time

from conftest import ROOT

CLAIM = ("import sys, time; from pathlib import Path; from extract.devices import claim_slot; "
         "print(claim_slot(int(sys.argv[1]), Path(sys.argv[2]), wait_s=30, poll_s=0.05), flush=True); "
         "time.sleep(float(sys.argv[3]))")


def _start(n, directory, hold):
    return subprocess.Popen([sys.executable, "-c", CLAIM, str(n), str(directory), str(hold)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)


def test_concurrent_jobs_get_distinct_devices_and_a_freed_one_is_reused(tmp_path):
    holders = [_start(3, tmp_path, 3.0) for _ in range(3)]
    slots = sorted(int(p.stdout.readline()) for p in holders)
    assert slots == [0, 1, 2]
    waiting = _start(3, tmp_path, 0.0)  # all three busy: it waits until one process exits
    t0 = time.monotonic()
    slot = int(waiting.stdout.readline())
    assert slot in (0, 1, 2) and time.monotonic() - t0 > 0.5
    for p in holders + [waiting]:
        p.wait(timeout=30)


def test_killed_job_releases_its_device(tmp_path):
    first = _start(1, tmp_path, 60.0)
    assert int(first.stdout.readline()) == 0
    first.kill()
    first.wait()
    second = _start(1, tmp_path, 0.0)
    assert int(second.stdout.readline()) == 0
    second.wait(timeout=30)


def test_visible_gpus_follow_cuda_visible_devices_else_nvidia_smi(tmp_path, monkeypatch):
    from extract.devices import visible_gpus

    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == 2
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,3"}) == 1  # CUDA ignores ids after an invalid one
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-5f2c1a,GPU-77aa03"}) == 2
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-1)'\necho '  MIG 3g.40gb Device 0: (UUID: MIG-1)'\n"
                   "echo 'GPU 1: NVIDIA H100 (UUID: GPU-2)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert visible_gpus({}) == 2
    smi.unlink()
    assert visible_gpus({}) == 0  # no driver tools: no GPU


def test_available_memory_is_memavailable_within_the_cgroup_limit(tmp_path):
    from extract.devices import available_memory_mb

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683656 kB\nMemFree:         1000000 kB\nMemAvailable:    8192000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert available_memory_mb(meminfo, cgroup) == 8000  # no cgroup files: MemAvailable
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text(str(2**30))
    assert available_memory_mb(meminfo, cgroup) == 8000
    (cgroup / "memory.max").write_text(str(4 * 2**30))
    assert available_memory_mb(meminfo, cgroup) == 3072  # 4 GiB limit, 1 GiB in use
