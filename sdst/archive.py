"""The run archive: trained runs kept in a folder that outlives the machine that trained them.

A comparison such as demo_hard's (16 models x 5 seeds, about 15 h of two CPU cores) outlasts the machine or the
allocation it runs on. ``save`` copies each run into ``ARCHIVE/{dataset}/{model}/seed{seed}/`` with ``run.json``:
its identity, read from the run's own ``checkpoint_last.pt`` (the run configuration without runtime keys, the
fingerprint of the code that trained it, the digest of the features it was trained on), and the sha256 of every
file kept. What is kept:

- a finished run: the outputs of the workflow's train rule (``FINISHED``; its curves are drawn again from the
  log) and the lines the run printed while it trained (``LOG``, printed again on restore). The rule
  ``restore_run`` (config ``run_archive``) takes them instead of training when the archived identity is the job's
  (``mismatch``); any difference (configuration, budget rule, code, features) trains the run, so an archive is
  never read stale;
- a run still training: its ``checkpoint_last.pt``. ``unpack`` puts it back in the run folder, where the train
  job resumes from it after its own checks (sdst.train.resume_state: same configuration, code and features);
- a finished run's record without its weights (``save --outputs``, kind ``outputs``): what the workflow reads from
  the run after training (``PIECES``: its log and summary, its predictions, its levels and offsets diagnostics), a
  few hundred kB, small enough to keep in git (config ``run_records``). Each piece also records the fingerprint of
  the code that made it (read from the checkout that saves it: save from the checkout that made the run); the rules
  ``restore_record_*`` take a piece instead of running its job when the run's identity and that fingerprint are the
  job's. Without weights nothing else can be made from it (examples,
  another split): those jobs train the run.

    python -m sdst.archive save results/demo_hard/*/seed* --to bench/runs
    python -m sdst.archive save results/demo_hard/*/seed* --to bench/records --outputs
    python -m sdst.archive unpack bench/runs --results results
    python -m sdst.archive list bench/runs
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

from extract.cli import exits_on_bad_input
from extract.sources import whole_hash as sha256  # of every byte
from sdst.sketch import features_close, features_sketch

# what a finished run keeps; restored, they give the train rule's outputs (TRAIN_OUTPUTS: curves.png is drawn again)
FINISHED = ("checkpoint_best.pt", "train_log.csv", "train_summary.json")
TRAIN_OUTPUTS = (*FINISHED, "curves.png")
PARTIAL = ("checkpoint_last.pt",)
RECORD = "run.json"
LOG = "train.log"  # a finished entry's: the lines the run printed (its checkpoint_last.pt keeps them), shown on restore
# what a weight-free record keeps, piece by piece, with the module whose code made the piece (its fingerprint is kept)
PIECES = {
    "train": ("sdst.train", ("train_log.csv", "train_summary.json")),
    "levels": ("sdst.levels", ("diagnose/levels.json",)),
    "offsets": ("sdst.diagnose", ("diagnose/offsets.json", "diagnose/offsets.png")),
}
PREDICTIONS = ("", ".gt.jsonl", ".info.json")  # predictions_{split}.jsonl and the two files sdst.infer writes beside
# a record's sketch of the features its run was trained on (sdst.sketch), so that another machine's extraction of the
# same inputs, which differs slightly from this one's (another features digest), is recognised as such
SKETCH = "features.json"


def piece(name: str) -> tuple[str, tuple[str, ...]]:
    """(module, files) of one piece of a weight-free record: a key of PIECES or ``predictions_{split}``."""
    if name.startswith("predictions_"):
        return "sdst.infer", tuple(f"{name}.jsonl{x}" for x in PREDICTIONS)
    if name not in PIECES:
        raise ValueError(f"unknown record piece '{name}' (one of {', '.join(PIECES)}, predictions_<split>)")
    return PIECES[name]


def piece_code(module: str, arch: str) -> str:
    """The fingerprint the workflow gives a job running ``module`` for a model of ``arch`` (its ``arch_code``)."""
    from extract.imports import fingerprint
    from sdst.config import PROJECT_ROOT, code_files

    return fingerprint(code_files([module], arch), PROJECT_ROOT)


def machine() -> dict:
    """Where the run was saved (provenance only, never compared: the features digest is what says whether two
    machines' features agree)."""
    import platform

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), None)
    return {"cpu": cpu or platform.machine(), "torch": torch.__version__, "python": platform.python_version()}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def identity(run: dict, code: str, features: str | None) -> dict:
    """What decides a run's results: the same three values the train rule's params hold (run, code, features)."""
    from extract.cache import canonical_json
    from sdst.config import run_identity

    return {"run": canonical_json(run_identity(run)), "code": code, "features": features}


