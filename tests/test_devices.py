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
