"""How layers are named in the configuration: 1-based block indices, or negative from the last block."""

from __future__ import annotations


def resolve_layer_indices(layers, depth: int, what: str = "layer") -> list[int]:
    """Configured layers -> 1-based indices: 1..depth as given, negative counts from the end (-1 = last)."""
    out = []
    for layer in layers:
        idx = layer + depth + 1 if layer < 0 else layer
        if not 1 <= idx <= depth:
            raise ValueError(f"{what} {layer} out of range for {depth} layers (use 1..{depth} or -{depth}..-1)")
        out.append(idx)
    if not out:
        raise ValueError(f"no {what}s requested")
    return out