def _state(run_dir: Path) -> dict:
    from sdst.checkpoint import load_checkpoint

    last = run_dir / "checkpoint_last.pt"
    if not last.is_file():
        raise FileNotFoundError(f"{last}: not found; only a run folder of sdst.train (results/<dataset>/<model>/"
                                "seed<n>) can be archived")
    return load_checkpoint(last)


def finished(run_dir: Path, state: dict) -> bool:
    """Whether the run folder holds a finished run: every train output, and a summary of the epochs and best epoch
    that checkpoint_last.pt holds (not the summary of an earlier run in the same folder)."""
    if not all((run_dir / f).is_file() for f in FINISHED):
        return False
    summary = json.loads((run_dir / "train_summary.json").read_text())
    return (summary.get("epochs_trained") == len(state["history"])
            and summary.get("best_epoch") == state["best"]["epoch"])


def _record_files(run_dir: Path) -> dict[str, list[str]]:
    """The pieces a finished run folder holds (a weight-free record's files), by piece name."""
    found = {}
    for name in (*PIECES, *sorted(p.name[:-len(".jsonl")] for p in run_dir.glob("predictions_*.jsonl"))):
        files = piece(name)[1]
        if all((run_dir / f).is_file() for f in files):
            found[name] = list(files)
    return found


