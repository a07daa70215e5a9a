# Pure helpers for the workflow files: paths, canonical parameters, code dependencies, input checks.
import functools
import json
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(workflow.basedir)  # the project root (the Snakefile lives there)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# Jobs run `python -m extract ...` / `python -m sdst.*` from the working directory: they must import this
# workflow's code (the code the fingerprints below were computed from), not another checkout installed in the
# environment. Jobs inherit this process's environment, locally and in a cluster job's own Snakemake.
# (set, not required: nothing for the envvars directive to assert)
_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
os.environ.update(PYTHONPATH=os.pathsep.join([str(ROOT), *_paths]))

from extract.cache import canonical_json, identity_hash  # noqa: E402
from extract.identity import FEATURE_KEYS, check_layers, extraction_identity  # noqa: E402
from extract.importer import import_identity  # noqa: E402
from sdst.config import check_layers_held, dataset_seeds, resolve_run, run_identity, train_setting  # noqa: E402
from sdst import variants  # noqa: E402
from sdst.reporting.paper import run_protocol  # noqa: E402

CACHE = config["extract"]["cache_dir"]


def config_error(message):
    """A configuration or target error: one line on stderr and exit status 2, instead of the traceback Snakemake
    wraps around an exception raised while it loads the workflow or builds the DAG."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def dataset_identity(ds):
    """The identity of a dataset's feature store: its extraction (extract.identity) or, for imported features
    (`features:`), the import's (extract.importer: layout, layer names, token layout; the files are recorded per
    item, not here)."""
    if "features" in ds:
        f = ds["features"]
        videos = f["videos"] if isinstance(f["videos"], list) else [f["videos"]]
        return import_identity(
            f["import"],
            ds["clip_len"],
            f.get("layers"),
            f.get("text_layers"),
            f.get("text_tokens", "cls"),
            f.get("dtype", "auto"),
            videos,
        )
    return extraction_identity(ds, config["extract"])


def _check_config():
    """Every variant and per-dataset value against its arch's dataclass, and every dataset's extraction layers
    against its backbone (or its import options), when the workflow loads: a typo is an error now, not when a job
    first runs."""
    try:
        for name, ds in config["datasets"].items():
            if "features" not in ds:
                check_layers(ds["backbone"], config["extract"])
            dataset_identity(ds)
            for variant in config["model"]["variants"]:
                resolve_run(config, name, variant, 0)
    except ValueError as err:
        config_error(f"config.yaml: {err}")
    if config["model"]["default"] not in config["model"]["variants"]:
        config_error(f"config.yaml model.default {config['model']['default']!r} is not among model.variants")


_check_config()
RUN = config["extract"]["run"]


@functools.lru_cache(maxsize=None)
def code(*modules, arch=None):
    """Fingerprint of the source files a job runs, for `params` (Snakemake does not track imported code): the import
    closure of the module(s) its command runs, read from the code (extract.imports; imports inside functions
    count), plus the registry's modules of the job's model arch, if it builds one (sdst.config.code_files). A
    `python -m extract <command>` job names extract.__main__ and the command's module.

    A param rather than input files: Snakemake records inputs by path, and these live under the absolute
    workflow.basedir, so a copied or moved project (or working directory) re-ran every job. The fingerprint
    only changes when a source's content (or name) does; a new timestamp alone (copy, checkout) re-runs nothing.
    """
    from extract.imports import fingerprint
    from sdst.config import code_files

    return fingerprint(code_files(modules, arch), ROOT)


def arch_code(*modules):
    """`code` of a job that builds the model of its `model` wildcard."""
    return lambda wc: code(*modules, arch=config["model"]["variants"][wc.model]["arch"])


def dataset(name):
    if name not in config["datasets"]:
        config_error(f"dataset '{name}' is not configured (config.yaml datasets: {', '.join(config['datasets'])})")
    return config["datasets"][name]


def identity(name):
    return dataset_identity(dataset(name))


def imported(name):
    """Whether the dataset's features are imported files (`features:`) instead of extracted here."""
    return "features" in dataset(name)


def xhash(name):
    return identity_hash(identity(name))


def xdir(name):
    """Folder of the dataset's current feature cache: store, shard reports, summary."""
    return f"{CACHE}/{name}/{xhash(name)}"


def annotation_files(name):
    return [dataset(name)["annotations"][s] for s in sorted(dataset(name)["annotations"])]


