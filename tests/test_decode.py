"""Decoding: clip sampling, timestamps, equality with sequential decoding, faults handled per video."""

from __future__ import annotations

import os
import stat

import decord
import numpy as np
import pytest

from conftest import REAL_VIDEOS, write_video
from extract.decode import DecodePool, DecodeSpec, clip_frame_times, decode_video, num_clips, times_to_indices


def sequential_frames(path, size):
    """Every frame by forward decoding (the reliable path), resized by the decoder, plus its timestamps."""
    vr = decord.VideoReader(str(path), num_threads=1, width=size, height=size)
    frames = []
    while True:
        try:
            frames.append(vr.next().asnumpy())
        except StopIteration:
            break
    ts = decord.VideoReader(str(path)).get_frame_timestamp(np.arange(len(frames)))
    return np.stack(frames), np.asarray(ts)


def expected_clips(path, spec):
    frames, ts = sequential_frames(path, spec.size)
    times = clip_frame_times(float(ts[-1, 1]), spec.clip_len, spec.frames_per_clip)
    idx = times_to_indices(times.reshape(-1), ts[:, 0], len(frames))
    out = frames[idx].transpose(0, 3, 1, 2)
    return out.reshape(len(times), spec.frames_per_clip, *out.shape[1:])


def test_clip_times_are_middles_of_equal_subintervals():
    t = clip_frame_times(duration=10.0, clip_len=2.0, frames_per_clip=4)
    assert t.shape == (5, 4)
    np.testing.assert_allclose(t[0], [0.25, 0.75, 1.25, 1.75])
    np.testing.assert_allclose(t[4], [8.25, 8.75, 9.25, 9.75])
    # a last partial clip covering >= half a clip is kept and sampled inside the video
    t = clip_frame_times(duration=9.0, clip_len=2.0, frames_per_clip=2)
    assert t.shape == (5, 2)
    np.testing.assert_allclose(t[4], [8.25, 8.75])
    assert num_clips(8.9, 2.0) == 4 and num_clips(9.0, 2.0) == 5 and num_clips(0.3, 2.0) == 1


def test_times_map_through_decoder_timestamps_not_fps():
    # variable frame rate: frames start at 0, 0.1, 0.3, 0.35, 0.9
    starts = np.array([0.0, 0.1, 0.3, 0.35, 0.9])
    idx = times_to_indices(np.array([0.05, 0.29, 0.32, 0.5, 2.0]), starts, n_decodable=5)
    assert idx.tolist() == [0, 1, 2, 3, 4]
    # clamped to the decodable prefix
    assert times_to_indices(np.array([2.0]), starts, n_decodable=3).tolist() == [2]


@pytest.mark.parametrize("path", REAL_VIDEOS, ids=lambda p: p.name)
def test_real_h264_matches_sequential_decoding(path, shared_data):
    spec = DecodeSpec(clip_len=1.0, frames_per_clip=4, size=224, chunk_clips=3)  # chunks split the video
    info, clips = decode_video(str(path), spec)
    assert info["codec"] == "h264" and not info["sequential"]
    assert clips.dtype == np.uint8 and clips.shape[1:] == (4, 3, 224, 224)
    np.testing.assert_array_equal(clips, expected_clips(path, spec))


def test_mpeg4_part2_is_decoded_sequentially(tmp_path):
    path = write_video(tmp_path / "m4.mp4", n_frames=150, codec="mpeg4", bframes=2)
    spec = DecodeSpec(clip_len=2.0, frames_per_clip=4, size=64, chunk_clips=2)
    info, clips = decode_video(str(path), spec)
    assert info["codec"] == "mpeg4" and info["sequential"]
    np.testing.assert_array_equal(clips, expected_clips(path, spec))


def _run_pool(items, **kw):
    events = {}
    for key, kind, payload in DecodePool(items, DecodeSpec(clip_len=2.0, size=32, chunk_clips=4), **kw):
        events.setdefault(key, []).append((kind, payload))
    return events


def test_bad_videos_are_recorded_and_others_extracted(tmp_path):
    write_video(tmp_path / "good.mp4", n_frames=45)
    whole = write_video(tmp_path / "whole.mp4", n_frames=90, faststart=True).read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "corrupt.mp4").write_bytes(os.urandom(4096))
    (tmp_path / "empty.mp4").write_bytes(b"")
    items = [(n, str(tmp_path / f"{n}.mp4")) for n in ("truncated", "good", "corrupt", "missing", "empty")]
    events = _run_pool(items, workers=2, timeout_s=60)
    assert set(events) == {"truncated", "good", "corrupt", "missing", "empty"}
    for bad in ("truncated", "corrupt", "missing", "empty"):
        (kind, reason), = events[bad]
        assert kind == "error" and reason, bad
    assert "not found" in events["missing"][0][1]
    kinds = [k for k, _ in events["good"]]
    assert kinds[0] == "start" and kinds[-1] == "done" and "chunk" in kinds
    n = sum(len(p[1]) for k, p in events["good"] if k == "chunk")
    assert n == events["good"][0][1]["n_clips"] == 2  # 45 frames at 15 fps = 3 s -> 2 clips


def test_hung_decoder_times_out_without_losing_other_videos(tmp_path):
    fifo = tmp_path / "hang.mp4"
    os.mkfifo(fifo)  # opening a FIFO with no writer blocks forever inside the decoder
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    good = write_video(tmp_path / "good.mp4", n_frames=30)
    events = _run_pool([("hang", str(fifo)), ("good", str(good))], workers=1, timeout_s=3)
    (kind, reason), = events["hang"]
    assert kind == "error" and "timeout" in reason
    assert events["good"][-1][0] == "done"
