"""The Snakemake workflow for real: the demo pipeline end to end, then what re-runs after each change.

The demo run (the session fixture ``demo_workflow`` in conftest.py) generates the demo dataset, extracts
features with the tiny backbone and the real MiniLM text encoder, trains SDST for 2 seeds (the README's demo
has 3; the third would cost a second round of jobs on 2 cores) and evaluates them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, snakemake


def planned(proj: Path, work: Path, target="results/demo/metrics.json") -> dict[str, int]:
    """Jobs a dry run would execute, by rule (empty when there is nothing to do)."""
    out = snakemake(proj, work, "-n", "--cores", "2", target).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("Reasons:")[0]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M))
    jobs.pop("total", None)
    return {k: int(v) for k, v in jobs.items()}


def params_changed(proj: Path, work: Path, target="results/demo/metrics.json") -> set[str]:
    """Rules of the target's finished jobs whose recorded params (code fingerprint, settings) differ now.

    What a dry run plans is not enough: when a checkpoint (extract_summary) must run, Snakemake decides on the jobs
    after it only once it has run, so a dry run leaves out what the real run then re-runs (train and predict after
    an edit of a module both stages import). `--summary` reports every output's own params status."""
    out = snakemake(proj, work, "--summary", "--cores", "2", target).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.count("\t") >= 4]
    return {row[2] for row in rows[1:] if row[-2] == "params changed"}


@pytest.fixture(scope="module")
def demo(demo_workflow):
    return demo_workflow


@contextmanager
def edited_config(work: Path, edit):
    path = work / "config.yaml"
    original = path.read_text()
    cfg = yaml.safe_load(original)
    cfg = edit(cfg) or cfg
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        yield
    finally:
        path.write_text(original)


def test_demo_pipeline_outputs_and_metrics(demo):
    proj, work = demo
    metrics = json.loads((work / "results/demo/metrics.json").read_text())
    m = metrics["metrics"]
    assert metrics["seeds"] == [0, 1] and metrics["headline_split"] == "val"
    # the trained model clearly beats random windows and random saliency
    assert m["MR-full-R1@0.5"]["mean"] >= 50.0, m["MR-full-R1@0.5"]
    assert m["HL-min-VeryGood-Hit1"]["mean"] >= 60.0, m["HL-min-VeryGood-Hit1"]
    base = metrics["random_baseline"]["metrics"]
    assert m["MR-full-R1@0.5"]["mean"] > base["MR-full-R1@0.5"] + 25
    assert m["HL-min-VeryGood-Hit1"]["mean"] > base["HL-min-VeryGood-Hit1"] + 25
    for seed in (0, 1):
        run = work / f"results/demo/sdst/seed{seed}"
        for name in ("checkpoint_best.pt", "train_log.csv", "curves.png", "predictions_val.jsonl",
                     "metrics_val.json", "train.log"):
            assert (run / name).is_file(), run / name
    extraction = json.loads((work / "results/demo/extraction.json").read_text())
    assert extraction["videos"]["failed"] == 0 and extraction["videos"]["total"] == 280
    assert list((work / "logs/extract/demo").glob("*/shard*.log"))  # a log per job


def test_the_command_line_resolves_the_run_the_workflow_trained(demo):
    """`python -m sdst.train --config` resolves the run the workflow trains, the schema's defaults included (Snakemake
    fills them in), so the two share a run identity: one resumes the other's checkpoint_last.pt."""
    from sdst.checkpoint import load_checkpoint
    from sdst.config import load_config, resolve_run, run_identity

    proj, work = demo
    trained = load_checkpoint(work / "results/demo/sdst/seed0/checkpoint_best.pt")["run"]
    assert trained["data"]["splits"]["select_on_reported"] is False  # a schema default, absent from config.yaml
    assert run_identity(resolve_run(load_config(work / "config.yaml"), "demo", "sdst", 0)) == run_identity(trained)


def test_completed_run_has_nothing_to_do(demo):
    assert planned(*demo) == {}


def test_copied_project_reruns_nothing(demo, tmp_path):
    """A finished project copied elsewhere as `cp -a` does (mtimes kept) has nothing to do: the workflow code
    and the working directory each go to a new place of another depth, so no job may depend on where either is."""
    proj, work = demo
    new_proj, new_work = tmp_path / "elsewhere" / "sdst", tmp_path / "runs" / "2025" / "demo"
    shutil.copytree(proj, new_proj, symlinks=True, copy_function=shutil.copy2)
    shutil.copytree(work, new_work, symlinks=True, copy_function=shutil.copy2)
    assert planned(new_proj, new_work) == {}


