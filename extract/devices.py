"""Which device a job runs on, so concurrent GPU jobs on one machine each get their own GPU.

Snakemake does not set CUDA_VISIBLE_DEVICES per job (docs/pipeline.md); it only limits how many GPU jobs run
at once (``--resources gpu=N``). With ``device: auto`` (or ``cuda``) on a machine with several visible GPUs,
a job claims the first free GPU through an exclusive lock file (``$SDST_GPU_LOCKS`` or
``/tmp/sdst-gpu-locks-<uid>``) that it holds until it exits; the operating system releases the lock when the
process ends, even when it is killed. Under SLURM (``--gpus=1``) only the allocated GPU is visible, so the
claim is trivially cuda:0. An explicit ``cuda:N`` or ``cpu`` is used as given.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

_HELD: list = []  # open lock files of this process (released when it exits)


def lock_dir() -> Path:
    return Path(os.environ.get("SDST_GPU_LOCKS", Path(tempfile.gettempdir()) / f"sdst-gpu-locks-{os.getuid()}"))


def claim_slot(n_slots: int, directory: Path | None = None, wait_s: float = 3600.0, poll_s: float = 1.0) -> int:
    """Index of a slot no other process holds; the claim lasts as long as this process."""
    import fcntl

    directory = directory or lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        for i in range(n_slots):
            fh = open(directory / f"gpu{i}.lock", "a+")  # noqa: SIM115 - kept open on purpose
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            _HELD.append(fh)
            return i
        if time.monotonic() > deadline:
            raise RuntimeError(f"no free GPU among {n_slots} after {wait_s:.0f} s (locks in {directory})")
        time.sleep(poll_s)


def resolve_device(device: str = "auto") -> str:
    """'auto' / 'cuda' -> this job's own GPU (or 'cpu' without one); 'cuda:N' / 'cpu' unchanged."""
    import torch

    if device not in ("auto", "cuda"):
        return device
    if not torch.cuda.is_available():
        if device == "cuda":
            raise RuntimeError("device 'cuda' requested but no GPU is visible")
        return "cpu"
    n = torch.cuda.device_count()
    return "cuda:0" if n == 1 else f"cuda:{claim_slot(n)}"


# --- what this machine has, for the limits of a local Snakemake run (workflow/rules/resources.smk) ---------
def visible_gpus(env: dict | None = None) -> int:
    """GPUs jobs started here can use: the ids in CUDA_VISIBLE_DEVICES when it is set (CUDA stops at the first
    invalid one, e.g. -1), else the GPUs ``nvidia-smi -L`` lists; 0 without either. Reads no torch (fast enough
    for every Snakemake start)."""
    import subprocess

    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        n = 0
        for dev in visible.split(","):
            dev = dev.strip()
            if not dev or dev.startswith("-"):
                break
            n += 1
        return n
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines()) if out.returncode == 0 else 0


def available_memory_mb(meminfo: str | Path = "/proc/meminfo", cgroup: str | Path = "/sys/fs/cgroup") -> int:
    """Host memory (MB) jobs can use now: MemAvailable (Linux; physical memory elsewhere), within the cgroup v2
    limit of this process's container when it has one."""
    avail = None
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) // 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    try:
        limit = (Path(cgroup) / "memory.max").read_text().strip()
        if limit != "max":
            used = int((Path(cgroup) / "memory.current").read_text())
            avail = min(avail, (int(limit) - used) // 2**20)
    except (OSError, ValueError):
        pass
    return max(avail, 1)
