"""The two encoding steps shared by extraction jobs and one-video prediction (one code path).

``encode_clips``: decoded uint8 clips -> pooled features of the configured layers.
``encode_queries``: query strings -> token features of the configured text layers, trimmed to real tokens.
Both round through float16, the cache's dtype, so features computed on the fly equal cached ones.
"""

from __future__ import annotations

import contextlib

import numpy as np

from extract.decode import normalize


def autocast_for(device: str):
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()


def encode_clips(vision, frames_u8: np.ndarray, ident: dict, device: str) -> np.ndarray:
    """uint8 (B, F, 3, S, S) -> float32 (K, B, D) (the values the cache would hold)."""
    import torch

    with torch.inference_mode(), autocast_for(device):
        x = normalize(frames_u8, device=device)
        feats = vision.forward_layers(x, ident["vision_layers"], pooling=ident["pooling"])
    return feats.float().cpu().numpy()


QUERY_ROWS = 32  # queries per forward pass; every pass has this shape (rows x text_max_len tokens)


def encode_queries(text, tokenizer, queries: list[str], ident: dict, device: str) -> list[np.ndarray]:
    """Strings -> one float32 (K, L_i, D) array per query, L_i = its real tokens ([CLS] ... [SEP]).

    Every forward pass has the same shape, QUERY_ROWS rows (the last pass filled with copies of its first query)
    of ``tokenizer.max_len`` tokens, so a query's features do not depend on which queries share its batch or how
    long they are: a resumed extraction, a one-query prediction and an uninterrupted run give the same bits
    (matrix kernels sum in an order that depends on the shapes they are given)."""
    import torch

    out = []
    for i in range(0, len(queries), QUERY_ROWS):
        chunk = list(queries[i:i + QUERY_ROWS])
        ids, mask = tokenizer(chunk + chunk[:1] * (QUERY_ROWS - len(chunk)), width=tokenizer.max_len)
        with torch.inference_mode(), autocast_for(device):
            feats = text(ids.to(device), mask.to(device), ident["text_layers"]).float().cpu().numpy()  # (K,B,L,D)
        lengths = mask.sum(1).tolist()
        out += [feats[:, b, :lengths[b]] for b in range(len(chunk))]
    return out


def as_cached(x: np.ndarray) -> np.ndarray:
    """The float16 round trip of the cache (features are stored as float16)."""
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)