def save(run_dir: str | Path, archive: str | Path, outputs: bool = False,
         features: str | Path | None = None) -> tuple[Path, str]:
    """Archive one run folder: (its archive folder, "finished", "partial" or "outputs"). The entry is written
    beside and renamed into place, so an interrupted save leaves the previous entry (or none), never half of one.
    ``features``: the extraction summary the run was trained on; a record keeps its sketch (features_sketch)."""
    run_dir = Path(run_dir)
    state = _state(run_dir)
    run = state["run"]
    dest = Path(archive, run["data"]["name"], run["model"]["name"], f"seed{run['seed']}")
    kind = "finished" if finished(run_dir, state) else "partial"
    extra = {}
    if outputs:
        if kind != "finished":
            raise ValueError(f"{run_dir}: the run has not finished; only a finished run's outputs are recorded")
        pieces = _record_files(run_dir)
        kind, files = "outputs", [f for names in pieces.values() for f in names]
        extra["pieces"] = {name: piece_code(piece(name)[0], run["model"]["arch"]) for name in pieces}
        if features is not None:
            digest = json.loads(Path(features).read_text()).get("features_digest")
            if digest != state.get("features"):
                raise ValueError(f"{features}: features digest {digest}, but {run_dir} was trained on "
                                 f"{state.get('features')}; name the summary of the features it was trained on")
    else:
        files = FINISHED if kind == "finished" else PARTIAL
    tmp = dest.with_name(dest.name + ".saving")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in files:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / name, tmp / name)
    if kind != "partial":
        (tmp / LOG).write_text("".join(f"{line}\n" for line in state.get("log", [])))
        files = (*files, LOG)
    if kind == "outputs" and features is not None:
        (tmp / SKETCH).write_text(json.dumps(features_sketch(features), separators=(",", ":")) + "\n")
        files = (*files, SKETCH)
    record = {"identity": identity(run, state["code"], state.get("features")), "kind": kind,
              "epochs_trained": len(state["history"]), "best_epoch": state["best"]["epoch"], **extra,
              "files": {name: sha256(tmp / name) for name in files}, "machine": machine()}
    (tmp / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest, kind


def record(entry: str | Path) -> dict:
    path = Path(entry, RECORD)
    try:
        rec = json.loads(path.read_text())
        rec["identity"], rec["kind"], rec["files"]  # noqa: B018 - the keys every entry has
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a run archive record ({err.__class__.__name__}: {err})") from None
    return rec


def mismatch(entry: str | Path, ident: dict, piece_name: str | None = None, code: str | None = None,
             sketch=None) -> str | None:
    """Why the archived finished run in ``entry`` cannot stand for a run of identity ``ident`` (None: it can); with
    ``piece_name``, why the entry's record of that piece (made by code of fingerprint ``code``) cannot stand for the
    job that makes it. ``sketch``: a function giving this machine's features_sketch, asked for only when a record
    with a sketch differs in the features digest alone; sketches within SKETCH_RTOL are the same features."""
    entry = Path(entry)
    if not (entry / RECORD).is_file():
        return "not archived"
    try:
        rec = record(entry)
    except ValueError as err:  # a damaged record costs this run its restore, not the whole workflow
        return str(err)
    if piece_name is None and rec["kind"] != "finished":
        return (f"archived unfinished ({rec['epochs_trained']} epochs): unpack it to resume" if rec["kind"] == "partial"
                else "recorded without weights")
    if piece_name is not None and rec["kind"] != "outputs":
        return "not a weight-free record"
    differ = [k for k in ("run", "code", "features") if rec["identity"].get(k) != ident[k]]
    if differ == ["features"] and sketch is not None and same_features(entry, rec, sketch):
        differ = []
    names = {"run": "run configuration", "code": "code", "features": "features"}
    if differ:
        return f"archived with another {' and '.join(names[k] for k in differ)}"
    if piece_name is not None and piece_name not in rec.get("pieces", {}):
        return f"recorded without {piece_name}"
    if piece_name is not None and rec["pieces"][piece_name] != code:
        return f"{piece_name} recorded with another code"
    return None


def same_features(entry: Path, rec: dict, sketch) -> bool:
    """Whether the record's sketch of its features and this machine's (``sketch()``) are of the same features."""
    if SKETCH not in rec["files"]:
        return False
    try:
        _check(entry, [SKETCH], rec)
    except ValueError:
        return False
    return features_close(json.loads((entry / SKETCH).read_text()), sketch())


def _check(entry: Path, names, rec: dict) -> None:
    """Each of the entry's files against its recorded sha256: a damaged archive is refused naming the file, never
    read as data."""
    for name in names:
        src = entry / name
        if not src.is_file() or sha256(src) != rec["files"].get(name):
            raise ValueError(f"{src}: missing or damaged (its sha256 differs from {entry / RECORD}); "
                             "save the run again or delete the entry to train it")


def _copy_checked(entry: Path, names, out: Path, rec: dict) -> None:
    """Copy the entry's files into ``out``, each checked first (_check); each file lands whole (temporary name,
    then rename)."""
    _check(entry, names, rec)
    for name in names:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        tmp = (out / name).with_name(f".{Path(name).name}.restoring")
        shutil.copyfile(entry / name, tmp)
        os.replace(tmp, out / name)


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_log(path: Path) -> list[dict]:
    """train_log.csv back into the run's history: one dict per epoch, the numbers as written (Python writes a float
    so that it reads back equal), an empty cell as None (a metric without moments of its length range)."""
    with open(path, newline="") as fh:
        return [{k: None if v == "" else _number(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def restore(entry: str | Path, out: str | Path, piece_name: str | None = None) -> str:
    """A finished run's train outputs from the archive into its run folder (rule restore_run), or with
    ``piece_name`` one piece of a weight-free record (rules restore_record_*). curves.png is drawn again from
    train_log.csv as sdst.train draws it (not kept: it is a third of an entry's size). Returns what the run printed
    while it trained (for the train outputs; empty for an entry saved without it), which the CLI prints, so that
    the rule's log, the train job's log otherwise, tells the run's history."""
    from sdst.reporting.plots import plot_curves

    entry, out = Path(entry), Path(out)
    rec = record(entry)
    if piece_name is None and rec["kind"] != "finished":
        raise ValueError(f"{entry / RECORD}: the archived run is unfinished; `python -m sdst.archive unpack` "
                         "lets its train job resume" if rec["kind"] == "partial" else
                         f"{entry / RECORD}: the run is recorded without its weights (restore one piece of it)")
    if piece_name is not None and rec["kind"] != "outputs":
        raise ValueError(f"{entry / RECORD}: not a weight-free record (python -m sdst.archive save --outputs)")
    _copy_checked(entry, FINISHED if piece_name is None else piece(piece_name)[1], out, rec)
    if piece_name not in (None, "train"):
        return ""
    run = json.loads(rec["identity"]["run"])
    tmp = out / ".curves.restoring.png"
    plot_curves(read_log(out / "train_log.csv"), tmp,
                title=f"{run['model']['name']} on {run['data']['name']}, seed {run['seed']}",
                select_metrics=run["train"]["select_metrics"])
    os.replace(tmp, out / "curves.png")
    if LOG not in rec["files"]:
        return ""
    _check(entry, [LOG], rec)
    return (entry / LOG).read_text()


def unpack(archive: str | Path, results: str | Path) -> list[Path]:
    """Every unfinished run of the archive back into ``results/{dataset}/{model}/seed{seed}/checkpoint_last.pt``,
    unless that folder already holds a checkpoint_last.pt (a run that went on here is never rolled back)."""
    placed = []
    for path in sorted(Path(archive).glob(f"*/*/seed*/{RECORD}")):
        entry = path.parent
        rec = record(entry)
        if rec["kind"] != "partial":
            continue
        out = Path(results, *entry.parts[-3:])
        if (out / "checkpoint_last.pt").exists():
            continue
        _copy_checked(entry, PARTIAL, out, rec)
        placed.append(out)
    return placed


def listing(archive: str | Path) -> list[str]:
    """One line per entry: dataset, model, seed, its kind, epochs trained, best epoch, the features digest it was
    trained on; and what is damaged, if a file's sha256 differs from its record's."""
    lines = []
    for path in sorted(Path(archive).glob(f"*/*/seed*/{RECORD}")):
        rec = record(path.parent)
        dataset, model, seed = path.parent.parts[-3:]
        try:
            _check(path.parent, rec["files"], rec)
            damage = ""
        except ValueError as err:
            damage = f"; DAMAGED: {err}"
        features = rec["identity"].get("features")  # which extraction it was trained on (None: a synthetic store)
        lines.append(f"{dataset} {model} {seed}: {rec['kind']}, {rec['epochs_trained']} epochs, best "
                     f"{rec['best_epoch']}{f', features {features}' if features else ''}{damage}")
    return lines


@exits_on_bad_input
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdst.archive", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="archive run folders (finished: train outputs; unfinished: checkpoint_last.pt)")
    s.add_argument("runs", nargs="+", help="run folders, results/<dataset>/<model>/seed<n>")
    s.add_argument("--to", required=True,
                   help="archive folder (config.yaml run_archive, or run_records with --outputs)")
    s.add_argument("--outputs", action="store_true",
                   help="record a finished run's outputs without its weights (PIECES; small enough for git)")
    s.add_argument("--features", help="with --outputs: the extraction summary the runs were trained on; the record "
                                      "keeps a sketch of those features, to recognise another machine's extraction")
    r = sub.add_parser("restore", help="a finished run's train outputs into its run folder (rule restore_run)")
    r.add_argument("entry", help="archive entry, ARCHIVE/<dataset>/<model>/seed<n>")
    r.add_argument("--out", required=True, help="run folder")
    r.add_argument("--piece", help="one piece of a weight-free record (rules restore_record_*)")
    u = sub.add_parser("unpack", help="unfinished runs back into their run folders, to resume")
    u.add_argument("archive")
    u.add_argument("--results", default="results")
    ls = sub.add_parser("list", help="what the archive holds, one run per line, each file checked (exit 2: damaged)")
    ls.add_argument("archive")
    args = p.parse_args(argv)
    if args.command == "list":
        lines = listing(args.archive)
        print("\n".join(lines))
        return 2 if any("; DAMAGED: " in line for line in lines) else 0
    if args.command == "save":
        rc = 0
        for run_dir in args.runs:  # one bad folder (a run that never started) loses none of the others
            try:
                dest, kind = save(run_dir, args.to, outputs=args.outputs, features=args.features)
                print(f"{run_dir} -> {dest} ({kind})")
            except (ValueError, OSError) as err:
                print(f"error: {err}", file=sys.stderr)
                rc = 2
        return rc
    if args.command == "restore":
        print(restore(args.entry, args.out, args.piece), end="")
        what = f"{args.piece} " if args.piece else ""
        print(f"restored {what}from the run archive: {args.entry} -> {args.out}")
    else:
        for out in unpack(args.archive, args.results):
            print(f"resumable: {out}/checkpoint_last.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
