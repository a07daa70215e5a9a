"""Bad input ends in one line naming the file (and line) or the config key, exit status 2, and leaves nothing a
re-run would trust (issue 19, second paragraph). Read-only and full disks are real: small tmpfs mounts (the
tests skip where mounting is not allowed)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, snakemake, write_video


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def one_line(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1500:], proc.stderr[-1500:])
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip() and not ln.startswith("Using workflow")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@contextlib.contextmanager
def tmpfs(path, *options):
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_input")
    (base / "videos").mkdir()
    write_video(base / "videos" / "a.mp4", n_frames=30, size=(96, 72))
    (base / "q.txt").write_text("a white bar moves\n")
    return base


def videos_cmd(folder, out, *extra, queries=None):
    return ("-m", "extract", "videos", "--videos", str(folder / "videos"), "--out", str(out), "--backbone", "tiny",
            "--queries", str(queries or folder / "q.txt"), "--no-progress", "--workers", "1", "--device", "cpu",
            *extra)


def test_read_only_out(folder, tmp_path):
    with tmpfs(tmp_path / "ro", "ro", "size=1m") as ro:
        one_line(run(*videos_cmd(folder, ro / "out")), str(ro / "out"), "cannot write the output here",
                 "Read-only file system", "choose another --out")


def test_full_disk_names_the_pack_and_leaves_no_partial_one(folder, tmp_path):
    """The store's metadata fits in 64 KiB, the queries' pack (2 layers... of 384-d tokens) does not."""
    queries = tmp_path / "many.txt"
    queries.write_text("".join(f"query number {i} about a white bar\n" for i in range(60)))
    with tmpfs(tmp_path / "small", "size=64k") as small:
        line = one_line(run(*videos_cmd(folder, small / "out", queries=queries)), "No space left on device",
                        str(small / "out" / "features.zarr" / "packs"), "free space")
        assert "cannot write" in line
        packs = [p for p in (small / "out" / "features.zarr" / "packs").iterdir() if p.is_dir()]
        assert all(p.name.startswith("videos-") for p in packs)  # the video's pack fitted, the queries' one not
        for pack in packs:  # and was removed: every pack left is whole (the next run keeps it)
            assert json.loads((pack / "zarr.json").read_text())["attributes"]["complete"] is True
        assert not (small / "out" / "summary.json").exists()


def test_queries_that_are_a_folder_or_not_utf8(folder, tmp_path):
    one_line(run(*videos_cmd(folder, tmp_path / "o1", queries=tmp_path)), str(tmp_path),
             "--queries takes a file", "not a folder")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("a dog\nun caf\xe9 noir\n".encode("latin-1"))
    one_line(run(*videos_cmd(folder, tmp_path / "o2", queries=bad)), f"{bad}:2: not UTF-8 text", "save the file")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_broken_links_in_the_videos_folder(folder, tmp_path, kind):
    base = tmp_path / "base"
    shutil.copytree(folder, base)
    if kind == "dangling":
        (base / "videos" / "gone.mp4").symlink_to(base / "nowhere.mp4")
        needle = "is a dangling symbolic link"
    else:
        (base / "videos" / "x.mp4").symlink_to(base / "videos" / "y.mp4")
        (base / "videos" / "y.mp4").symlink_to(base / "videos" / "x.mp4")
        needle = "is a loop of symbolic links"
    one_line(run(*videos_cmd(base, tmp_path / "out")), str(base / "videos"), needle, "fix or remove it")
    assert not (tmp_path / "out").exists()


def test_layers_out_of_range_leave_no_store(folder, tmp_path):
    one_line(run(*videos_cmd(folder, tmp_path / "out", "--layers", "-50")), "--layers [-50]", "out of range",
             "the tiny backbone has 4 blocks")
    one_line(run(*videos_cmd(folder, tmp_path / "out", "--layers", "x")), "--layers 'x'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("query", ["", "  ", "?!", "..."])
def test_predict_needs_a_word(folder, query):
    one_line(run("-m", "sdst.predict", "--video", str(folder / "videos" / "a.mp4"), "--query", query,
                 "--checkpoint", "unused.pt"), "--query", "no word to look for")


def _config(tmp_path, edit):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    edit(cfg)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.mark.parametrize("edit,needles", [
    (lambda c: c["extract"].__setitem__("vision_layers", [-50]),
     ["extract.vision_layers [-50]", "the tiny backbone has 4 blocks"]),
    (lambda c: c["train"]["datasets"]["demo"].__setitem__("batch_size", 1),
     ["train.datasets.demo.batch_size 1", "alignment loss", "batch_size >= 2"]),
])
def test_workflow_config_errors_name_the_key_before_any_job(tmp_path, edit, needles):
    _config(tmp_path, edit)
    one_line(snakemake(ROOT, tmp_path, "-n", check=False), "config.yaml", *needles)


def test_unknown_dataset_target_is_one_line(tmp_path):
    _config(tmp_path, lambda c: None)
    one_line(snakemake(ROOT, tmp_path, "-n", "results/nope/metrics.json", check=False),
             "dataset 'nope' is not configured", "config.yaml datasets: demo, demo_hard, qvh")
    assert not os.path.exists(tmp_path / "results")
