# Stage 3's input functions (the rules are in significance.smk; Snakemake's lint keeps functions out of rule
# files): which metrics, diagnostics and ground truth a significance report reads, and its command-line options.
import shlex


def report_entry(folder):
    reports = config["significance"]["reports"]
    if folder not in reports:
        config_error(
            f"{folder}/report.md: no such report in config.yaml significance.reports "
            f"(configured: {sorted(reports)})"
        )
    return reports[folder]


def report_inputs(wc):
    spec = report_entry(wc.folder)
    for d in spec["datasets"]:
        dataset(d)  # a clear error for a dataset the report names but config.yaml does not (yet) configure
        have, need = len(seeds(d)), spec.get("min_seeds", 1)
        if have < need:
            config_error(
                f"{wc.folder}/report.md: dataset '{d}' has {have} seeds, the report asks for at least {need} "
                f"(config.yaml: train.datasets.{d}.seeds)"
            )
    for label, models in spec.get("k_sweep", {}).items():
        for m in models:
            if m not in spec["models"] or not all(has_levels(d, m) for d in spec["datasets"]):
                config_error(
                    f"{wc.folder}/report.md: k_sweep line '{label}' names '{m}', which is not an SDST-family "
                    f"model among the report's models (config.yaml significance.reports.{wc.folder})"
                )
    return [f"results/{d}/{m}/metrics.json" for d in spec["datasets"] for m in spec["models"]]


def report_offsets(wc):
    """The offsets JSON of every seed of the report's SDST-family models, and the first seed's figure (the one the
    report shows; the others are in the Snakemake report)."""
    spec = report_entry(wc.folder)
    pairs = [(d, m) for d in spec["datasets"] for m in spec["models"] if has_offsets(d, m)]
    jsons = [offsets_figure(d, m, s).removesuffix(".png") + ".json" for d, m in pairs for s in seeds(d)]
    return jsons + [offsets_figure(d, m) for d, m in pairs]


def report_levels(wc):
    """The levels.json of every seed of the report's SDST-family models."""
    spec = report_entry(wc.folder)
    pairs = [(d, m) for d in spec["datasets"] for m in spec["models"] if has_levels(d, m)]
    return [levels_json(d, m, s) for d, m in pairs for s in seeds(d)]


def report_ground_truth(wc):
    """Each dataset's headline-split annotations: the GT windows counted per length range."""
    spec = report_entry(wc.folder)
    return {d: dataset(d)["annotations"][report_splits(d)[0]] for d in spec["datasets"]}


def report_gt_options(wc):
    return " ".join(f"--gt {d}={path}" for d, path in report_ground_truth(wc).items())


def report_spec(folder):
    """Command-line options of sdst.reporting.significance for one report (metrics, blocking, alpha)."""
    spec, sig = report_entry(folder), config["significance"]
    opts = [f"--alpha {sig['alpha']}"]
    if spec.get("block_by_seed", False):
        opts.append("--block-by-seed")
    lower = sig.get("lower_is_better", [])
    if lower:
        opts.append("--lower-is-better " + ",".join(lower))
    for kind, names in sig.get("metrics", {}).items():
        opts.append(f"--metric-set {kind}=" + ",".join(names))
    for label, models in spec.get("k_sweep", {}).items():
        line = "=".join([label, ",".join(models)])
        opts.append(f"--k-sweep {shlex.quote(line)}")
    return " ".join(opts)
