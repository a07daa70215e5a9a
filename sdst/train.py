"""Training (§A, Tab. A): AdamW, linear warmup then step decay, gradient clipping, mixed precision on GPU.

``python -m sdst.train --run RUN_JSON --features SUMMARY --out DIR`` (what Snakemake calls), or
``python -m sdst.train --config config.yaml --dataset demo --model sdst --seed 0 --features ... --out ...``.

The run directory gets ``checkpoint_last.pt`` (every epoch; a killed run resumes from it and ends exactly
as an uninterrupted one: the shuffling order is a function of (seed, epoch) and every RNG state is saved),
``checkpoint_best.pt`` (best epoch on the *selection* split, never a reported split), ``train_log.csv``
(one row per epoch: losses, learning rate, it/s, selection metrics), ``curves.png`` and
``train_summary.json``. What the run prints on stderr is kept in ``checkpoint_last.pt`` too and printed again
first when it resumes, so the log of a resumed run (the workflow's ``train.log``) holds the whole history.
A run asked for a longer budget (more ``epochs``, a longer ``patience``) continues from its checkpoint_last.pt too.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from extract.devices import resolve_device
from extract.cache import canonical_json
from sdst.checkpoint import load_checkpoint, save_checkpoint
from extract.cli import exits_on_bad_input
from sdst.config import (TRAIN_BUDGET_KEYS, LossConfig, MatcherConfig, check_layers_held, load_config, parse_set,
                         ranks_by_actionness, resolve_run, run_identity, with_runtime)
from sdst.data import FeatureDataset, batch_to, cache_info, collate, query_record, split_queries
from sdst.evaluate import evaluate
from sdst.infer import autocast_for, predict_records
from sdst.model import build_criterion, build_model, project_parameters


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG state as tensors and plain values (checkpoints load with weights_only=True): numpy's MT19937
    state (name, 624 uint32 keys, pos, has_gauss, cached_gaussian) with its keys as a list of ints."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_factor(iteration: int, epoch: int, t: dict) -> float:
    """Linear warmup from warmup_ratio over warmup_iters iterations, times step decay per epoch (§A)."""
    warm = 1.0
    if t["warmup_iters"] > 0 and iteration < t["warmup_iters"]:
        warm = t["warmup_ratio"] + (1 - t["warmup_ratio"]) * iteration / t["warmup_iters"]
    return warm * t["lr_gamma"] ** (epoch // t["lr_step"])


def fit_input_norms(model, dataset: FeatureDataset) -> None:
    """Standardisation statistics of the cached inputs over the training split (see InputNorm)."""
    if hasattr(model, "video_norm"):
        model.video_norm.fit(dataset.video_array(v) for v in dataset.videos())
    if hasattr(model, "text_norm"):
        model.text_norm.fit(dataset.query_array(q.key) for q in dataset.items)


def code_version(arch: str) -> str:
    """Fingerprint of the sources training the arch runs (sdst.config.code_files, the workflow's own): a run
    resumes only if started by the same code; a code change re-runs the job from scratch, an interrupted job
    resumes."""
    from extract.imports import fingerprint
    from sdst.config import PROJECT_ROOT, code_files

    return fingerprint(code_files(["sdst.train"], arch), PROJECT_ROOT)


def write_log(path: Path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)


class RunLog:
    """What the run prints (stderr), also kept in checkpoint_last.pt. A resumed run prints the earlier lines
    first, so its log holds the whole history although the workflow's train.log starts empty on every job
    (Snakemake deletes a job's log before it runs, and the rule writes it with `>`); a fresh run's log holds
    only its own lines."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        print(line, file=sys.stderr, flush=True)


NO_BEST = {"score": -math.inf, "epoch": 0}  # before the first epoch (which always trains)


def stops_before(epoch: int, best: dict, t: dict) -> bool:
    """The budget rule: epoch ``epoch`` (0-based) is not trained past ``epochs``, nor once ``patience`` epochs (if
    set) have brought no better selection score than ``best``'s (1-based epoch)."""
    patience = t.get("patience", 0)
    return epoch >= t["epochs"] or bool(patience and epoch - best["epoch"] >= patience)


def trains_through(history: list[dict], t: dict) -> bool:
    """Whether the budget rule of ``t`` trains every epoch of ``history`` (the rows of a run, each with its
    select_score), given the scores it would have seen: a run that differs from it only in that rule computes the
    same epochs, so it may resume after them (a longer patience continues a stopped run) and ends as it would from
    scratch."""
    best = NO_BEST
    for epoch, row in enumerate(history):
        if stops_before(epoch, best, t):
            return False
        if row["select_score"] > best["score"]:
            best = {"score": row["select_score"], "epoch": epoch + 1}
    return True


def resume_state(path: Path, run: dict, version: str, log: RunLog, extraction: dict | None = None,
                 features: str | None = None) -> dict | None:
    """checkpoint_last.pt's contents if this run may resume from it, else None (with the reason in the log):
    same run configuration (its budget rule aside, if that rule trains every epoch the checkpoint holds), code and
    features (``extraction``: the cache's identity; ``features``: the extraction's features digest, which changes
    when an item is re-extracted, e.g. from a regenerated video)."""
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path)
    except ValueError as err:  # unreadable, or refused as unsafe (sdst.checkpoint): never unpickled
        log(f"{err}; starting afresh")
        return None
    if (canonical_json(run_identity(state["run"], budget=False)) != canonical_json(run_identity(run, budget=False))
            or state.get("code") != version):
        log(f"{path}: written by another configuration or code version; starting afresh")
        return None
    if canonical_json(state.get("dims", {}).get("extraction")) != canonical_json(extraction):
        log(f"{path}: trained on features of another extraction; starting afresh")
        return None
    if state.get("features", features) != features:  # checkpoints older than the digest have none
        log(f"{path}: trained on other features (an item was re-extracted since); starting afresh")
        return None
    t, was = run["train"], state["run"]["train"]
    if any(t.get(k) != was.get(k) for k in TRAIN_BUDGET_KEYS):
        rule = f"{t['epochs']} epochs, patience {t.get('patience', 0)}"
        if not trains_through(state["history"], t):
            log(f"{path}: trained past where this run's budget rule ({rule}) stops; starting afresh")
            return None
        log(f"{path}: same run under another budget rule ({rule}), which trains all its {len(state['history'])} "
            "epochs")
    for line in state.get("log", []):  # the history so far, then this run's lines
        log(line)
    log(f"resuming from {path} after epoch {state['epoch'] + 1}")
    return state


@dataclass
class Session:
    """What one training run holds while it runs (built by :func:`_prepare`)."""

    run: dict
    out_dir: Path
    log: RunLog
    version: str
    info: object  # sdst.data.CacheInfo
    device: str
    train_ds: FeatureDataset
    select_ds: FeatureDataset
    select_gt: list
    dims: dict
    model: torch.nn.Module
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    use_amp: bool

    @property
    def t(self) -> dict:
        return self.run["train"]


def _prepare(run: dict, out_dir: Path, log: RunLog, version: str, info) -> Session:
    """Data, model, loss and optimiser of a run, in the order that fixes its random numbers (seed first)."""
    t, data, seed = run["train"], run["data"], run["seed"]
    if t["threads"]:
        torch.set_num_threads(t["threads"])
    device = resolve_device(t["device"])
    splits = split_queries(data)
    make = lambda qs, min_clips: FeatureDataset(  # noqa: E731
        qs, info.store, data["clip_len"], data["saliency"], min_clips=min_clips, preload=t["preload"],
        failed=info.failed, failed_queries=info.failed_queries)
    train_ds, select_ds = make(splits["train"], t["min_clips"]), make(splits["select"], 0)
    if len(train_ds) == 0 or len(select_ds) == 0:
        raise ValueError(f"no training ({len(train_ds)}) or selection ({len(select_ds)}) queries with features; "
                         f"skipped: train {train_ds.skipped}, select {select_ds.skipped}")
    dims = {"video": info.video_dim, "text": info.text_dim, "layers": info.layers, "extraction": info.identity}
    check_layers_held(run, info.layers, info.text_layers or info.layers, f"the store {info.store}")
    seed_everything(seed)
    model = build_model(run["model"]["arch"], run["model"]["params"], dims["video"], dims["text"], dims["layers"])
    fit_input_norms(model, train_ds)
    model.to(device)
    criterion = build_criterion(run["model"]["arch"], LossConfig(**t["loss"]), MatcherConfig(**t.get("matcher", {})))
    optimizer = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    use_amp = device.startswith("cuda") and t["amp"]
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    return Session(run, out_dir, log, version, info, device, train_ds, select_ds,
                   [query_record(q) for q in select_ds.items], dims, model, criterion, optimizer, scaler, use_amp)


def _train_epoch(s: Session, epoch: int, iteration: int, progress: bool) -> tuple[dict, int]:
    """One pass over the training split -> (log row: losses, lr, it/s, peak memory; iteration count after it)."""
    from tqdm import tqdm

    t, model = s.t, s.model
    model.train()
    gen = torch.Generator().manual_seed(s.run["seed"] * 100_003 + epoch)
    loader = torch.utils.data.DataLoader(s.train_ds, batch_size=t["batch_size"], shuffle=True, generator=gen,
                                         collate_fn=collate, num_workers=t["num_workers"], persistent_workers=False)
    sums: dict[str, torch.Tensor] = {}
    n_iter, t0, lr = 0, time.perf_counter(), t["lr"]
    if s.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{t['epochs']}", disable=not progress, leave=False,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    for batch in bar:
        lr = t["lr"] * lr_factor(iteration, epoch, t)
        for group in s.optimizer.param_groups:
            group["lr"] = lr
        batch = batch_to(batch, s.device)
        with autocast_for(s.device, s.use_amp):
            out = model(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"])
        losses = s.criterion(out, batch)
        s.optimizer.zero_grad(set_to_none=True)
        s.scaler.scale(losses["loss"]).backward()
        s.scaler.unscale_(s.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip_grad"])
        s.scaler.step(s.optimizer)
        s.scaler.update()
        project_parameters(model)  # e.g. SDST's β back onto [0, 1] (Eq. 3)
        for k, v in losses.items():  # summed on the device: no host sync per iteration
            sums[k] = sums.get(k, 0.0) + v.detach().float()
        n_iter += 1
        iteration += 1
        if n_iter % 20 == 1:
            bar.set_postfix(loss=f"{float(losses['loss'].detach()):.3f}", refresh=False)
    train_s = time.perf_counter() - t0
    row = {"epoch": epoch + 1, "iterations": iteration, "lr": lr, "it_per_s": n_iter / train_s,
           **{f"train_{k}": float(v) / max(n_iter, 1) for k, v in sorted(sums.items()) if not k.startswith("aux")}}
    if s.device.startswith("cuda"):
        row["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return row, iteration


def _select(s: Session) -> tuple[dict, float]:
    """Metrics on the selection split and the selection score (the sum of ``select_metrics``)."""
    t = s.t
    records = predict_records(s.model, s.select_ds, s.run["data"]["clip_len"], t["eval_batch_size"], s.device,
                              t["nms_sigma"], t["amp"], use_actionness=ranks_by_actionness(t))
    metrics = evaluate(records, s.select_gt, s.run["data"]["eval_type"])["brief"]
    return metrics, sum(metrics[m] for m in t["select_metrics"])


def _finish(s: Session, history: list[dict], best: dict, best_state: dict | None) -> dict:
    """Best checkpoint, log, curves and summary: written even when nothing was left to train (a job re-run over a
    finished run resumes after the last epoch and must still produce the outputs Snakemake deleted)."""
    from sdst.reporting.plots import plot_curves

    if best_state is None:
        raise RuntimeError("no epoch was trained (epochs = 0?)")
    t, run = s.t, s.run
    write_log(s.out_dir / "train_log.csv", history)
    save_checkpoint(s.out_dir / "checkpoint_best.pt", {"run": run, "dims": s.dims, "model": best_state,
                                                       "epoch": best["epoch"], "metrics": best.get("metrics"),
                                                       "code": s.version})
    plot_curves(history, s.out_dir / "curves.png",
                title=f"{run['model']['name']} on {run['data']['name']}, seed {run['seed']}",
                select_metrics=t["select_metrics"])
    summary = {"best_epoch": best["epoch"], "best_select_score": best["score"], "select_metrics": best.get("metrics"),
               "epochs": t["epochs"], "epochs_trained": len(history), "parameters": s.model.num_params(),
               "mean_it_per_s": float(np.mean([r["it_per_s"] for r in history])) if history else None,
               "train_queries": len(s.train_ds), "select_queries": len(s.select_ds),
               "skipped_train": s.train_ds.skipped, "device": s.device}
    if any("peak_mem_gb" in r for r in history):
        summary["peak_mem_gb"] = max(r.get("peak_mem_gb", 0.0) for r in history)
    (s.out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def train(run: dict, features: str, out_dir: str | Path, progress: bool = True) -> dict:
    """Train one run to its epoch budget (or its patience), resuming from ``checkpoint_last.pt`` when it may."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t, last_path = run["train"], out_dir / "checkpoint_last.pt"
    version = code_version(run["model"]["arch"])
    log = RunLog()
    info = cache_info(features)
    state = resume_state(last_path, run, version, log, info.identity, info.digest)
    s = _prepare(run, out_dir, log, version, info)
    start_epoch, iteration, history, best, best_state = 0, 0, [], NO_BEST, None
    if state is not None:
        s.model.load_state_dict(state["model"])
        s.optimizer.load_state_dict(state["optimizer"])
        s.scaler.load_state_dict(state["scaler"])
        start_epoch, iteration = state["epoch"] + 1, state["iteration"]
        history, best, best_state = state["history"], state["best"], state["best_model"]
        set_rng_state(state["rng"])
        state = None  # free the loaded copies

    log(f"{run['model']['name']} ({run['model']['arch']}) on {run['data']['name']}, seed {run['seed']}: "
        f"{s.model.num_params():,} parameters, {len(s.train_ds)} train / {len(s.select_ds)} selection queries, "
        f"device {s.device}")
    for epoch in range(start_epoch, t["epochs"]):
        if stops_before(epoch, best, t):  # checked first, so a resumed run stops where it did
            log(f"stopping after epoch {epoch}: no better selection score for {t['patience']} epochs "
                f"(best {best['score']:.2f} @ {best['epoch']})")
            break
        row, iteration = _train_epoch(s, epoch, iteration, progress)
        metrics, score = _select(s)
        row.update({f"select_{k}": v for k, v in metrics.items()}, select_score=score)
        history.append(row)
        if score > best["score"]:
            best = {"score": score, "epoch": epoch + 1, "metrics": metrics}
            best_state = {k: v.detach().cpu().clone() for k, v in s.model.state_dict().items()}
        log(f"epoch {epoch + 1}/{t['epochs']}: loss {row.get('train_loss', float('nan')):.4f}, "
            f"{row['it_per_s']:.2f} it/s, select score {score:.2f} (best {best['score']:.2f} @ {best['epoch']})")
        # the last checkpoint also holds the best weights: Snakemake deletes a job's outputs (the best
        # checkpoint) before re-running it, and a resumed run must still be able to write them
        save_checkpoint(last_path, {"run": run, "dims": s.dims, "model": s.model.state_dict(), "code": version,
                                    "features": info.digest, "optimizer": s.optimizer.state_dict(),
                                    "scaler": s.scaler.state_dict(),
                                    "epoch": epoch, "iteration": iteration, "history": history, "best": best,
                                    "best_model": best_state, "rng": rng_state(), "log": log.lines})
        write_log(out_dir / "train_log.csv", history)
    return _finish(s, history, best, best_state)


@exits_on_bad_input
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdst.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="resolved run configuration (JSON string, or @file)")
    p.add_argument("--config", help="config.yaml (with --dataset/--model/--seed instead of --run)")
    p.add_argument("--dataset")
    p.add_argument("--model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--features", required=True, help="extraction summary.json of the dataset's cache")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--no-progress", action="store_true")
    runtime = p.add_argument_group("runtime (how the run executes; never changes its results' identity)")
    runtime.add_argument("--device", default=None)
    runtime.add_argument("--threads", type=int, default=None)
    runtime.add_argument("--num-workers", type=int, default=None)
    runtime.add_argument("--eval-batch-size", type=int, default=None)
    runtime.add_argument("--preload", type=int, choices=[0, 1], default=None, help="1: read the cache into RAM")
    args = p.parse_args(argv)
    if args.run:
        text = Path(args.run[1:]).read_text() if args.run.startswith("@") else args.run
        run = json.loads(text)
    elif args.config and args.dataset and args.model:
        run = resolve_run(load_config(args.config), args.dataset, args.model, args.seed, parse_set(args.set))
    else:
        p.error("give --run, or --config with --dataset and --model")
    run = with_runtime(run, device=args.device, threads=args.threads, num_workers=args.num_workers,
                       eval_batch_size=args.eval_batch_size,
                       preload=None if args.preload is None else bool(args.preload))
    summary = train(run, args.features, args.out, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
