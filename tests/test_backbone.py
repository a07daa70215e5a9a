"""InternVideo2 backbone: vision encoder, text encoder, official checkpoint layout.

Forward passes run only at the ``tiny`` size; the 1B configuration is checked on the meta device
(parameter counts against internvideo2.md, FLOPs) without allocating weights.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from extract.backbone import (BACKBONES, CheckpointError, CheckpointNotFoundError, load_backbone,
                                load_state_dict, save_official_layout)
from extract.internvideo2 import (POOLINGS, VISION_CONFIGS, InternVideo2Vision, VisionConfig, build_vision,
                                  vision_flops_per_clip)
from extract.text import (TEXT_CONFIGS, TextEncoder, load_text_encoder, minilm_state_dict, select_text_keys)
from extract.tokenizer import build_tokenizer, minilm_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _inference():
    with torch.no_grad():
        yield


def video(b: int, t: int, seed: int = 0, size: int = 224) -> torch.Tensor:
    return torch.randn(b, 3, t, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny():
    """(vision, text) of the offline tiny backbone: seeded random vision, real MiniLM text."""
    return load_backbone("tiny", None, seed=0)


@pytest.fixture(scope="module")
def good_ckpt(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_official.pt"
    return save_official_layout(*tiny, path, wrapper="module", extra_keys=True)


# ------------------------------------------------------------------------------ independent reference
def reference_forward(m: InternVideo2Vision, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Straight transcription of the official non-fused path (explicit softmax, reshape-based qkv split).

    Returns (pooled clip embedding, token grids after every block).
    """
    cfg = m.cfg
    B, _, T, _, _ = x.shape
    h, D = cfg.num_heads, cfg.embed_dim

    def rms(t, w):
        return w * (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + cfg.norm_eps))

    tok = F.conv3d(x, m.patch_embed.proj.weight, m.patch_embed.proj.bias,
                   stride=(1, cfg.patch_size, cfg.patch_size))  # (B, D, T, g, g)
    tok = tok.flatten(3).permute(0, 2, 3, 1).reshape(B, -1, D)  # B x T x HW x D, time-major
    tok = torch.cat([m.cls_token.expand(B, -1, -1), tok], 1) + m.pos_embed
    grids = []
    for blk in m.blocks:
        a = blk.attn
        y = rms(tok, blk.norm1.weight)
        N = y.shape[1]
        qkv = (y @ a.qkv.weight.T).reshape(B, N, 3, h, D // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = rms(q.transpose(1, 2).flatten(-2), a.q_norm.weight).view(B, N, h, -1).transpose(1, 2)
        k = rms(k.transpose(1, 2).flatten(-2), a.k_norm.weight).view(B, N, h, -1).transpose(1, 2)
        att = ((q * (D // h) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, N, D) @ a.proj.weight.T + a.proj.bias
        tok = tok + blk.ls1.gamma * y
        y = rms(tok, blk.norm2.weight) @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias
        y = F.gelu(y, approximate="tanh" if cfg.gelu == "tanh" else "none")
        tok = tok + blk.ls2.gamma * (y @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias)
        grids.append(tok)
    return reference_pool(m, tok), grids


def reference_pool(m: InternVideo2Vision, tok: torch.Tensor) -> torch.Tensor:
    p, c = m.clip_projector, m.clip_projector.cross_attn
    B, N, D = tok.shape
    h = m.cfg.clip_num_heads
    xq = F.layer_norm(tok.mean(1, keepdim=True), (D,), p.norm1_q.weight, p.norm1_q.bias, 1e-5)
    xk = F.layer_norm(tok, (D,), p.norm1_k.weight, p.norm1_k.bias, 1e-5)
    xv = F.layer_norm(tok, (D,), p.norm1_v.weight, p.norm1_v.bias, 1e-5)
    q = (xq @ c.q.weight.T + c.q_bias).reshape(B, 1, h, -1).transpose(1, 2)
    k = (xk @ c.k.weight.T + c.k_bias).reshape(B, N, h, -1).transpose(1, 2)
    v = (xv @ c.v.weight.T + c.v_bias).reshape(B, N, h, -1).transpose(1, 2)
    att = ((q * (D // h) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
    out = (att @ v).transpose(1, 2).reshape(B, 1, D) @ c.proj.weight.T + c.proj.bias
    return out[:, 0]


# ------------------------------------------------------------------------------------------ vision
def test_tiny_matches_reference_transcription(tiny):
    vision, _ = tiny
    x = video(2, 4)
    pooled, grids = reference_forward(vision, x)
    torch.testing.assert_close(vision(x), pooled, rtol=1e-4, atol=1e-5)
    layers = vision.forward_layers(x, [1, -1, 2], pooling="mean")
    torch.testing.assert_close(layers, torch.stack([grids[0].mean(1), grids[-1].mean(1), grids[1].mean(1)]),
                               rtol=1e-4, atol=1e-5)
    cls = vision.forward_layers(x, [-2], pooling="cls")
    torch.testing.assert_close(cls[0], grids[-2][:, 0], rtol=1e-4, atol=1e-5)
    attn = vision.forward_layers(x, [-3], pooling="attn")
    torch.testing.assert_close(attn[0], reference_pool(vision, grids[-3]), rtol=1e-4, atol=1e-5)


def test_pooling_block_with_sharp_attention_matches_reference():
    # Random init gives near-uniform pooling attention, which would hide errors in the query; sharpen it
    # (scaled q/k weights) and make the separate q/k/v biases non-zero so every part of the block counts.
    m = build_vision("tiny", seed=1)
    ca = m.clip_projector.cross_attn
    g = torch.Generator().manual_seed(1)
    ca.q.weight.mul_(40)
    ca.k.weight.mul_(40)
    for b in (ca.q_bias, ca.k_bias, ca.v_bias):
        b.copy_(torch.randn(b.shape, generator=g))
    x = video(2, 4, seed=1)
    pooled, grids = reference_forward(m, x)
    torch.testing.assert_close(m(x), pooled, rtol=1e-4, atol=1e-5)
    att = m.forward_layers(x, [1, 3], pooling="attn")
    torch.testing.assert_close(att, torch.stack([reference_pool(m, grids[0]), reference_pool(m, grids[2])]),
                               rtol=1e-4, atol=1e-5)
    # the query is the mean over all tokens, CLS included: a dominant CLS token makes that visible
    tok = torch.randn(2, 257, 128, generator=g)
    tok[:, 0] *= 50
    torch.testing.assert_close(m.clip_projector(tok), reference_pool(m, tok), rtol=1e-4, atol=1e-5)


def test_tiny_shapes_and_pooling_dims(tiny):
    vision, _ = tiny
    x = video(3, 4)
    assert vision(x).shape == (3, 128)
    for name in POOLINGS:
        assert vision.forward_layers(x, [-4, -3, -2, -1], pooling=name).shape == (4, 3, 128)
    # a config whose pooled width differs from the token width tells the poolings apart
    cfg = VisionConfig(embed_dim=64, depth=2, num_heads=2, mlp_hidden=128, patch_size=56, clip_embed_dim=48,
                       clip_num_heads=2, layerscale_init=1.0)
    m = InternVideo2Vision(cfg)
    m.init_weights()
    expect = {"attn": 48, "mean": 64, "cls": 64}
    assert set(expect) == set(POOLINGS)
    for name, d in expect.items():
        assert m.forward_layers(x, [-2, -1], pooling=name).shape == (2, 3, d)
        assert m.pooled_dim(name) == d
    with pytest.raises(ValueError, match="unknown pooling"):
        m.forward_layers(x, [-1], pooling="max")
    for bad in (0, 3, -3):
        with pytest.raises(ValueError, match="out of range"):
            m.forward_layers(x, [bad])


def test_last_layer_attn_pool_equals_model_output(tiny):
    vision, _ = tiny
    x = video(2, 4, seed=5)
    out = vision.forward_layers(x, [-1], pooling="attn")[0]
    torch.testing.assert_close(out, vision(x), rtol=0, atol=1e-6)


def test_single_frame_uses_img_pos_embed():
    m = build_vision("tiny", seed=2)
    x1, x4 = video(1, 1, seed=2), video(1, 4, seed=3)
    y1, y4 = m(x1), m(x4)
    assert y1.shape == (1, 128)
    m.img_pos_embed.add_(1.0)
    assert not torch.allclose(m(x1), y1)
    torch.testing.assert_close(m(x4), y4, rtol=0, atol=0)


def test_time_interpolation_of_pos_embed():
    m = build_vision("tiny", seed=4)
    P, D = m.cfg.patches_per_frame, m.cfg.embed_dim
    f = m.pos_embed[0, 1:].reshape(4, P, D)
    table = m.pos_table(8)[0]
    assert table.shape == (1 + 8 * P, D)
    g = table[1:].reshape(8, P, D)
    torch.testing.assert_close(table[0], m.pos_embed[0, 0])  # CLS row untouched
    # linear, align_corners=False: output frame j samples source position (j + 0.5) / 2 - 0.5, clamped
    torch.testing.assert_close(g[0], f[0])
    torch.testing.assert_close(g[1], 0.75 * f[0] + 0.25 * f[1])
    torch.testing.assert_close(g[4], 0.25 * f[1] + 0.75 * f[2])
    torch.testing.assert_close(g[7], f[3])
    assert m(video(2, 8)).shape == (2, 128)
    assert m.forward_layers(video(2, 8), [-2, -1], "attn").shape == (2, 2, 128)


def test_seeded_init_is_deterministic():
    state = torch.random.get_rng_state()
    a, b, c = build_vision("tiny", seed=7), build_vision("tiny", seed=7), build_vision("tiny", seed=8)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is left alone
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.blocks[0].attn.qkv.weight, c.blocks[0].attn.qkv.weight)
    assert a.num_params() == 1_201_920


def test_1b_parameter_count_and_flops():
    cfg = VISION_CONFIGS["1b"]
    with torch.device("meta"):
        m = InternVideo2Vision(cfg)
    # internvideo2.md: 25,248,768 parameters per block, 1.019 B on the inference path
    assert sum(p.numel() for p in m.blocks[0].parameters()) == 25_248_768
    assert len(m.blocks) == 40
    assert m.num_params() == 1_019_628_672
    assert abs(m.num_params() / 1e9 - 1.019) < 1e-3
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes["pos_embed"] == (1, 1025, 1408) and shapes["img_pos_embed"] == (1, 257, 1408)
    assert shapes["blocks.0.attn.qkv.weight"] == (4224, 1408)
    assert shapes["patch_embed.proj.weight"] == (1408, 3, 1, 14, 14)
    assert shapes["clip_projector.cross_attn.proj.weight"] == (768, 1408)
    assert not any(k.startswith(("clip_decoder", "final_clip_decoder", "clip_pos")) for k in shapes)
    # internvideo2.md: 2.315 TFLOP for 4 frames, 5.10 TFLOP for 8 frames
    assert vision_flops_per_clip(cfg, 4) == pytest.approx(2.315e12, rel=0.02)
    assert vision_flops_per_clip(cfg, 8) == pytest.approx(5.10e12, rel=0.02)


def test_autocast_bf16_runs_close_to_fp32(tiny):
    vision, _ = tiny
    x = video(2, 4, seed=9)
    ref = vision(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vision.forward_layers(x, [-2, -1], pooling="attn")
    assert (out[-1].float() - ref).abs().max() <= 0.05 * ref.abs().max()


# -------------------------------------------------------------------------------------- checkpoint
def test_official_layout_round_trip(tiny, good_ckpt):
    vision, text = tiny
    raw = torch.load(good_ckpt, map_location="cpu", weights_only=True)
    assert list(raw) == ["module"]
    assert "vision_encoder.clip_decoder.0.head.weight" in raw["module"]
    assert any(".crossattention." in k for k in raw["module"])
    v2, t2 = load_backbone("tiny", str(good_ckpt))
    x = video(2, 4, seed=11)
    assert torch.equal(v2(x), vision(x))
    assert torch.equal(v2.forward_layers(x, [-2], "mean"), vision.forward_layers(x, [-2], "mean"))
    ids, mask = build_tokenizer("minilm-l6").tokenize(["a dog runs on the beach", "someone opens a door"])
    assert torch.equal(t2(ids, mask, [-4, -1]), text(ids, mask, [-4, -1]))


def test_wrappers_and_safetensors(tiny, tmp_path):
    vision, text = tiny
    flat = tmp_path / "flat.safetensors"
    save_official_layout(vision, text, flat, extra_keys=False)
    sd = load_state_dict(flat)
    nested = tmp_path / "nested.pt"
    torch.save({"model": {"module": sd}, "epoch": 3}, nested)
    sd2 = load_state_dict(nested)
    assert sd2.keys() == sd.keys()
    v2, _ = load_backbone("tiny", str(nested))
    torch.testing.assert_close(v2.pos_embed, vision.pos_embed, rtol=0, atol=0)
    with pytest.raises(CheckpointNotFoundError, match="no such file"):
        load_state_dict(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_state_dict(junk)


def test_pos_embed_stored_for_8_frames_is_interpolated(good_ckpt, tmp_path):
    sd = load_state_dict(good_ckpt)
    P, D = VISION_CONFIGS["tiny"].patches_per_frame, VISION_CONFIGS["tiny"].embed_dim
    pos8 = torch.randn(1, 1 + 8 * P, D, generator=torch.Generator().manual_seed(0))
    sd["vision_encoder.pos_embed"] = pos8
    path = tmp_path / "f8.pt"
    torch.save({"module": sd}, path)
    vision, _ = load_backbone("tiny", str(path))
    # 8 -> 4 with linear, align_corners=False: each output frame is the mean of a pair of stored frames
    grid = pos8[0, 1:].reshape(4, 2, P, D).mean(1).reshape(4 * P, D)
    torch.testing.assert_close(vision.pos_embed[0, 1:], grid)
    torch.testing.assert_close(vision.pos_embed[0, 0], pos8[0, 0])
    assert vision(video(1, 4)).shape == (1, 128)


def test_config_overrides_on_load(tiny, good_ckpt):
    vision, _ = tiny
    v8, _ = load_backbone("tiny", str(good_ckpt), num_frames=8)  # stored 4-frame table resampled to 8
    assert v8.cfg.num_frames == 8 and v8.pos_embed.shape[1] == 1 + 8 * 64
    torch.testing.assert_close(v8.pos_embed, vision.pos_table(8))
    x = video(1, 8, seed=12)
    torch.testing.assert_close(v8(x), vision(x))
    exact, _ = load_backbone("tiny", str(good_ckpt), gelu="exact")
    assert exact.cfg.gelu == "exact" and vision.cfg.gelu == "tanh"
    y, ye = vision(video(1, 4)), exact(video(1, 4))
    assert not torch.equal(y, ye)
    torch.testing.assert_close(ye, y, rtol=0.05, atol=0.05 * y.abs().max().item())


def test_missing_and_misshaped_keys_are_named(good_ckpt, tmp_path):
    sd = load_state_dict(good_ckpt)
    del sd["vision_encoder.blocks.2.attn.q_norm.weight"]
    del sd["text_encoder.bert.encoder.layer.3.output.dense.bias"]
    sd["vision_encoder.clip_projector.cross_attn.proj.weight"] = torch.zeros(64, 128)
    path = tmp_path / "broken.pt"
    torch.save({"module": sd}, path)
    with pytest.raises(CheckpointError) as err:
        load_backbone("tiny", str(path))
    msg = str(err.value)
    assert str(path) in msg
    assert "vision_encoder.blocks.2.attn.q_norm.weight" in msg
    assert "text_encoder.bert.encoder.layer.3.output.dense.bias" in msg
    assert "2 missing" in msg and "1 mis-shaped" in msg
    assert "clip_projector.cross_attn.proj.weight: expected [128, 128], found [64, 128]" in msg


def test_1b_without_checkpoint_is_an_error():
    assert set(BACKBONES) >= {"1b", "tiny"}
    with pytest.raises(CheckpointError, match="checkpoint is required"):
        load_backbone("1b", None)


def test_inspect_checkpoint_cli(good_ckpt, tmp_path):
    cmd = [sys.executable, "-m", "extract", "inspect-checkpoint"]
    ok = subprocess.run(cmd + [str(good_ckpt), "--backbone", "tiny"], cwd=REPO, capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "pos_embed: stored for 4 frames" in ok.stdout
    assert "training-only vision heads" in ok.stdout and "cross-attention" in ok.stdout

    sd = load_state_dict(good_ckpt)
    del sd["vision_encoder.blocks.1.mlp.fc2.weight"]
    broken = tmp_path / "broken.pt"
    torch.save({"module": sd}, broken)
    bad = subprocess.run(cmd + [str(broken), "--backbone", "tiny"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0
    assert "vision_encoder.blocks.1.mlp.fc2.weight" in bad.stderr
    assert "Traceback" not in bad.stderr


# -------------------------------------------------------------------------------------------- text
def test_minilm_config_read_from_package():
    cfg = TEXT_CONFIGS["minilm-l6"]
    assert (cfg.text_layers, cfg.hidden, cfg.heads, cfg.intermediate, cfg.vocab) == (6, 384, 12, 1536, 30522)


def test_minilm_text_encoder_is_pretrained(tiny):
    from transformers import BertModel

    _, text = tiny
    texts = ["A man is playing a guitar.", "A person plays the guitar on stage.",
             "The stock market fell sharply today.", "Someone is slicing onions in a kitchen."]
    ids, mask = build_tokenizer("minilm-l6").tokenize(texts)
    hidden = text(ids, mask, [-1])[0]
    # sentence-transformers recipe (1_Pooling/config.json: mean tokens), then L2 normalisation
    emb = F.normalize((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.5 > sim[0, 2]
    assert sim[0, 1] > sim[0, 3] and sim[0, 1] > sim[1, 2]
    ref = BertModel.from_pretrained(str(minilm_dir()), add_pooling_layer=False, local_files_only=True).eval()
    out = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert torch.equal(hidden, out.last_hidden_state)
    assert torch.equal(text(ids, mask, [2, 5]), torch.stack([out.hidden_states[2], out.hidden_states[5]]))


def test_minilm_load_is_the_same_code_path(tiny):
    _, text = tiny
    sd = minilm_state_dict()
    direct = load_text_encoder("minilm-l6", sd, "")
    assert direct.load_report.keys == 101 and set(direct.load_report.ignored) == {"pooler", "buffers"}
    del sd["encoder.layer.5.intermediate.dense.weight"]
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.5\.intermediate\.dense\.weight"):
        load_text_encoder("minilm-l6", sd, "", source="minilm")


def _bert_layout(cfg, layers: int, cross_from: int, prefix: str, width_video: int) -> dict[str, torch.Tensor]:
    """Official-layout BERT keys (meta tensors): embeddings, `layers` layers, cross-attention from
    `cross_from`, MLM head; shapes written out here independently of transformers."""
    h, i, meta = cfg.hidden, cfg.intermediate, dict(device="meta")
    sd = {f"{prefix}embeddings.word_embeddings.weight": torch.empty(cfg.vocab, h, **meta),
          f"{prefix}embeddings.position_embeddings.weight": torch.empty(cfg.max_positions, h, **meta),
          f"{prefix}embeddings.token_type_embeddings.weight": torch.empty(2, h, **meta),
          f"{prefix}embeddings.LayerNorm.weight": torch.empty(h, **meta),
          f"{prefix}embeddings.LayerNorm.bias": torch.empty(h, **meta),
          f"{prefix}embeddings.position_ids": torch.empty(1, cfg.max_positions, dtype=torch.long, **meta)}
    for n in range(layers):
        base = f"{prefix}encoder.layer.{n}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            sd[base + name + ".weight"], sd[base + name + ".bias"] = torch.empty(h, h, **meta), torch.empty(h, **meta)
        sd[base + "intermediate.dense.weight"], sd[base + "intermediate.dense.bias"] = (
            torch.empty(i, h, **meta), torch.empty(i, **meta))
        sd[base + "output.dense.weight"], sd[base + "output.dense.bias"] = torch.empty(h, i, **meta), torch.empty(h, **meta)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            sd[base + ln + ".weight"], sd[base + ln + ".bias"] = torch.empty(h, **meta), torch.empty(h, **meta)
        if n >= cross_from:
            for part, w in (("query", h), ("key", width_video), ("value", width_video)):
                sd[f"{base}crossattention.self.{part}.weight"] = torch.empty(h, w, **meta)
                sd[f"{base}crossattention.self.{part}.bias"] = torch.empty(h, **meta)
    sd["text_encoder.cls.predictions.bias"] = torch.empty(cfg.vocab, **meta)
    sd["text_encoder.cls.predictions.transform.dense.weight"] = torch.empty(h, h, **meta)
    return sd


def test_bert_large_19_loads_text_only_subset_on_meta():
    # The 1024-d model is built on the meta device (shapes only, no 1 GB allocation, no forward pass).
    cfg = TEXT_CONFIGS["bert-large-19"]
    assert (cfg.text_layers, cfg.total_layers, cfg.hidden, cfg.heads, cfg.intermediate) == (19, 24, 1024, 16, 4096)
    with torch.device("meta"):
        enc = TextEncoder("bert-large-19")
    assert len(enc.bert.encoder.layer) == 19
    per_layer = 4 * (1024 * 1024 + 1024) + 2 * 2 * 1024 + (4096 * 1024 + 4096) + (1024 * 4096 + 1024)
    embeddings = (30522 + 512 + 2) * 1024 + 2 * 1024
    assert sum(p.numel() for p in enc.parameters()) == embeddings + 19 * per_layer

    prefix = "text_encoder.bert."
    sd = _bert_layout(cfg, layers=24, cross_from=19, prefix=prefix, width_video=1408)
    selected, ignored = select_text_keys("bert-large-19", sd, prefix)
    assert all(not k.startswith("encoder.layer.") or int(k.split(".")[2]) < 19 for k in selected)
    assert len(selected) == 5 + 19 * 16
    fusion = ignored["text layers >= 20 (cross-attention fusion)"]
    assert {int(k.split(".")[4]) for k in fusion} == {19, 20, 21, 22, 23}
    assert ignored["buffers"] == [prefix + "embeddings.position_ids"]
    assert not any(k.startswith("text_encoder.cls.") for k in selected)  # outside the prefix: not looked at

    with torch.device("meta"):
        loaded = load_text_encoder("bert-large-19", sd, prefix)
    assert loaded.load_report.keys == 5 + 19 * 16
    assert loaded.load_report.params == embeddings + 19 * per_layer
    del sd[prefix + "encoder.layer.18.attention.self.key.bias"]
    sd[prefix + "embeddings.LayerNorm.weight"] = torch.empty(768, device="meta")
    with pytest.raises(CheckpointError) as err, torch.device("meta"):
        load_text_encoder("bert-large-19", sd, prefix, source="synthetic.pt")
    msg = str(err.value)
    assert "synthetic.pt" in msg and prefix + "encoder.layer.18.attention.self.key.bias" in msg
    assert "embeddings.LayerNorm.weight: expected [1024], found [768]" in msg


# ------------------------------------------------------------------------- loading without copies
RANDOM_OPS = {"aten::normal_", "aten::uniform_", "aten::bernoulli_", "aten::random_", "aten::exponential_",
              "aten::randn", "aten::rand", "aten::normal", "aten::randint"}


def file_mappings(path: Path) -> list[tuple[int, int]]:
    """Address ranges of this process mapped from ``path`` (Linux /proc/self/maps)."""
    real, ranges = str(Path(path).resolve()), []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5] == real:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            ranges.append((lo, hi))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc/self/maps")
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_loaded_weights_are_the_files_memory_mapped_bytes(tiny, tmp_path, suffix):
    # Loading copies nothing: every parameter of both encoders lies inside a mapping of the checkpoint file
    # itself (torch zip files via mmap=True, safetensors via safe_open), so a 1b job's host memory is the model's
    # own size, paged in from the file, not the file read whole plus the modules' own float32 copies.
    path = save_official_layout(*tiny, tmp_path / f"tiny{suffix}")
    vision, text = load_backbone("tiny", str(path))
    ranges = file_mappings(path)
    assert ranges, f"{path} is not memory-mapped"
    outside = [name for module, prefix in ((vision, "vision."), (text, "text."))
               for name, p in module.named_parameters(prefix=prefix.rstrip("."))
               if not any(lo <= p.data_ptr() < hi for lo, hi in ranges)]
    assert not outside, f"{len(outside)} parameters copied out of the file, e.g. {outside[:3]}"
    for loaded, saved in ((vision, tiny[0]), (text, tiny[1])):
        ref = saved.state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())


def test_loading_a_checkpoint_initialises_no_module_randomly(good_ckpt):
    # Modules are built on the meta device and the checkpoint's tensors assigned into them: no random
    # initialisation of a throw-away BERT / vision encoder happens on real memory before the weights arrive.
    from torch.utils._python_dispatch import TorchDispatchMode

    class RandomOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen: list[tuple[str, tuple]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func._schema.name in RANDOM_OPS and isinstance(out, torch.Tensor) and not out.is_meta:
                self.seen.append((func._schema.name, tuple(out.shape)))
            return out

    with RandomOps() as spy:
        vision, text = load_backbone("tiny", str(good_ckpt))
    assert spy.seen == [], f"{len(spy.seen)} random initialisations while loading, e.g. {spy.seen[:3]}"
    assert not any(t.is_meta for m in (vision, text) for t in [*m.parameters(), *m.buffers()])
    emb = text.bert.embeddings  # the buffers no state dict holds
    assert torch.equal(emb.position_ids[0], torch.arange(emb.position_ids.shape[1]))
    assert not emb.token_type_ids.any()


def test_half_precision_checkpoint_is_cast_to_the_model_dtype(tiny, good_ckpt, tmp_path):
    sd = {k: v.half() if v.is_floating_point() else v for k, v in load_state_dict(good_ckpt).items()}
    path = tmp_path / "half.pt"
    torch.save({"module": sd}, path)
    vision, text = load_backbone("tiny", str(path))
    assert {p.dtype for m in (vision, text) for p in m.parameters()} == {torch.float32}
    assert torch.equal(vision.blocks[1].mlp.fc1.weight, tiny[0].blocks[1].mlp.fc1.weight.half().float())
    assert torch.equal(text.bert.encoder.layer[2].output.dense.weight,
                       tiny[1].bert.encoder.layer[2].output.dense.weight.half().float())


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="bench/memory.py measures Linux memory")
def test_half_precision_load_holds_about_the_models_own_memory(tiny, good_ckpt, tmp_path):
    # bench/memory.py in a fresh process: resident memory grows by about the model's float32 size while loading a
    # float16 checkpoint and reading every weight, not by the file read whole + a random BERT + float32 copies
    # (2.5x here before) nor by the float32 copies beside the float16 pages they came from (1.5x).
    import json

    sd = {k: v.half() if v.is_floating_point() else v for k, v in load_state_dict(good_ckpt).items()}
    path = tmp_path / "half.pt"
    torch.save({"module": sd}, path)
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "memory.py"), "--backbone", "tiny",
                           "--checkpoint", str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["model_dtypes"] == ["float32", "int64"]
    assert result["peak_minus_baseline_over_model"] <= 1.25, json.dumps(result)


# ------------------------------------------------------------------------------ not a checkpoint
def test_a_file_that_is_not_a_checkpoint_is_named_in_one_line(good_ckpt, tmp_path):
    import pickle
    import zipfile

    text_file = tmp_path / "notes.pt"
    text_file.write_text("epoch 3: loss 0.41\nepoch 4: loss 0.39\n")
    plain_pickle = tmp_path / "plain.pkl"
    plain_pickle.write_bytes(pickle.dumps({"lr": 1e-4}))
    code_pickle = tmp_path / "code.pt"
    torch.save({"module": {"w": torch.zeros(2)}, "hook": print}, code_pickle)  # a global beyond plain values
    other_zip = tmp_path / "archive.pt"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("readme.txt", "hello")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(Path(good_ckpt).read_bytes()[:5000])
    for path in (text_file, plain_pickle, code_pickle, other_zip, truncated):
        with pytest.raises(CheckpointError) as err:
            load_state_dict(path)
        msg = str(err.value)
        assert msg.startswith(f"checkpoint {path}: ") and "\n" not in msg, msg
        assert "weights_only" not in msg and "Weights only" not in msg, msg
    with pytest.raises(CheckpointError, match=r"notes\.pt: not a checkpoint"):
        load_state_dict(text_file)
    with pytest.raises(CheckpointError, match=r"refused: .*\(print\)"):
        load_state_dict(code_pickle)

    cmd = [sys.executable, "-m", "extract", "inspect-checkpoint", "--backbone", "tiny"]
    for path, says in ((text_file, "not a checkpoint"), (code_pickle, "refused")):
        proc = subprocess.run(cmd + [str(path)], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: checkpoint {path}: ") and says in lines[0], proc.stderr
