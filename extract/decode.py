"""Video decoding for feature extraction: clip sampling, decord readers in worker processes, timeouts.

A video of duration ``d`` seconds is cut into clips of ``clip_len`` seconds (2 s for QVHighlights and
TACoS, 1 s for Charades-STA; paper Tab. A). Each clip is split into ``frames_per_clip`` equal
sub-intervals and the frame shown at the middle of each is taken (internvideo2.md, "Preprocessing").
Times map to frame indices through the decoder's own per-frame timestamps, never ``t * fps``, so
variable-frame-rate files are sampled where the viewer sees the frame. Frames are resized to a square
without crop, by default exactly as InternVideo2's evaluation transform does it (:func:`resize_official`).

Decoding for extraction runs in worker processes (:class:`extract.decode_pool.DecodePool`), each reading one
video at a time with :func:`iter_video_chunks`. Frames come in chunks of ``chunk_clips`` clips so memory stays
bounded for long videos (TACoS, ~1400 s).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Iterator

import numpy as np

# Codecs whose random access decord gets wrong (MPEG-4 Part 2 with B-frames returns a frame two ahead
# near keyframes; internvideo2.md "decord, observed"): these are decoded sequentially.
SEQUENTIAL_CODECS = frozenset({"mpeg4", "msmpeg4v1", "msmpeg4v2", "msmpeg4v3", "h263", "h263p", "flv1"})

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VideoDecodeError(RuntimeError):
    """A video that cannot be decoded; ``str(err)`` is the reason recorded in the extraction summary."""


# How frames reach size x size (no crop). "official" is InternVideo2's evaluation transform
# (multi_modality dataset/__init__.py get_test_transform: transforms.Resize((224, 224), BICUBIC) on uint8
# (T, C, H, W) tensors under the torchvision 0.14 it pins, functional_tensor.resize: float32, bicubic
# a = -0.75, align_corners=False, no antialiasing, clamp to [0, 255], round, uint8). "decoder" lets decord
# resize (swscale's bicubic): faster, but 1.7/255 to 7.8/255 mean absolute difference from the official
# frames (bench/extract.py decode prints both rates).
RESIZES = ("official", "decoder")
SUB_BATCH_FRAMES = 16  # full-resolution frames held at once by the official resize (1080p: ~100 MB)


@dataclass(frozen=True)
class DecodeSpec:
    clip_len: float  # seconds per clip (Tab. A: 2.0 QVHighlights/TACoS, 1.0 Charades-STA)
    frames_per_clip: int = 4  # InternVideo2-1B f4 checkpoint
    size: int = 224  # square output side, no crop
    chunk_clips: int = 32  # clips per message from a worker (bounds memory per video)
    resize: str = "official"  # one of RESIZES
    clip_rule: str = "round"  # one of CLIP_RULES

    def __post_init__(self):
        if self.resize not in RESIZES:
            raise ValueError(f"resize {self.resize!r}: expected one of {RESIZES}")
        if self.clip_rule not in CLIP_RULES:
            raise ValueError(f"clip_rule {self.clip_rule!r}: expected one of {CLIP_RULES}")


def resize_official(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) full-resolution frames -> uint8 (N, 3, size, size), as InternVideo2 evaluates.

    torchvision 0.14 ``Resize((size, size), BICUBIC)`` on a uint8 tensor (see :data:`RESIZES`).
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=False)
    return x.clamp_(0, 255).round_().to(torch.uint8).numpy()


# How many clips a video of d seconds has (a cache-identity setting, `datasets.<name>.clip_rule`):
# round: round(d / clip_len), a last partial clip counts from half a clip (this project's default);
# ceil: ceil(d / clip_len), every partial clip counts (the SDST authors' released features: 75 clips for a 150 s
# QVHighlights video, and annotations labelled by that rule can name a clip past round's last one).
CLIP_RULES = ("round", "ceil")
_EPS = 1e-6  # a duration a float rounding step above a whole number of clips is that number (150.0000001 s)


def num_clips(duration: float, clip_len: float, rule: str = "round") -> int:
    """Clips covering ``duration`` by ``rule`` (:data:`CLIP_RULES`); at least one."""
    if rule == "ceil":
        return max(1, math.ceil(duration / clip_len - _EPS))
    if rule != "round":
        raise ValueError(f"clip_rule {rule!r}: expected one of {CLIP_RULES}")
    return max(1, int(math.floor(duration / clip_len + 0.5)))


def clip_frame_times(duration: float, clip_len: float, frames_per_clip: int, rule: str = "round") -> np.ndarray:
    """(n_clips, frames_per_clip) sampling times in seconds: middle of equal sub-intervals of each clip.

    The last clip is cut at ``duration`` so its frames lie inside the video.
    """
    n = num_clips(duration, clip_len, rule)
    starts = np.arange(n) * clip_len
    ends = np.minimum(starts + clip_len, max(duration, 1e-6))
    ends = np.maximum(ends, starts + 1e-6)  # a video shorter than half a clip still yields one clip
    frac = (np.arange(frames_per_clip) + 0.5) / frames_per_clip
    return starts[:, None] + (ends - starts)[:, None] * frac[None, :]


def times_to_indices(times: np.ndarray, frame_starts: np.ndarray, n_decodable: int) -> np.ndarray:
    """Index of the frame on screen at each time (last frame whose start <= t), clamped to decodable frames."""
    idx = np.searchsorted(frame_starts, times, side="right") - 1
    return np.clip(idx, 0, n_decodable - 1).astype(np.int64)


def probe_codec(path: str) -> str | None:
    """Codec name of the first video stream (PyAV reads only the container header), None if unknown."""
    try:
        import av

        with av.open(path) as container:
            return container.streams.video[0].codec_context.name
    except Exception:  # noqa: BLE001 - the decoder gives the real error if the file is unreadable
        return None


def normalize(frames_u8, device=None, dtype=None):
    """uint8 (B, T, 3, S, S) -> float (B, 3, T, S, S) with ImageNet mean/std, on ``device``."""
    import torch

    x = torch.as_tensor(frames_u8, device=device).permute(0, 2, 1, 3, 4).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1, 1)
    x = (x - mean) / std
    return x if dtype is None else x.to(dtype)


class _Reader:
    """decord access to one video with the fallbacks this project relies on."""

    def __init__(self, path: str, size: int | None):
        """``size``: the decoder resizes to size x size; None decodes at full resolution."""
        if not os.path.exists(path):
            raise VideoDecodeError(f"file not found: {path}")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise VideoDecodeError(f"empty file: {path}")
        self.path, self.size = path, size
        with _ffmpeg_messages() as said:
            try:
                self.vr = self._open()
            except Exception as err:  # noqa: BLE001 - decord raises RuntimeError or DECORDError
                failure = short_error(err)
            else:
                failure = None
        if failure is not None:  # FFmpeg's own words first ("moov atom not found"), then decord's
            raise VideoDecodeError(f"cannot open: {'; '.join(said + [failure])}")
        self.n_frames = len(self.vr)
        if self.n_frames == 0:
            raise VideoDecodeError("no video frames")
        ts = np.asarray(self.vr.get_frame_timestamp(np.arange(self.n_frames)), dtype=np.float64)
        valid = np.isfinite(ts).all(axis=1) & (ts[:, 1] >= ts[:, 0])
        # containers can over-report frames: keep the prefix with sane timestamps
        self.n_decodable = int(np.argmin(valid)) if not valid.all() else self.n_frames
        if self.n_decodable == 0:
            raise VideoDecodeError("no frame has a valid timestamp")
        self.frame_starts = ts[: self.n_decodable, 0]
        self.duration = float(ts[self.n_decodable - 1, 1])
        self.codec = probe_codec(path)
        self.sequential = self.codec in SEQUENTIAL_CODECS
        self._seq_pos = 0  # next frame index of sequential decoding
        self._seq_last: np.ndarray | None = None
        self.clamped = False  # set when frames past a decode error were replaced by the last good one

    def _open(self):
        import decord

        side = {} if self.size is None else {"width": self.size, "height": self.size}
        return decord.VideoReader(self.path, num_threads=1, **side)

    def frames(self, indices: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 for non-decreasing frame ``indices`` (successive calls continue forward)."""
        if not self.sequential:
            try:
                return self.vr.get_batch(indices.tolist()).asnumpy()
            except Exception:  # noqa: BLE001 - damaged packet: fall back to sequential decoding
                self.sequential = True
                self._restart_sequential()
        return self._sequential(indices)

    def _restart_sequential(self) -> None:
        # a reader that raised may be in a bad state
        self.vr = self._open()
        self._seq_pos = 0
        self._seq_last = None

    def _sequential(self, indices: np.ndarray) -> np.ndarray:
        """Decode forward frame by frame; indices past an undecodable frame get the last good frame."""
        wanted = indices.tolist()
        if wanted and wanted[0] < self._seq_pos - 1:
            self._restart_sequential()
        result = []
        for i in wanted:
            i = min(i, self.n_decodable - 1)
            while self._seq_pos <= i:
                try:
                    frame = self.vr.next().asnumpy()
                except Exception:  # noqa: BLE001 - StopIteration or a decode error: nothing further decodes
                    self.n_decodable = max(self._seq_pos, 1)
                    break
                self._seq_last = frame
                self._seq_pos += 1
            if self._seq_last is None:
                raise VideoDecodeError("no frame could be decoded")
            self.clamped |= self._seq_pos - 1 < i
            result.append(self._seq_last)
        return np.stack(result)


