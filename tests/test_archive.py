"""The run archive (sdst.archive): a run trained on one machine is restored on another, never when it is stale."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from conftest import ROOT, make_synthetic_cache, snakemake, synthetic_run
from sdst.archive import (FINISHED, TRAIN_OUTPUTS, identity, listing, main, mismatch, piece_code, record, restore,
                          save, unpack)
from sdst.train import code_version, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic cache and a finished 2-epoch run in results/syn/sdst/seed0."""
    base = tmp_path_factory.mktemp("archive")
    syn = make_synthetic_cache(base / "cache", n_train=24, n_val=8)
    run = synthetic_run(syn["annotations"], epochs=2)
    out = base / "results" / "syn" / "sdst" / "seed0"
    train(run, syn["summary"], out, progress=False)
    return syn, run, out


def test_a_finished_run_is_archived_and_restored_byte_for_byte(trained, tmp_path):
    syn, run, out = trained
    entry, kind = save(out, tmp_path / "archive")
    assert (kind, entry) == ("finished", tmp_path / "archive" / "syn" / "sdst" / "seed0")
    assert sorted(p.name for p in entry.iterdir()) == sorted([*FINISHED, "run.json", "train.log"])
    rec = record(entry)
    assert rec["identity"] == identity(run, code_version("sdst"), None)
    assert rec["epochs_trained"] == 2 and rec["machine"]["torch"] == torch.__version__
    restore(entry, tmp_path / "restored")
    for name in TRAIN_OUTPUTS:  # the curves drawn again from the log are the trained run's, byte for byte
        assert (tmp_path / "restored" / name).read_bytes() == (out / name).read_bytes(), name
    assert not list((tmp_path / "restored").glob(".*"))  # no temporary files left behind