def demo_spec_arg(name):
    """`--demo-spec JSON` for a generated dataset (sdst.reporting.aggregate reads its events kind's plans), else ""."""
    gen = dataset(name).get("generate")
    return f"--demo-spec {shlex.quote(canonical_json(gen))}" if gen else ""


def video_exts(name):
    return dataset(name).get("video_exts", [".mp4", ".mkv", ".webm", ".avi", ".mov"])


@functools.lru_cache(maxsize=None)
def _health(name, shard, n):
    """(health file, whether it was marked now): extract.repair.prepare, once per shard and DAG build."""
    from extract.repair import prepare
    from extract.shard import shard_items

    before = Path(xdir(name), "shards", f"{shard}-of-{n}.health")
    stamp = before.read_text() if before.is_file() else None
    items = lambda: shard_items(annotation_files(name), shard, n)  # noqa: E731
    path = prepare(xdir(name), shard, n, items, dataset(name)["videos"], video_exts(name))
    return path, stamp is not None and Path(path).read_text() != stamp


def shard_health(wc):
    """Input function of extract_shard: the shard's health file, rewritten (so the job runs again) when the
    store lost some of the shard's items or a video file changed after its extraction (extract.repair)."""
    return _health(wc.dataset, int(wc.shard), int(wc.nshards))[0]


@functools.lru_cache(maxsize=None)
def _import_items(name):
    from extract.checks import feature_folders
    from extract.importer import items_from_folders

    fmt, dirs, qdir = feature_folders(dataset(name))
    prefix = dataset(name)["features"].get("text_prefix")
    return items_from_folders(fmt, dirs, qdir, annotation_files(name), prefix)[:2]


@functools.lru_cache(maxsize=None)
def _import_health(name):
    """(health file of the import job, whether it was marked now): extract.repair.prepare_import, once per DAG build."""
    from extract.repair import prepare_import

    before = Path(xdir(name), "import.health")
    stamp = before.read_text() if before.is_file() else None
    path = prepare_import(xdir(name), lambda: _import_items(name))
    return path, stamp is not None and Path(path).read_text() != stamp


def import_health(wc):
    """Input function of import_features: rewritten when an imported item was lost from the store or its file
    changed, appeared or went (extract.repair.import_problems), so the import runs again for exactly those."""
    return _import_health(wc.dataset)[0]


def import_args(wc):
    """The import job's folders (and options the store's identity does not hold), shell-quoted."""
    from extract.checks import feature_folders

    fmt, dirs, qdir = feature_folders(dataset(wc.dataset))
    f = dataset(wc.dataset)["features"]
    args = ["--videos", *dirs, "--queries", qdir]
    if "text_prefix" in f:
        args += ["--text-prefix", f["text_prefix"]]
    if not f.get("token_check", True):
        args.append("--no-token-check")
    return " ".join(shlex.quote(str(a)) for a in args)


def features_digest(wc):
    """What training and prediction depend on: the content of the dataset's features. Their input on the summary
    is ancient(), so a shard job that ran again (an extract/ code change, a repair that restores the same
    features) re-trains nothing. When a shard must re-extract items this run (a damaged store, a replaced video:
    extract.repair) or there is no summary yet, the digest is read through the checkpoint extract_summary, so
    it is read again after the summary is rewritten; otherwise straight from the file."""
    summary = Path(xdir(wc.dataset), "summary.json")
    n = dataset(wc.dataset).get("shards", RUN["shards"])
    marked = (
        _import_health(wc.dataset)[1] if imported(wc.dataset) else any(_health(wc.dataset, i, n)[1] for i in range(n))
    )
    if not summary.is_file() or marked:
        summary = checkpoints.extract_summary.get(dataset=wc.dataset, xhash=xhash(wc.dataset)).output[0]
    return json.loads(Path(summary).read_text()).get("features_digest")


def shard_reports(name):
    """The reports extract_summary merges: the shard jobs', or the import job's for imported features."""
    if imported(name):
        return [f"{xdir(name)}/import.json"]
    n = dataset(name).get("shards", RUN["shards"])
    return [f"{xdir(name)}/shards/{i}-of-{n}.json" for i in range(n)]


def check_hash(wc):
    """Guard against targets naming a stale cache folder (the config changed since they were written)."""
    if wc.xhash != xhash(wc.dataset):
        config_error(
            f"{CACHE}/{wc.dataset}/{wc.xhash}: not the current extraction configuration of '{wc.dataset}' "
            f"(that is {xhash(wc.dataset)})"
        )
    return []


