"""Token ids per text encoder, against ids written out here from the vocabulary file.

Expected word pieces follow the encoders' own code, not this project's:
- InternVideo2-1B (``bert-large-19``): multi_modality ``dataset/utils.py`` ``pre_text`` cleaning, then
  ``tokenization_bert.py`` with ``build_inputs_with_special_tokens`` = ``[CLS] X`` (no ``[SEP]``) and
  truncation to ``max_length`` including that one special token;
- MiniLM (``minilm-l6``): standard BERT ``[CLS] X [SEP]``, punctuation split into its own tokens.
"""

from __future__ import annotations

import pytest

from extract.identity import extraction_identity
from extract.tokenizer import RECIPES, TextRecipe, build_tokenizer, clean_internvideo2, minilm_dir


@pytest.fixture(scope="module")
def vocab() -> dict[str, int]:
    lines = (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return {tok: i for i, tok in enumerate(lines)}


def _ids(vocab, pieces: str) -> list[int]:
    return [vocab[p] for p in pieces.split()]


# query as an annotation file holds it -> (InternVideo2 pieces, MiniLM pieces)
TRICKY = {
    "A Man's T-shirt/Hat: (RED!)": (
        "[CLS] a mans t shirt hat red",
        "[CLS] a man ' s t - shirt / hat : ( red ! ) [SEP]"),
    # 'womans' is not a word of the vocabulary: WordPiece splits it; accents are stripped by the tokeniser
    "Woman's  café ~ #1 game;  then... sleeps <person>": (
        "[CLS] woman ##s cafe 1 game then sleeps person",
        "[CLS] woman ' s cafe ~ # 1 game ; then . . . sleeps < person > [SEP]"),
    "Two-Year-Old KID\tplays": (
        "[CLS] two year old kid plays",
        "[CLS] two - year - old kid plays [SEP]"),
}


@pytest.mark.parametrize("query", list(TRICKY))
def test_internvideo2_recipe_token_ids(vocab, query):
    assert build_tokenizer("bert-large-19", 40).ids(query) == _ids(vocab, TRICKY[query][0])


@pytest.mark.parametrize("query", list(TRICKY))
def test_minilm_recipe_token_ids(vocab, query):
    assert build_tokenizer("minilm-l6", 40).ids(query) == _ids(vocab, TRICKY[query][1])


@pytest.mark.parametrize("max_len", [40, 12])
def test_truncation_keeps_the_encoders_number_of_word_pieces(vocab, max_len):
    long = "Word, " * 50
    w, cls, sep = vocab["word"], vocab["[CLS]"], vocab["[SEP]"]
    # the special tokens count against max_len: [CLS] + (max_len - 1) pieces, or [CLS] + (max_len - 2) + [SEP]
    assert build_tokenizer("bert-large-19", max_len).ids(long) == [cls] + [w] * (max_len - 1)
    assert build_tokenizer("minilm-l6", max_len).ids(long) == [cls] + [w, vocab[","]] * ((max_len - 2) // 2) + [sep]


def test_batch_is_padded_with_a_mask():
    ids, mask = build_tokenizer("bert-large-19", 40)(["a b", "Hello, world! How are you?"])
    assert ids.shape == mask.shape == (2, 6)  # [CLS] hello world how are you
    assert mask.tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert ids[0, 3:].tolist() == [0, 0, 0]  # [PAD]


def test_cleaning_details():
    assert clean_internvideo2("  A/B--C  ") == "a b c"
    assert clean_internvideo2("He said: \"Hi!\"\n") == "he said hi"
    assert clean_internvideo2("<person> waves") == "person waves"
    assert clean_internvideo2("x@y & z") == "x@y & z"  # not in the deleted set: kept for the tokeniser


def test_recipe_is_part_of_the_extraction_identity(monkeypatch):
    dataset = {"backbone": "1b", "checkpoint": None, "clip_len": 2.0}
    extract = {"frames_per_clip": 4, "image_size": 224, "resize": "official", "vision_layers": [-1],
               "pooling": "attn", "text_layers": [-1], "text_max_len": 40, "gelu": "tanh", "seed": 0}
    before = extraction_identity(dataset, extract)
    assert before["text_recipe"] == {"clean": "internvideo2", "sep": False, "vocab": "bert-uncased"}
    monkeypatch.setitem(RECIPES, "bert-large-19", TextRecipe(clean="internvideo2", sep=True))
    assert extraction_identity(dataset, extract) != before