def test_extract_key_change_reruns_extraction(demo):
    proj, work = demo

    def edit(cfg):
        cfg["extract"]["frames_per_clip"] = 8

    with edited_config(work, edit):
        jobs = planned(proj, work)
    assert jobs.get("extract_shard") == 2 and jobs.get("init_store") == 1 and jobs.get("train") == 2
    assert "demo_data_demo" not in jobs  # the dataset itself is unchanged


@pytest.mark.parametrize("section,edit", [
    ("train", lambda c: c["train"].__setitem__("weight_decay", 2e-4)),
    ("train", lambda c: c["train"]["datasets"]["demo"].__setitem__("epochs", 31)),
    ("model", lambda c: c["model"]["datasets"]["demo"].__setitem__("hidden_dim", 64)),
    ("model", lambda c: c["model"]["variants"]["sdst"].__setitem__("sparse_attention", "deformable_ca")),
])
def test_model_or_train_change_reruns_training_only(demo, section, edit):
    proj, work = demo
    with edited_config(work, edit):
        jobs = planned(proj, work)
    assert jobs.get("train") == 2, jobs
    assert not {"demo_data_demo", "init_store", "extract_shard", "extract_summary"} & set(jobs), jobs


def test_run_settings_and_key_order_rerun_nothing(demo):
    proj, work = demo

    def edit(cfg):
        cfg["extract"]["run"]["batch_clips"] = 7
        cfg["extract"]["run"]["decode_workers"] = 1
        cfg["extract"]["run"]["decode_timeout_s"] = 60
        cfg["train"]["threads"] = 2  # runtime settings of training: how it runs, not what it computes
        cfg["train"]["num_workers"] = 1
        cfg["train"]["eval_batch_size"] = 16
        cfg["train"] = dict(reversed(list(cfg["train"].items())))  # same values, other key order
        cfg["extract"] = dict(reversed(list(cfg["extract"].items())))

    with edited_config(work, edit):
        assert planned(proj, work) == {}


@contextmanager
def edited(proj: Path, rel: str):
    """A real edit of a project file (Snakemake 9 ignores a changed timestamp when the content is the same)."""
    path = proj / rel
    st, text = path.stat(), path.read_text()
    path.write_text(text + "\n# an edit\n")
    try:
        yield
    finally:
        path.write_text(text)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_code_changes_invalidate_the_rules_that_use_them(demo):
    proj, work = demo
    with edited(proj, "extract/decode.py"):  # the shard jobs run again; training follows only if the features change
        jobs = planned(proj, work)
        assert jobs.get("extract_shard") == 2 and "train" not in jobs and "predict" not in jobs, jobs
    with edited(proj, "sdst/losses.py"):
        jobs = planned(proj, work)
        assert jobs.get("train") == 2 and "extract_shard" not in jobs
    with edited(proj, "sdst/model/actionformer.py"):  # another arch's module: SDST's runs stay valid
        assert planned(proj, work) == {}
    # what hand-kept file lists missed (issue 20): the random baseline imports sdst.infer
    with edited(proj, "sdst/infer.py"):
        jobs = planned(proj, work)
        assert jobs.get("random_baseline") == 1 and jobs.get("predict") == 2 and "train" in jobs, jobs
    # read by extraction, training, prediction, evaluation, the baseline and the aggregation (its best-window R1
    # through sdst.metrics)
    with edited(proj, "extract/annotations.py"):
        jobs = planned(proj, work)
        assert jobs.get("extract_shard") == 2 and "predict" not in jobs, jobs  # (see params_changed)
        assert params_changed(proj, work) == {"init_store", "extract_shard", "extract_summary", "train", "predict",
                                              "evaluate_run", "random_baseline", "aggregate_model"}
    os.utime(proj / "extract" / "decode.py")  # a timestamp alone (git checkout, copy) re-runs nothing
    assert planned(proj, work) == {}


def command_modules(shell: str, arch: str = "sdst") -> set[str]:
    """The project modules a job's shell command runs, read from the command Snakemake would run: each
    `python -m sdst.<module>`, and for `python -m extract <command>` the CLI and that command's module
    (extract.__main__.COMMANDS); a job that builds a model adds its arch's registry modules (the demo's `sdst`)."""
    from extract.__main__ import COMMANDS
    from sdst.model import arch_modules

    mods = set()
    for m in re.finditer(r"python -m ([\w.]+)(?: ([\w-]+))?", shell):
        mod, command = m.groups()
        mods |= {"extract.__main__", COMMANDS[command][0]} if mod == "extract" else {mod}
    if mods & {"sdst.train", "sdst.infer", "sdst.diagnose"}:
        mods |= set(arch_modules(arch))
    return mods


