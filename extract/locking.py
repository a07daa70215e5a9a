"""One writer at a time: advisory locks (``flock``) on the files beside a store.

A shard job holds ``<store>.locks/<shard>-of-<n>.lock`` while it writes, so a second job on the same part of the
same store (two ``python -m extract videos`` on one ``--out``, a job restarted while the first still runs)
stops at once with one line instead of extracting everything twice into duplicate packs. Shard jobs of one
store write different items and run side by side. Creating the store root holds ``<store>.lock``. The kernel
drops a lock when its process dies, so a killed job never leaves a stale one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path


class StoreBusyError(ValueError):
    """Another process holds the lock (a ValueError: the command-line entry points print it in one line)."""


@contextlib.contextmanager
def exclusive(path: str | Path, what: str, wait: bool = False):
    """Hold an exclusive lock on ``path`` (created if needed) for the block. Without ``wait``, a lock held by
    another process raises :class:`StoreBusyError` naming ``what`` and that process."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise StoreBusyError(f"{what} is being written by another process (pid {holder}, lock {path}); wait "
                                 "for it to finish or stop it, then run this again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