def iter_video_chunks(path: str, spec: DecodeSpec) -> Iterator[tuple[str, object]]:
    """Decode one video; yields ("start", info), then ("chunk", (first_clip, uint8 (n, F, 3, S, S))) ...

    ``info`` = {"n_clips", "duration", "fps", "n_frames", "codec", "sequential"}. The final message is
    ("done", {"clamped": bool, "n_decodable": int}). Raises :class:`VideoDecodeError`.
    """
    official = spec.resize == "official"
    reader = _Reader(path, None if official else spec.size)
    times = clip_frame_times(reader.duration, spec.clip_len, spec.frames_per_clip, spec.clip_rule)
    n_clips = len(times)
    yield "start", {
        "n_clips": n_clips,
        "duration": reader.duration,
        "fps": float(reader.vr.get_avg_fps()),
        "n_frames": reader.n_frames,
        "codec": reader.codec,
        "sequential": reader.sequential,
    }
    for first in range(0, n_clips, spec.chunk_clips):
        block = times[first : first + spec.chunk_clips]
        idx = times_to_indices(block.reshape(-1), reader.frame_starts, reader.n_decodable)
        reader.clamped |= bool(len(reader.frame_starts) < reader.n_frames and idx.max() == reader.n_decodable - 1)
        if official:  # full-resolution frames, a few at a time, through the official resize
            frames = np.concatenate([resize_official(reader.frames(idx[i:i + SUB_BATCH_FRAMES]), spec.size)
                                     for i in range(0, len(idx), SUB_BATCH_FRAMES)])
        else:
            frames = reader.frames(idx).transpose(0, 3, 1, 2)  # (N, 3, S, S)
        yield "chunk", (first, frames.reshape(len(block), spec.frames_per_clip, *frames.shape[1:]))
    yield "done", {"clamped": reader.clamped, "n_decodable": reader.n_decodable}