_CHECKED = {}


def dataset_checks(wc):
    """Input function of init_store: the pre-flight checks of extract.checks run while the DAG is built, so a
    problem stops the run before any job starts (and only for datasets a target needs)."""
    from extract.checks import check_dataset

    if wc.dataset not in _CHECKED:
        ds = dataset(wc.dataset)
        _CHECKED[wc.dataset] = check_dataset(wc.dataset, ds, generated="generate" in ds)
    return []


def all_targets():
    """results/{dataset}/metrics.json, the summary (table, extraction), the example figures per dataset and the
    offsets figure of each SDST-family model (paper Fig. 4)."""
    out = []
    for d in config["evaluate"]["datasets"]:
        out += [f"results/{d}/metrics.json", f"results/{d}/summary.md"]
        out += [f"results/{d}/{m}/examples/{i}.png" for m in summary_models() for i in range(n_examples())]
        out += [offsets_figure(d, m) for m in summary_models() if has_offsets(d, m)]
    return out


def summary_models():
    """Models of results/{dataset}/summary.md: evaluate.models, the default model first."""
    models = config["evaluate"].get("models") or [config["model"]["default"]]
    unknown = [m for m in models if m not in config["model"]["variants"]]
    if unknown:
        config_error(f"config.yaml evaluate.models: {unknown} are not among model.variants")
    return list(dict.fromkeys([config["model"]["default"], *models]))


def n_examples():
    return int(config["evaluate"].get("examples", 4))


def folder(name):
    if name not in config.get("folders", {}):
        config_error(
            f"features/{name}: no folder '{name}' in config.yaml folders "
            f"(configured: {sorted(config.get('folders', {}))})"
        )
    return config["folders"][name]


# --- stage 2 -------------------------------------------------------------------------------------
def seeds(ds):
    """The seeds trained on a dataset: train.datasets.<ds>.seeds, else train.seeds."""
    return dataset_seeds(config, ds)


def report_splits(ds):
    return dataset(ds)["splits"]["report"]


def levels_check(wc):
    """Input function of train: the model's levels must be among the layers the dataset's store holds (K = 5 levels of
    the paper's Fig. 3 need 5 cached layers), said in one line while the DAG is built."""
    ident = identity(wc.dataset)
    run = resolve_run(config, wc.dataset, wc.model, int(wc.seed))
    where = f"dataset {wc.dataset}'s store ({'imported' if imported(wc.dataset) else 'extract.vision_layers'} {ident['vision_layers']})"
    try:
        check_layers_held(run, len(ident["vision_layers"]), len(ident["text_layers"]), where)
    except ValueError as err:
        config_error(f"config.yaml: {err}")
    return []


def run_config(wc):
    """The training job's parameter: its configuration without runtime keys (those are resources)."""
    return canonical_json(run_identity(resolve_run(config, wc.dataset, wc.model, int(wc.seed))))


_ARCHIVE_SAID = set()


def run_identity_of(wc):
    """A training job's identity as sdst.archive records it: the train rule's params (run configuration, training
    code, features)."""
    return {"run": run_config(wc), "code": arch_code("sdst.train")(wc), "features": features_digest(wc)}


def _say_once(entry, why, instead):
    if (str(entry), why) not in _ARCHIVE_SAID:
        _ARCHIVE_SAID.add((str(entry), why))
        print(f"run archive: {entry}: {why}; {instead}", file=sys.stderr)


def archived_run(wc):
    """What restore_run copies: the run archive's entry for this run (config `run_archive`, sdst.archive) when it
    holds a finished run of this job's identity (the record is read first, so a run nobody archived never asks for
    the features digest); otherwise a path nothing makes, so that the run is trained instead (ruleorder
    restore_run > train)."""
    from sdst.archive import FINISHED, RECORD, mismatch

    entry = Path(config.get("run_archive") or "no-run-archive", wc.dataset, wc.model, f"seed{wc.seed}")
    if not (entry / RECORD).is_file():
        return [str(entry / "not-archived")]
    why = mismatch(entry, run_identity_of(wc))
    if why:
        _say_once(entry, why, "training the run instead")
        return [str(entry / "not-this-run")]
    return [str(entry / f) for f in (RECORD, *FINISHED)]


