"""The annotation parser on every real annotation file, and its messages on bad input."""

from __future__ import annotations

import json

import pytest

from conftest import DATA
from extract.annotations import AnnotationError, load_annotations

COUNTS = {
    "qvhighlights/highlight_train_release.jsonl": 7218,
    "qvhighlights/highlight_val_release.jsonl": 1550,
    "qvhighlights/highlight_test_release.jsonl": 1542,
    "charades_sta/charades_train_release.jsonl": 12404,
    "charades_sta/charades_test_release.jsonl": 3720,
    "tacos/tacos_train_release.jsonl": 9790,
    "tacos/tacos_val_release.jsonl": 4436,
    "tacos/tacos_test_release.jsonl": 4001,
}


@pytest.mark.parametrize("name,count", COUNTS.items())
def test_real_files_parse_with_expected_counts(name, count, shared_data):
    labelled = "test_release" not in name or "qvhighlights" not in name
    queries = load_annotations(DATA / name, require_labels=labelled)
    assert len(queries) == count
    if "qvhighlights" in name and labelled:
        assert all(q.saliency is not None and len(q.saliency) == len(q.clip_ids) for q in queries)
    if "charades" in name or "tacos" in name:
        assert all(len(q.windows) == 1 for q in queries)
    if "tacos" in name:
        assert isinstance(queries[0].qid, str)


def _write(tmp_path, rows):
    path = tmp_path / "ann.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    return path


GOOD = {"qid": 1, "query": "a man talks", "duration": 30.0, "vid": "v1", "relevant_windows": [[2.0, 8.0]]}


@pytest.mark.parametrize("bad,pattern", [
    ('{"qid": 2, "query": "x", ', r"ann\.jsonl:2: invalid JSON"),
    ({**GOOD, "qid": 2, "duration": "long"}, r"ann\.jsonl:2: field 'duration' must be a finite number"),
    ({k: v for k, v in GOOD.items() if k != "vid"} | {"qid": 2}, r"ann\.jsonl:2: missing field 'vid'"),
    ({**GOOD, "qid": 2, "relevant_windows": [[8.0, 2.0]]}, r"ann\.jsonl:2: relevant_windows\[0\].*start < end"),
    ({**GOOD, "qid": 2, "relevant_windows": [[1.0]]}, r"ann\.jsonl:2: relevant_windows\[0\] must be \[start, end\]"),
    ({**GOOD, "qid": 1}, r"ann\.jsonl:2: duplicate qid 1 \(first on line 1\)"),
    ({**GOOD, "qid": 2, "relevant_clip_ids": [1, 2], "saliency_scores": [[1, 2, 3]]},
     r"ann\.jsonl:2: 2 relevant_clip_ids but 1 saliency_scores"),
    ({**GOOD, "qid": 2, "relevant_clip_ids": [1], "saliency_scores": [[1, 2, 9]]},
     r"ann\.jsonl:2: saliency_scores\[0\] must be 3 scores in 0\.\.4"),
    # 30 s and 31 s both have int(duration / 2) = 15 saliency clips, ids 0..14 (the official evaluator's count)
    ({**GOOD, "qid": 2, "relevant_clip_ids": [3, 15], "saliency_scores": [[1, 2, 3]] * 2},
     r"ann\.jsonl:2: relevant_clip_ids\[1\] = 15 is not a clip of the video: duration 30 s has int\(duration / 2\) "
     r"= 15 clips"),
    ({**GOOD, "qid": 2, "duration": 31.0, "relevant_clip_ids": [15], "saliency_scores": [[1, 2, 3]]},
     r"ann\.jsonl:2: relevant_clip_ids\[0\] = 15 is not a clip"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, bad, pattern):
    with pytest.raises(AnnotationError, match=pattern):
        load_annotations(_write(tmp_path, [GOOD, bad]))


def test_missing_file_and_missing_labels(tmp_path):
    with pytest.raises(AnnotationError, match="annotation file not found"):
        load_annotations(tmp_path / "nope.jsonl")
    unlabeled = {k: v for k, v in GOOD.items() if k != "relevant_windows"}
    assert load_annotations(_write(tmp_path, [unlabeled]))[0].windows == ()
    with pytest.raises(AnnotationError, match="missing field 'relevant_windows'"):
        load_annotations(_write(tmp_path, [unlabeled]), require_labels=True)


def test_annotation_file_that_is_not_utf8_names_its_line(tmp_path):
    from extract.annotations import AnnotationError, load_annotations

    path = tmp_path / "ann.jsonl"
    good = b'{"qid": 0, "query": "a dog", "duration": 4, "vid": "a", "relevant_windows": [[0, 2]]}\n'
    path.write_bytes(good + good.replace(b'"qid": 0', b'"qid": 1').replace(b"a dog", b"un caf\xe9"))
    with pytest.raises(AnnotationError, match=r"ann\.jsonl:2: not UTF-8 text .* save the file as UTF-8"):
        load_annotations(path)
