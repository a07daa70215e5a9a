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
