"""Decoder worker processes: many videos decoded in parallel, with a timeout per video.

Decoding runs in worker processes (:class:`DecodePool`), one decord ``VideoReader`` per process and
video (a reader shared by threads aborts the process); each worker runs :func:`extract.decode.iter_video_chunks`.
The parent enforces a timeout per video: a worker that makes no progress for ``timeout_s`` while the parent is
waiting for it is killed and replaced, and the video is recorded as failed. A worker that dies (native abort) is
replaced the same way.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from dataclasses import dataclass

from extract.decode import DecodeSpec, VideoDecodeError, iter_video_chunks, short_error


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """A decode worker whose job was killed (SIGKILL, OOM) would wait on its queues forever: end it."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


def _worker(tasks: mp.Queue, results: mp.Queue, worker_id: int, spec: DecodeSpec) -> None:
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    if spec.resize == "official":
        import torch

        torch.set_num_threads(1)  # one core per decode worker, like decord's num_threads=1
    import decord  # noqa: F401 - imported before "ready", so that a video's clock does not count the start-up

    results.put((worker_id, None, "ready", os.getpid()))
    while True:
        task = tasks.get()
        if task is None:
            return
        key, path = task
        try:
            for kind, payload in iter_video_chunks(path, spec):
                results.put((worker_id, key, kind, payload))
        except VideoDecodeError as err:
            results.put((worker_id, key, "error", str(err)))
        except Exception as err:  # noqa: BLE001 - any failure is this video's, never the run's
            results.put((worker_id, key, "error", f"{type(err).__name__}: {short_error(err)}"))


STARTUP_S = 120.0  # seconds a decode process may take to start, on top of the per-video timeout


@dataclass
class _Slot:
    proc: mp.Process
    tasks: mp.Queue
    key: str | None = None
    path: str | None = None
    last_progress: float = 0.0
    ready: bool = False  # the process has started (imports done); until then a video's timeout does not run


class DecodePool:
    """Decode many videos in ``workers`` processes; iterate to get messages in arrival order.

    Each message is ``(key, kind, payload)`` with kind "start" / "chunk" / "done" (see
    :func:`iter_video_chunks`) or "error" (payload: reason). Every submitted video ends with exactly
    one "done" or "error".
    """

    def __init__(self, items: list[tuple[str, str]], spec: DecodeSpec, workers: int = 2, timeout_s: float = 600.0,
                 max_queued_chunks: int | None = None):
        self.pending = list(reversed(items))  # pop() from the end keeps submission order
        self.spec = spec
        self.timeout_s = timeout_s
        self.ctx = mp.get_context("spawn")
        self.results = self.ctx.Queue(maxsize=max_queued_chunks or 2 * max(1, workers) + 2)
        self.slots: list[_Slot] = [self._spawn(i) for i in range(max(1, min(workers, len(items)) or 1))]
        self.outstanding = len(items)

    def _spawn(self, worker_id: int) -> _Slot:
        tasks = self.ctx.Queue()
        proc = self.ctx.Process(target=_worker, args=(tasks, self.results, worker_id, self.spec), daemon=True)
        proc.start()
        return _Slot(proc=proc, tasks=tasks)

    def _assign(self) -> None:
        for slot in self.slots:
            if slot.key is None and self.pending:
                slot.key, slot.path = self.pending.pop()
                slot.last_progress = time.monotonic()
                slot.tasks.put((slot.key, slot.path))

    def _replace(self, worker_id: int) -> None:
        old = self.slots[worker_id]
        if old.proc.is_alive():
            old.proc.kill()
        old.proc.join(timeout=5)
        self.slots[worker_id] = self._spawn(worker_id)

    def __iter__(self):
        try:
            while self.outstanding > 0:
                self._assign()
                try:
                    worker_id, key, kind, payload = self.results.get(timeout=0.5)
                except queue.Empty:
                    yield from self._check_stuck()
                    continue
                slot = self.slots[worker_id]
                if kind == "ready":
                    if payload == slot.proc.pid:  # not the late word of a process already replaced
                        slot.ready, slot.last_progress = True, time.monotonic()
                    continue
                if slot.key != key:  # late message from a worker we already gave up on
                    continue
                slot.last_progress = time.monotonic()
                if kind in ("done", "error"):
                    slot.key = slot.path = None
                    self.outstanding -= 1
                yield key, kind, payload
        finally:
            self.close()

    def _check_stuck(self):
        """Called only when the result queue is empty, so no worker is blocked on a full queue."""
        now = time.monotonic()
        for worker_id, slot in enumerate(self.slots):
            if slot.key is None:
                continue
            dead = not slot.proc.is_alive()
            # a process still starting (spawn, imports; slow on a loaded machine) gets STARTUP_S more
            limit = self.timeout_s if slot.ready else self.timeout_s + STARTUP_S
            if dead or now - slot.last_progress > limit:
                key = slot.key
                reason = (f"decoder process died (exit code {slot.proc.exitcode})" if dead
                          else f"timeout: no progress for {self.timeout_s:g} s")
                self._replace(worker_id)
                self.outstanding -= 1
                yield key, "error", reason

    def close(self) -> None:
        for slot in self.slots:
            if slot.proc.is_alive():
                try:
                    slot.tasks.put_nowait(None)
                except Exception:  # noqa: BLE001
                    pass
        deadline = time.monotonic() + 2.0
        for slot in self.slots:
            slot.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if slot.proc.is_alive():
                slot.proc.kill()
                slot.proc.join(timeout=2)
        self.slots = []