def test_restoring_prints_what_the_run_printed_while_it_trained(trained, tmp_path, capsys):
    """The rule's log (the train job's log otherwise) tells the run's history, the lines checkpoint_last.pt
    keeps, then where it was restored from; an entry whose log was damaged is refused naming it."""
    syn, run, out = trained
    entry, _ = save(out, tmp_path / "archive")
    lines = torch.load(out / "checkpoint_last.pt", weights_only=False)["log"]
    assert any(line.startswith("epoch 2/2") for line in lines)
    capsys.readouterr()
    assert main(["restore", str(entry), "--out", str(tmp_path / "restored")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [*lines, f"restored from the run archive: {entry} -> {tmp_path / 'restored'}"]
    (entry / "train.log").write_text("epoch 1/2: edited\n")
    with pytest.raises(ValueError, match="train.log: missing or damaged"):
        restore(entry, tmp_path / "again")


def test_only_the_same_run_configuration_code_and_features_match(trained, tmp_path):
    syn, run, out = trained
    entry, _ = save(out, tmp_path / "archive")
    same = identity(run, code_version("sdst"), None)
    assert mismatch(entry, same) is None
    other_lr = identity({**run, "train": {**run["train"], "lr": 1e-3}}, same["code"], None)
    longer = identity({**run, "train": {**run["train"], "epochs": 3}}, same["code"], None)  # the budget rule
    fewer_threads = identity({**run, "train": {**run["train"], "threads": 2}}, same["code"], None)  # runtime only
    assert mismatch(entry, other_lr) == "archived with another run configuration"
    assert mismatch(entry, longer) == "archived with another run configuration"
    assert mismatch(entry, fewer_threads) is None
    assert mismatch(entry, {**same, "code": "0" * 16}) == "archived with another code"
    assert mismatch(entry, {**same, "features": "ab12"}) == "archived with another features"
    assert mismatch(tmp_path / "archive" / "syn" / "sdst" / "seed1", same) == "not archived"
    (entry / "run.json").write_text("[]")
    assert mismatch(entry, same).startswith(f"{entry / 'run.json'}: not a run archive record")


def test_a_damaged_entry_is_refused_naming_the_file_and_nothing_is_restored(trained, tmp_path):
    syn, run, out = trained
    entry, _ = save(out, tmp_path / "archive")
    log = entry / "train_log.csv"
    log.write_text(log.read_text().replace("1", "2", 1))
    with pytest.raises(ValueError, match=f"{log}: missing or damaged"):
        restore(entry, tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
    (entry / "run.json").write_text("{")
    with pytest.raises(ValueError, match=f"{entry / 'run.json'}: not a run archive record"):
        restore(entry, tmp_path / "restored")


def test_an_unfinished_run_is_archived_as_its_last_checkpoint_and_resumes_where_it_was(trained, tmp_path, capsys):
    """A run cut off after 2 of its 4 epochs (as a job killed at the end of an allocation: only checkpoint_last.pt)
    is archived, unpacked on another machine and resumed: it ends as the uninterrupted 4-epoch run."""
    syn, run, out = trained
    cut = tmp_path / "results" / "syn" / "sdst" / "seed0"
    cut.mkdir(parents=True)
    shutil.copy(out / "checkpoint_last.pt", cut)
    entry, kind = save(cut, tmp_path / "archive")
    assert kind == "partial" and sorted(p.name for p in entry.iterdir()) == ["checkpoint_last.pt", "run.json"]
    assert "unpack it to resume" in mismatch(entry, identity(run, code_version("sdst"), None))

    there = tmp_path / "elsewhere"
    assert unpack(tmp_path / "archive", there) == [there / "syn" / "sdst" / "seed0"]
    assert unpack(tmp_path / "archive", there) == []  # a run folder with its own checkpoint_last.pt is left alone
    four = {**run, "train": {**run["train"], "epochs": 4}}
    capsys.readouterr()
    resumed = train(four, syn["summary"], there / "syn" / "sdst" / "seed0", progress=False)
    assert "resuming from" in capsys.readouterr().err
    fresh = train(four, syn["summary"], tmp_path / "fresh", progress=False)
    assert resumed["epochs_trained"] == 4 and resumed["select_metrics"] == fresh["select_metrics"]
    # finished now: saved again, the entry becomes a finished one
    assert save(there / "syn" / "sdst" / "seed0", tmp_path / "archive")[1] == "finished"
    assert "checkpoint_last.pt" not in {p.name for p in entry.iterdir()}


def test_save_goes_on_past_a_folder_that_is_not_a_run(trained, tmp_path, capsys):
    syn, run, out = trained
    (tmp_path / "empty").mkdir()
    assert main(["save", str(tmp_path / "empty"), str(out), "--to", str(tmp_path / "archive")]) == 2
    said = capsys.readouterr()
    assert f"{tmp_path / 'empty' / 'checkpoint_last.pt'}: not found" in said.err
    assert "(finished)" in said.out and (tmp_path / "archive" / "syn" / "sdst" / "seed0" / "run.json").is_file()
    assert main(["list", str(tmp_path / "archive")]) == 0
    assert capsys.readouterr().out == "syn sdst seed0: finished, 2 epochs, best 2\n"
    (tmp_path / "archive" / "syn" / "sdst" / "seed0" / "train_summary.json").write_text("{}")
    assert main(["list", str(tmp_path / "archive")]) == 2
    assert capsys.readouterr().out.startswith("syn sdst seed0: finished, 2 epochs, best 2; DAMAGED: ")


def test_the_run_records_kept_in_git_are_whole():
    """bench/records (config run_records): every entry a weight-free record of a finished run, every file as saved."""
    lines = listing(ROOT / "bench" / "records")
    assert all(": outputs, " in line and "DAMAGED" not in line for line in lines), lines


def test_the_workflow_restores_an_archived_run_instead_of_training_it_unless_it_is_stale(demo_workflow, tmp_path):
    """On a machine without the run (its folder deleted, no Snakemake metadata), the demo's seed-1 SDST run comes
    from the archive (rule restore_run) and predicts what the trained one predicted; with another learning rate
    in config.yaml the archive is passed over, saying why, and the run is trained."""
    proj, work = demo_workflow
    here = tmp_path / "work"
    here.mkdir()
    for name in ("resources", "cache"):
        shutil.copytree(work / name, here / name, symlinks=True)
    run = "results/demo/sdst/seed1"
    archive = tmp_path / "archive"
    assert main(["save", str(work / run), "--to", str(archive)]) == 0
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["run_archive"] = str(archive)
    (here / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    done = snakemake(proj, here, "--cores", "2", f"{run}/metrics_val.json")
    said = done.stdout + done.stderr
    assert "rule restore_run:" in said and "rule train:" not in said and "extract_shard" not in said, said[-3000:]
    for name in ("metrics_val.json", "predictions_val.jsonl", *TRAIN_OUTPUTS):
        assert (here / run / name).read_bytes() == (work / run / name).read_bytes(), name

    cfg["train"]["datasets"]["demo"]["lr"] = 1e-4
    (here / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    dry = snakemake(proj, here, "-n", f"{run}/metrics_val.json")
    said = dry.stdout + dry.stderr
    assert f"run archive: {archive / 'demo' / 'sdst' / 'seed1'}: archived with another run configuration; " \
           "training the run instead" in said
    assert "rule train:" in said and "rule restore_run:" not in said, said[-3000:]
    assert json.loads((here / run / "metrics_val.json").read_text())  # the restored run's files are still there


def _with_outputs(out, where):
    """A copy of the trained run folder with the files the workflow writes after training (their content does not
    matter to the archive): predictions on val with the two files beside them, and the levels diagnostic."""
    shutil.copytree(out, where)
    for name in ("predictions_val.jsonl", "predictions_val.jsonl.gt.jsonl", "predictions_val.jsonl.info.json"):
        (where / name).write_text(f'{{"made by": "{name}"}}\n')
    (where / "diagnose").mkdir()
    (where / "diagnose" / "levels.json").write_text('{"levels": []}\n')
    return where


def test_a_weight_free_record_keeps_what_the_workflow_reads_and_restores_it_piece_by_piece(trained, tmp_path, capsys):
    syn, run, out = trained
    folder = _with_outputs(out, tmp_path / "run")
    entry, kind = save(folder, tmp_path / "records", outputs=True)
    assert kind == "outputs"
    kept = sorted(str(p.relative_to(entry)) for p in entry.rglob("*") if p.is_file())
    assert kept == sorted(["run.json", "train.log", "train_log.csv", "train_summary.json", "predictions_val.jsonl",
                           "predictions_val.jsonl.gt.jsonl", "predictions_val.jsonl.info.json",
                           "diagnose/levels.json"])  # no weights
    rec = record(entry)
    arch = run["model"]["arch"]
    assert rec["pieces"] == {"train": code_version(arch), "levels": piece_code("sdst.levels", arch),
                             "predictions_val": piece_code("sdst.infer", arch)}
    assert rec["identity"] == identity(run, code_version(arch), None)

    capsys.readouterr()
    assert main(["restore", str(entry), "--piece", "train", "--out", str(tmp_path / "restored")]) == 0
    lines = torch.load(out / "checkpoint_last.pt", weights_only=False)["log"]
    assert capsys.readouterr().out.splitlines() == [
        *lines, f"restored train from the run archive: {entry} -> {tmp_path / 'restored'}"]
    restore(entry, tmp_path / "restored", "predictions_val")
    restore(entry, tmp_path / "restored", "levels")
    for name in (*TRAIN_OUTPUTS[1:], "predictions_val.jsonl", "predictions_val.jsonl.info.json",
                 "diagnose/levels.json"):  # the curves drawn again are the trained run's, byte for byte
        assert (tmp_path / "restored" / name).read_bytes() == (folder / name).read_bytes(), name
    assert not (tmp_path / "restored" / "checkpoint_best.pt").exists()
    assert not list((tmp_path / "restored").rglob(".*"))  # no temporary files left behind
    with pytest.raises(ValueError, match="recorded without its weights"):
        restore(entry, tmp_path / "elsewhere")


def test_a_recorded_piece_stands_only_for_the_same_run_and_the_same_code(trained, tmp_path):
    syn, run, out = trained
    entry, _ = save(_with_outputs(out, tmp_path / "run"), tmp_path / "records", outputs=True)
    same = identity(run, code_version("sdst"), None)
    infer = piece_code("sdst.infer", run["model"]["arch"])
    assert mismatch(entry, same, "predictions_val", infer) is None
    assert mismatch(entry, same, "predictions_val", "0" * 16) == "predictions_val recorded with another code"
    assert mismatch(entry, same, "predictions_test", infer) == "recorded without predictions_test"
    assert mismatch(entry, same, "offsets", piece_code("sdst.diagnose", "sdst")) == "recorded without offsets"
    assert mismatch(entry, {**same, "features": "ab12"}, "predictions_val", infer) == "archived with another features"
    assert mismatch(entry, same) == "recorded without weights"  # never restored as a trained run (restore_run)
    assert mismatch(save(out, tmp_path / "archive")[0], same, "train", code_version("sdst")) == \
        "not a weight-free record"
    (entry / "predictions_val.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="predictions_val.jsonl: missing or damaged"):
        restore(entry, tmp_path / "restored", "predictions_val")
    with pytest.raises(ValueError, match="unknown record piece 'weights'"):
        restore(entry, tmp_path / "restored", "weights")


def test_only_a_finished_run_is_recorded(trained, tmp_path):
    syn, run, out = trained
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(out / "checkpoint_last.pt", cut)
    with pytest.raises(ValueError, match=f"{cut}: the run has not finished"):
        save(cut, tmp_path / "records", outputs=True)
    assert not (tmp_path / "records").exists()


def test_the_workflow_builds_a_models_results_from_weight_free_records_without_training(demo_workflow, tmp_path):
    """On a machine with the features but without the runs, the demo's SDST results (both seeds' metrics, their
    aggregate, the offsets figure) come from the runs' records (rules restore_record_*), equal to the trained
    ones; with another learning rate in config.yaml the records are passed over, saying why, and the runs train."""
    proj, work = demo_workflow
    here = tmp_path / "work"
    here.mkdir()
    for name in ("resources", "cache"):
        shutil.copytree(work / name, here / name, symlinks=True)
    records = tmp_path / "records"
    runs = [f"results/demo/sdst/seed{s}" for s in (0, 1)]
    assert main(["save", *(str(work / r) for r in runs), "--to", str(records), "--outputs"]) == 0
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["run_archive"], cfg["run_records"] = None, str(records)
    (here / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    targets = ["results/demo/sdst/metrics.json", f"{runs[0]}/diagnose/offsets.png"]
    done = snakemake(proj, here, "--cores", "2", *targets)
    said = done.stdout + done.stderr
    for rule in ("restore_record_train", "restore_record_predictions", "restore_record_offsets"):
        assert f"rule {rule}:" in said, said[-3000:]
    for rule in ("train", "predict", "diagnose_offsets", "extract_shard"):
        assert f"rule {rule}:" not in said, said[-3000:]
    for name in ("metrics_val.json", "predictions_val.jsonl", "diagnose/offsets.png", "diagnose/offsets.json",
                 *TRAIN_OUTPUTS[1:]):
        assert (here / runs[0] / name).read_bytes() == (work / runs[0] / name).read_bytes(), name
    made = json.loads((here / targets[0]).read_text())["metrics"]
    assert made == json.loads((work / targets[0]).read_text())["metrics"]
    assert snakemake(proj, here, "-n", *targets).stdout.count("rule ") == 0  # nothing left to do

    cfg["train"]["datasets"]["demo"]["lr"] = 1e-4
    (here / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    dry = snakemake(proj, here, "-n", *targets)
    said = dry.stdout + dry.stderr
    assert f"run archive: {records / 'demo' / 'sdst' / 'seed0'}: archived with another run configuration; " \
           "running the jobs it stands for instead" in said
    assert "rule train:" in said and "rule restore_record_" not in said, said[-3000:]