def recorded_piece(name):
    """Input of a restore_record_* rule: one piece of the run's weight-free record (config `run_records`, sdst.archive
    save --outputs; `name` may hold {split}) when the record is of this job's run and the piece was made by the code
    the job would run; otherwise a path nothing makes, so that the piece's own job runs (and, needing the weights,
    trains the run)."""
    return lambda wc: _recorded_piece(name.format(**dict(wc.items())), wc)


RUN_DIR = "results/{dataset}/{model}/seed{seed}"  # one run's folder (records.smk)


def record_entry(wc, input):
    """The archive entry a restore_record_* job reads (the folder of its first input)."""
    return str(Path(input[0]).parent)


def run_folder(wc):
    """The run folder a restore_record_* job writes into."""
    return RUN_DIR.format(**dict(wc.items()))


def _recorded_piece(name, wc):
    from sdst.archive import RECORD, mismatch, piece, record

    entry = Path(config.get("run_records") or "no-run-records", wc.dataset, wc.model, f"seed{wc.seed}")
    if not (entry / RECORD).is_file():
        return [str(entry / "not-recorded")]
    code_of, files = piece(name)
    ident = run_identity_of(wc)
    why = mismatch(entry, ident, name, arch_code(code_of)(wc), sketch=lambda: features_sketch_of(wc.dataset))
    if why:
        _say_once(entry, why, "running the jobs it stands for instead")
        return [str(entry / f"not-this-{name}")]
    if record(entry)["identity"]["features"] != ident["features"]:
        why = "trained on another machine's extraction of these features (their sketches agree, sdst.sketch)"
        _say_once(entry, why, "restoring it")
    return [str(entry / f) for f in (RECORD, *files)]


@functools.cache
def features_sketch_of(ds):
    """This machine's sketch of a dataset's features (sdst.sketch), made once per workflow run, and only when a run
    record of them differs in the features digest alone."""
    from sdst.sketch import features_sketch

    return features_sketch(Path(xdir(ds), "summary.json"))


def train_runtime(key):
    """A runtime setting of the run (device, workers, ...) as a resource: no re-run when it changes."""

    def get(wc):
        value = resolve_run(config, wc.dataset, wc.model, int(wc.seed))["train"][key]
        return int(value) if isinstance(value, bool) else value

    return get


def eval_type(ds):
    return "qvh" if dataset(ds)["saliency"] == "qvh" else "mr"


def run_dirs(wc):
    return [f"results/{wc.dataset}/{wc.model}/seed{s}" for s in seeds(wc.dataset)]


def has_offsets(ds, model):
    """Whether a variant reads the video through deformable attention (RDSA or deformable CA), i.e. has the
    offsets of the paper's Fig. 4 (sdst.diagnose)."""
    return variants.has_offsets(resolve_run(config, ds, model, 0)["model"])


def offsets_figure(ds, model, seed=None):
    """The offsets figure of one seed (default: the dataset's first seed, the one rule all builds)."""
    seed = seeds(ds)[0] if seed is None else seed
    return f"results/{ds}/{model}/seed{seed}/diagnose/offsets.png"


def diagnose_checkpoint(wc):
    """The seed's best checkpoint of an SDST-family model (input of rule diagnose_offsets)."""
    if not has_offsets(wc.dataset, wc.model):
        config_error(
            f"{offsets_figure(wc.dataset, wc.model, wc.seed)}: model '{wc.model}' has no deformable attention "
            "(the offsets diagnostic is for arch sdst with sparse_attention rdsa or deformable_ca)"
        )
    return f"results/{wc.dataset}/{wc.model}/seed{wc.seed}/checkpoint_best.pt"


def has_levels(ds, model):
    """Whether a variant is SDST-family (arch sdst: K refinement levels, each with its own moments; sdst.levels)."""
    return variants.has_levels(resolve_run(config, ds, model, 0)["model"])


def levels_json(ds, model, seed):
    return f"results/{ds}/{model}/seed{seed}/diagnose/levels.json"


def levels_checkpoint(wc):
    """The seed's best checkpoint of an SDST-family model (input of rule diagnose_levels)."""
    if not has_levels(wc.dataset, wc.model):
        config_error(
            f"{levels_json(wc.dataset, wc.model, wc.seed)}: model '{wc.model}' has no refinement levels "
            "(the levels diagnostic is for arch sdst)"
        )
    return f"results/{wc.dataset}/{wc.model}/seed{wc.seed}/checkpoint_best.pt"
