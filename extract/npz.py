"""Feature files in ``.npz`` form, read with one-line errors: the header of one array (shape, dtype) without its
data, or the array itself. ``np.savez`` stores arrays uncompressed in a zip archive, each with a CRC-32 that
``zipfile`` checks when a member is read whole, so a truncated or altered file fails here instead of giving
numbers. Used by the importer, the pre-flight checks and ``python -m extract compare``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format

# what a damaged or foreign file raises while it is opened or read
READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, KeyError, RuntimeError)


class NpzError(ValueError):
    """A file that is not a readable .npz, lacks the array asked for, or whose array cannot be read. The message
    says what is wrong; callers prefix the file."""


def _names(zf: zipfile.ZipFile) -> dict[str, str]:
    return {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}


def header(path: str | Path, keys: tuple[str, ...]) -> tuple[str, tuple[int, ...], np.dtype]:
    """(the first of ``keys`` the file holds, its shape, its dtype), reading only the array's header."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = _names(zf)
            key = next((k for k in keys if k in names), None)
            if key is None:
                raise NpzError(f"no array {' or '.join(repr(k) for k in keys)} (it holds "
                               f"{', '.join(repr(n) for n in sorted(names)) or 'no arrays'})")
            with zf.open(names[key]) as fh:
                version = npy_format.read_magic(fh)
                read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
                shape, _, dtype = read(fh)
    except NpzError:
        raise
    except READ_ERRORS as err:
        raise NpzError(f"not a readable .npz file ({type(err).__name__}: {err})") from None
    return key, tuple(int(n) for n in shape), np.dtype(dtype)


def load(path: str | Path, key: str) -> np.ndarray:
    """The whole array ``key`` (its zip CRC-32 checked on the way)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return np.asarray(archive[key])
    except READ_ERRORS as err:
        raise NpzError(f"array {key!r} cannot be read ({type(err).__name__}: {err})") from None


def value_problem(x: np.ndarray, fp16: bool = True) -> str | None:
    """None when every value is finite (and, with ``fp16``, fits float16, the store's dtype), else what is wrong,
    naming the first bad position."""
    if not np.issubdtype(x.dtype, np.floating):
        return f"dtype {x.dtype}, expected floating point"
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        return f"{int(bad.sum())} NaN or infinite value(s) (first at index {list(first)})"
    peak = float(np.abs(x).max()) if x.size else 0.0
    if fp16 and peak > 65504.0:
        return f"values up to {peak:.4g} do not fit float16 (max 65504), the store's dtype"
    return None
