"""Reading weight files: what kind a file is, memory-mapped reading, and one-line errors naming the file.

Used by :mod:`extract.backbone` (the InternVideo2 layout) and the pre-flight checks. A torch zip file is
memory-mapped (``torch.load(mmap=True, weights_only=True)``), a ``.safetensors`` file opened lazily
(``safe_open``); only the pre-1.6 torch format is read whole. torch is imported inside the functions.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor, nn

WRAPPERS = ("model", "module")  # top-level keys a state dict may sit under (DeepSpeed: "module")
SHOW = 10  # keys listed per problem kind in an error message


class CheckpointError(ValueError):
    """A checkpoint that cannot serve a backbone; the message names the file and the offending keys."""

    def __init__(self, message: str, missing: list[str] | None = None,
                 misshaped: list[tuple[str, tuple, tuple]] | None = None):
        super().__init__(message)
        self.missing = list(missing or [])
        self.misshaped = list(misshaped or [])

    @classmethod
    def from_problems(cls, source: str, missing: list[str], misshaped: list[tuple[str, tuple, tuple]],
                      what: str = "") -> "CheckpointError":
        lines = [f"checkpoint {source} does not fit{(' ' + what) if what else ''}:"]
        if missing:
            shown = ", ".join(missing[:SHOW])
            more = f" (and {len(missing) - SHOW} more)" if len(missing) > SHOW else ""
            lines.append(f"  {len(missing)} missing key(s): {shown}{more}")
        if misshaped:
            lines.append(f"  {len(misshaped)} mis-shaped key(s) (expected vs found):")
            lines += [f"    {k}: expected {list(e)}, found {list(f)}" for k, e, f in misshaped[:SHOW]]
            if len(misshaped) > SHOW:
                lines.append(f"    (and {len(misshaped) - SHOW} more)")
        return cls("\n".join(lines), missing, misshaped)


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist."""


TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # torch.save before 1.6


def file_kind(path: str | Path) -> str | None:
    """What the first bytes say the file is: "zip" (torch.save since PyTorch 1.6), "legacy" (older torch.save),
    "safetensors" (8-byte header length, then the JSON header), or None (not a checkpoint)."""
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(len(TORCH_LEGACY_MAGIC))
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(TORCH_LEGACY_MAGIC):
        return "legacy"
    if len(head) > 8 and head[8:9] == b"{" and 8 < 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size:
        return "safetensors"
    return None


_UNREADABLE = {  # kind -> what a reader failure on it means (the reader's own message stays in the chain)
    "zip": "not a PyTorch checkpoint (a zip archive torch.load cannot read: truncated, or not written by torch.save)",
    "legacy": "not a readable PyTorch checkpoint (old torch.save format, truncated or damaged)",
    "safetensors": "not a readable safetensors file (truncated, or a damaged header)",
}


def _one_line(path: Path, kind: str, exc: Exception) -> str:
    """A reader's (often multi-paragraph, internal) failure as one line naming the file."""
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if refused:
        return (f"checkpoint {path}: refused: it holds a Python object ({refused.group(1)}) besides tensors and "
                f"plain values, and loading it could run code")
    if isinstance(exc, pickle.UnpicklingError):
        return f"checkpoint {path}: not a checkpoint (a pickle that torch.load cannot read as a state dict)"
    return f"checkpoint {path}: {_UNREADABLE[kind]}"


