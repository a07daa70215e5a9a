"""The diagnostics of the significance report over every seed of a model (issue 21 points 4 and 5): the JSONs
of sdst.diagnose and sdst.levels, one per seed's best checkpoint, grouped by (dataset, model), and their values
as mean ± std over seeds (std with ddof = 1, as sdst.reporting.aggregate gives the metrics)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def by_model(json_paths: list[str]) -> list[tuple[list[str], list[dict]]]:
    """[(paths, results)] per (dataset, model), in the order they first appear, each list in seed order."""
    groups: dict[tuple, tuple[list[str], list[dict]]] = {}
    for path in json_paths:
        result = json.loads(Path(path).read_text())
        paths, results = groups.setdefault((result["dataset"], result["model"]), ([], []))
        paths.append(path)
        results.append(result)
    for paths, results in groups.values():
        order = sorted(range(len(results)), key=lambda i: (results[i].get("seed") is None, results[i].get("seed")))
        paths[:], results[:] = [paths[i] for i in order], [results[i] for i in order]
    return list(groups.values())


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """(mean, std with ddof = 1; None for one value); (None, None) when any value is missing."""
    if not values or any(v is None for v in values):
        return None, None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def cell(values: list[float | None], fmt: str = ".2f") -> str:
    """``mean ± std`` over seeds, the value alone for one seed, ``–`` when a seed has none."""
    mean, std = mean_std(values)
    if mean is None:
        return "–"
    return f"{mean:{fmt}}" if std is None else f"{mean:{fmt}} ± {std:.2f}"


def seeds_text(results: list[dict]) -> str:
    seeds = [r.get("seed") for r in results]
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds: " + ", ".join(map(str, seeds))