def test_each_module_invalidates_exactly_the_rules_that_import_it(demo):
    """Issue 20, point 1: an edit of a project module changes the code fingerprint of exactly the rules whose
    command imports it, directly or not, and of nothing else. The expected rules come from the standard
    library's modulefinder over each job's command (test_imports), not from the workflow's own helper. The
    modules fall into classes of the same expected rules; one module of each class is edited in turn."""
    from collections import defaultdict

    from test_imports import MODULES, found_by_modulefinder

    proj, work = demo
    out = snakemake(proj, work, "--detailed-summary", "--cores", "2", "results/demo/metrics.json").stdout
    rows = [line.split("\t") for line in out.splitlines() if line.count("\t") >= 5]
    rule, shell = rows[0].index("rule"), rows[0].index("shellcmd")
    commands = defaultdict(set)
    for row in rows[1:]:
        commands[row[rule]].add(row[shell])
    imports = {r: set().union(*(found_by_modulefinder(m) for c in cmds for m in command_modules(c)))
               for r, cmds in commands.items()}
    classes = defaultdict(list)
    for module in MODULES:
        classes[frozenset(r for r, mods in imports.items() if module in mods)].append(module)
    assert len(classes) >= 10, classes  # the demo's rules tell most modules apart
    for rules, modules in sorted(classes.items(), key=lambda kv: kv[1][0]):
        path = modules[0].replace(".", "/")
        rel = f"{path}/__init__.py" if (proj / path).is_dir() else f"{path}.py"
        with edited(proj, rel):
            assert params_changed(proj, work) == set(rules), (rel, sorted(rules))


def test_unknown_config_key_is_rejected(tmp_path):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["extract"]["frame_per_clip"] = 4  # typo
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(ROOT, tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "frame_per_clip" in proc.stdout + proc.stderr


def test_default_target_and_lint(tmp_path):
    shutil.copy2(ROOT / "config.yaml", tmp_path / "config.yaml")
    proc = snakemake(ROOT, tmp_path, "-n")
    assert "results/demo/metrics.json" in proc.stdout
    lint = snakemake(ROOT, tmp_path, "--lint", check=False)
    assert "Lints for" not in lint.stdout + lint.stderr, lint.stdout


def test_conda_envs_cover_the_dependencies():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[ ]", d)[0].lower() for d in deps} - {"snakemake"}
    listed = set()
    for env in (ROOT / "envs").glob("*.yaml"):
        spec = yaml.safe_load(env.read_text())
        for dep in spec["dependencies"]:
            items = dep["pip"] if isinstance(dep, dict) else [dep]
            listed |= {re.split(r"[<>=!~\[ ]", d)[0].lower() for d in items}
    assert names <= listed, names - listed


def test_dataset_seeds_report_guard_and_offsets_figures_are_planned(tmp_path):
    """A dataset's own seeds decide its runs and the checkpoints of its diagnostics (every seed's for a report,
    the first seed's figure for rule all); a report builds the offsets figures of its SDST-family models only, and
    refuses a dataset with fewer seeds than its min_seeds."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["train"]["datasets"]["demo"]["seeds"] = [3, 7]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/demo/significance/report.md"
    jobs = planned(ROOT, tmp_path, target)
    assert jobs["train"] == 8 and jobs["diagnose_offsets"] == 4  # 4 models x 2 seeds; sdst and sdst_defca x 2
    assert jobs["diagnose_levels"] == 4  # the SDST family: sdst and sdst_defca, every seed
    out = snakemake(ROOT, tmp_path, "-n", target).stdout
    assert "/seed7/" in out and "/seed0/" not in out
    for seed in (3, 7):
        assert re.search(rf"input: results/demo/sdst_defca/seed{seed}/checkpoint_best.pt, cache/demo/\w+/summary.json\n"
                         rf"\s+output: results/demo/sdst_defca/seed{seed}/diagnose/offsets.png", out)
    out = snakemake(ROOT, tmp_path, "-n", "--cores", "1").stdout  # rule all: the first seed's figures
    figures = re.findall(r"output: (results/demo/\w+/seed\d+/diagnose/offsets.png)", out)
    assert figures and all("/seed3/" in f for f in figures)
    cfg["significance"]["reports"]["results/demo/significance"]["min_seeds"] = 3
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(ROOT, tmp_path, "-n", target, check=False)
    assert proc.returncode != 0
    assert "dataset 'demo' has 2 seeds, the report asks for at least 3" in proc.stdout + proc.stderr
    # a K-sweep line may only name the report's SDST-family models (their levels.json give K)
    cfg["significance"]["reports"]["results/demo/significance"].update(min_seeds=2, k_sweep={"K": ["sdst",
                                                                                                 "actionformer"]})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(ROOT, tmp_path, "-n", target, check=False)
    assert proc.returncode != 0
    assert "k_sweep line 'K' names 'actionformer', which is not an SDST-family model" in proc.stdout + proc.stderr