def read_weights(path: str | Path) -> tuple[dict[str, "Tensor"], list[str]]:
    """(flat state dict of tensors, wrapper keys unwrapped in order).

    Nothing is copied: a torch zip file is memory-mapped (``mmap=True``) and a ``.safetensors`` file opened
    lazily (``safe_open``, itself memory-mapped), so a tensor's bytes are read when it is first used and keys
    nobody uses are never read. Only the pre-1.6 torch format is read whole (it cannot be mapped). Always
    ``weights_only``: a file holding other Python objects is refused. Failures are one line naming the file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {path}: no such file")
    kind = file_kind(path)
    if kind is None:
        raise CheckpointError(f"checkpoint {path}: not a checkpoint (neither a PyTorch file nor safetensors)")
    try:
        if kind == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as fh:
                obj: Any = {k: fh.get_tensor(k) for k in fh.keys()}
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "zip")
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unreadable file
        raise CheckpointError(_one_line(path, kind, exc)) from exc
    wrappers: list[str] = []
    for _ in range(2):  # {"module": {...}}, possibly nested once more
        if not isinstance(obj, dict):
            break
        inner = next((w for w in WRAPPERS if isinstance(obj.get(w), dict)), None)
        if inner is None or all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        wrappers.append(inner)
        obj = obj[inner]
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path}: top level is {type(obj).__name__}, not a state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"checkpoint {path}: no tensors found (top-level keys: {sorted(map(str, obj))[:SHOW]})")
    return tensors, wrappers


def load_state_dict(path: str | Path) -> dict[str, "Tensor"]:
    """Flat state dict from a torch file (weights_only, memory-mapped on CPU; model/module wrappers removed) or
    .safetensors (memory-mapped)."""
    return read_weights(path)[0]


def mapped_ranges(path: str | Path) -> list[tuple[int, int]]:
    """Address ranges of this process mapped from the file ``path`` (Linux; empty elsewhere), adjacent merged."""
    maps, real, ranges = Path("/proc/self/maps"), str(Path(path).resolve()), []
    if not maps.is_file():
        return []
    for line in maps.read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5] == real:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if ranges and ranges[-1][1] == lo:
                ranges[-1] = (ranges[-1][0], hi)
            else:
                ranges.append((lo, hi))
    return ranges


def drop_pages(t: "Tensor", ranges: list[tuple[int, int]]) -> None:
    """Hand back the resident pages of ``t`` when it lies inside a mapping of the checkpoint file (never other
    memory): madvise(MADV_DONTNEED) on clean file-backed pages only drops them from this process, and a later
    read would page the file in again, so the data stay what the file holds."""
    import ctypes
    import mmap

    lo = t.data_ptr()
    hi = lo + t.numel() * t.element_size()
    if not hasattr(mmap, "MADV_DONTNEED") or not any(a <= lo and hi <= b for a, b in ranges):
        return
    start, end = -(-lo // mmap.PAGESIZE) * mmap.PAGESIZE, hi // mmap.PAGESIZE * mmap.PAGESIZE
    if end > start:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), mmap.MADV_DONTNEED)


@dataclass
class LoadReport:
    params: int = 0  # parameters (elements) loaded
    keys: int = 0  # state-dict entries loaded
    ignored: dict[str, list[str]] = field(default_factory=dict)  # group -> full keys
    unexpected: list[str] = field(default_factory=list)  # keys no module uses and no group explains


def find_problems(module: "nn.Module", state_dict: dict[str, "Tensor"], key_prefix: str = ""
                  ) -> tuple[list[str], list[tuple[str, tuple, tuple]]]:
    """(missing parameter keys, [(key, expected shape, found shape)]) with ``key_prefix`` prepended."""
    missing, misshaped = [], []
    for name, p in module.named_parameters():
        if name not in state_dict:
            missing.append(key_prefix + name)
        elif tuple(state_dict[name].shape) != tuple(p.shape):
            misshaped.append((key_prefix + name, tuple(p.shape), tuple(state_dict[name].shape)))
    return missing, misshaped


def check_and_load(module: "nn.Module", state_dict: dict[str, "Tensor"], *, source: str, key_prefix: str = "",
                   what: str = "") -> LoadReport:
    """Load ``state_dict`` (keys relative to ``module``) after checking every parameter is there with its shape.

    Parameters on the meta device are replaced by the given tensors (``assign``), others copied in place;
    values are cast to the parameter dtype. Persistent buffers are loaded when present and fitting.
    Raises CheckpointError naming ``source`` and the full (``key_prefix``-ed) keys.
    """
    import torch

    missing, misshaped = find_problems(module, state_dict, key_prefix)
    if missing or misshaped:
        raise CheckpointError.from_problems(source, missing, misshaped, what)
    own = module.state_dict()
    use = {k: v.to(own[k].dtype) for k, v in state_dict.items()
           if k in own and tuple(v.shape) == tuple(own[k].shape)}
    on_meta = any(p.is_meta for p in module.parameters())
    with torch.no_grad():
        module.load_state_dict(use, strict=False, assign=on_meta)
    params = dict(module.named_parameters())
    return LoadReport(params=sum(use[k].numel() for k in use if k in params), keys=len(use),
                      unexpected=[key_prefix + k for k in state_dict if k not in own])