def decode_video(path: str, spec: DecodeSpec) -> tuple[dict, np.ndarray]:
    """Whole video in this process: (info, uint8 (n_clips, F, 3, S, S)). For tests and one-video prediction."""
    info: dict = {}
    chunks = []
    for kind, payload in iter_video_chunks(path, spec):
        if kind == "start":
            info.update(payload)
        elif kind == "chunk":
            chunks.append(payload[1])
        else:
            info.update(payload)
    return info, np.concatenate(chunks)


def short_error(err: BaseException) -> str:
    """decord errors carry a C++ stack; keep the informative last line, without its "[time] file.cc:N: " prefix."""
    text = str(err).strip().splitlines()
    line = _DECORD_PREFIX.sub("", text[-1]) if text else type(err).__name__
    return line if len(line) < 300 else line[:300] + "..."


_DECORD_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ")
_FFMPEG_LINE = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\] (.+)$")  # "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d4...] moov atom ..."


@contextlib.contextmanager
def _ffmpeg_messages():
    """Collects what FFmpeg inside decord writes to file descriptor 2 meanwhile: its message lines (the reason
    a file does not open, e.g. "moov atom not found"; decord raises only "Error reading <path>..."). Everything
    written is passed on to stderr afterwards, so nothing is hidden."""
    said: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to take over
        yield said
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read(1 << 16)
            if text:
                os.write(2, text)
            for line in text.decode(errors="replace").splitlines():
                m = _FFMPEG_LINE.match(line.strip())
                if m and m.group(1) not in said:
                    said.append(m.group(1).strip())
