"""Import pre-extracted features into a feature store: the SDST authors' release, or moment_detr-style folders.

    python -m extract import --format sdst --videos vid_feats/ --queries txt_feats/ --out OUT [--layers ...]
    python -m extract import --format moment_detr --videos feats/clip feats/slowfast --queries feats/text --out OUT

Layouts (:data:`LAYOUTS`):

- ``sdst``: ``{vid}.npz`` holding ``visual_feats_interm_pooled`` (one release names it ``visual_feats_pooled``),
  (clips, layers, dim), layers from shallow to deep with the final block last, and ``{qid}.npz`` holding
  ``text_feats``, (layers, tokens, dim). That is how loaders written for the release read it (e.g.
  davidpujol/Beyond_Caption-Based_Queries_for_Video_Moment_Retrieval, baselines/CGDETR/cg_detr/
  start_end_dataset.py: ``[:, -1]`` of the video array is "the last representation"; ``text_feats`` is read whole
  from ``{qid}.npz``). What the release leaves unsaid is an option with a stated default, checked where the files
  can tell: which blocks (``--layers``, default -5..-1: the last five of InternVideo2-1B's 40 blocks and of its 19
  text-only BERT layers; a file with another layer count is refused); whether [CLS] comes first
  (``--text-tokens cls``, InternVideo2's own ``[CLS] X`` without [SEP], docs/internvideo2.md; with the query
  texts of ``--annotations`` the token counts are compared with every layout and a mismatch stops the import);
  the dtype (``--dtype auto`` takes any float and the store keeps float16, each item recording its source dtype).
- ``moment_detr``: ``{dir}/{vid}.npz`` holding ``features`` (clips, dim); several ``--videos`` folders are cut to
  the shortest and concatenated along dim, as moment_detr's loader does; ``qid{qid}.npz`` holding
  ``last_hidden_state`` (tokens, dim). One layer, named -1.

Every file is checked (key, rank, layer count, dims equal across files, finite, fits float16). A bad file is one
line naming it and what is wrong, and the others are imported; exit status 1 then (2 on bad input).

Identity and resuming: the store's identity (its hash names a pipeline cache folder) is what defines the
features: layout, keys, layer mapping, token layout, clip length, dtype rule. Each item records its source files
(size, mtime, SHA-256 of every byte; extract/sources.py), so a re-run imports only what is absent, damaged or
whose file changed, and the report's ``digest`` (hence the summary's ``features_digest``, which training depends
on) changes exactly when an item's content does; ``sources_digest`` fingerprints the file list with sizes and
checksums. A file list inside the path hash would turn one changed file into a new store: every item
re-imported and the old copy left on disk, for the same retraining.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extract.cache import ABSENT, ITEM, FeatureStore, canonical_json
from extract.npz import NpzError, header, load, value_problem
from extract.sources import file_identity, source_change

IMPORT_VERSION = 1
TEXT_TOKENS = {"cls": 1, "cls_sep": 2, "plain": 0}  # special tokens around a query's word pieces
DTYPES = ("auto", "float16", "float32")


@dataclass(frozen=True)
class Layout:
    video_keys: tuple[str, ...]  # the first one a file holds is read
    video_axes: str  # axes of the file's array, e.g. "clips layers dim"
    text_key: str
    text_axes: str
    text_prefix: str  # query file name = prefix + qid + .npz
    layers: tuple[int, ...]  # default layer names (-1 = the final block)
    backbone: str | None  # what the files are documented to come from
    pooling: str | None


LAYOUTS = {
    "sdst": Layout(("visual_feats_interm_pooled", "visual_feats_pooled"), "clips layers dim", "text_feats",
                   "layers tokens dim", "", (-5, -4, -3, -2, -1), "1b", "attn"),
    "moment_detr": Layout(("features",), "clips dim", "last_hidden_state", "tokens dim", "qid", (-1,), None, None),
}
STORE_AXES = {"videos": "layers clips dim", "queries": "layers tokens dim"}


def import_identity(fmt: str, clip_len: float, layers=None, text_layers=None, text_tokens: str = "cls",
                    dtype: str = "auto", video_dirs=()) -> dict:
    """The definition of an imported store's features (see the module docstring); raises ValueError on bad options."""
    if fmt not in LAYOUTS:
        raise ValueError(f"--format {fmt!r}: one of {', '.join(LAYOUTS)}")
    lay = LAYOUTS[fmt]
    layers, text_layers = list(layers or lay.layers), list(text_layers or layers or lay.layers)
    for flag, names in (("--layers", layers), ("--text-layers", text_layers)):
        if not names or any(not isinstance(n, int) or n == 0 for n in names) or len(set(names)) != len(names):
            raise ValueError(f"{flag} {names}: distinct non-zero layer names (-1 = the final block)")
        if "layers" not in lay.video_axes and len(names) != 1:
            raise ValueError(f"{flag} {names}: {fmt} files hold one layer; name it with one number (-1)")
    if text_tokens not in TEXT_TOKENS or dtype not in DTYPES:
        raise ValueError(f"--text-tokens {text_tokens!r} / --dtype {dtype!r}: one of {list(TEXT_TOKENS)} / {DTYPES}")
    if not float(clip_len) > 0:
        raise ValueError(f"--clip-len {clip_len}: seconds per clip, > 0")
    ident = {"import": fmt, "import_version": IMPORT_VERSION, "clip_len": float(clip_len), "vision_layers": layers,
             "text_layers": text_layers, "video_keys": list(lay.video_keys), "text_key": lay.text_key,
             "text_tokens": text_tokens, "dtype": dtype, "backbone": lay.backbone, "pooling": lay.pooling}
    if fmt == "moment_detr":  # the concatenated folders, in order, define the features (their names, not paths)
        ident["video_folders"] = [Path(d).name for d in video_dirs]
    return ident


def items_from_folders(fmt: str, video_dirs, query_dir, annotations=(), text_prefix=None):
    """({vid: [file per folder]}, {qid: file}, {qid: (text, vid)}, {vid: duration}): every file of the folders, or
    only the items ``annotations`` name (their files need not exist; missing ones are reported)."""
    from extract.annotations import load_annotations

    prefix = LAYOUTS[fmt].text_prefix if text_prefix is None else text_prefix
    dirs = [Path(d) for d in video_dirs]
    for d in dirs + ([Path(query_dir)] if query_dir else []):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such folder of .npz feature files")
    texts, durations = {}, {}
    for path in annotations:
        for q in load_annotations(path):
            texts[q.key], durations[q.vid] = (q.query, q.vid), q.duration
    if annotations:
        vids, qids = sorted(durations), sorted(texts) if query_dir else []
    else:
        vids = sorted(p.stem for p in dirs[0].glob("*.npz"))
        qids = sorted(p.stem[len(prefix):] for p in Path(query_dir).glob(f"{prefix}*.npz")) if query_dir else []
        if not vids:
            raise FileNotFoundError(f"{dirs[0]}: no .npz files")
    videos = {v: [d / f"{v}.npz" for d in dirs] for v in vids}
    queries = {q: Path(query_dir) / f"{prefix}{q}.npz" for q in qids}
    return videos, queries, texts, durations


# ------------------------------------------------------------------------------------------------ checks
def _inspect(group: str, files: list[Path], ident: dict) -> tuple[tuple, list[str], str | None, int]:
    """From the headers alone: (store shape (K, N, D), source dtypes, problem, index of the file at fault)."""
    lay = LAYOUTS[ident["import"]]
    axes = (lay.video_axes if group == "videos" else lay.text_axes).split()
    keys = tuple(ident["video_keys"]) if group == "videos" else (ident["text_key"],)
    names = ident["vision_layers" if group == "videos" else "text_layers"]
    want = len(names)
    shapes, dtypes = [], []
    for i, f in enumerate(files):
        if not f.is_file():
            return (), [], "file not found", i
        try:
            key, shape, dtype = header(f, keys)
        except NpzError as err:
            return (), [], str(err), i
        named = dict(zip(axes, shape))
        if len(shape) != len(axes):
            return (), [], f"array {key!r} has shape {shape}: expected {len(axes)} axes ({', '.join(axes)})", i
        if named.get("layers", 1) != want:
            return (), [], (f"{named['layers']} layers on axis {axes.index('layers')} of {key!r} (shape {shape}), "
                            f"expected {want}, one per layer name {names} (--layers / --text-layers)"), i
        if min(shape) == 0:
            return (), [], f"array {key!r} is empty (shape {shape})", i
        if not np.issubdtype(dtype, np.floating) or (ident["dtype"] != "auto" and dtype != np.dtype(ident["dtype"])):
            return (), [], f"dtype {dtype}, expected {'floating point' if ident['dtype'] == 'auto' else ident['dtype']}", i
        shapes.append(named)
        dtypes.append(str(dtype))
    steps = "clips" if group == "videos" else "tokens"
    return (want, min(s[steps] for s in shapes), tuple(s["dim"] for s in shapes)), dtypes, None, -1


def token_layout_check(counts: dict[str, int], texts: dict[str, tuple[str, str]], chosen: str) -> None:
    """Compare each query's token count with its word pieces under every layout of :data:`TEXT_TOKENS`; raise one
    line when ``chosen`` fits fewer than half of them (the layout that fits most is named)."""
    from extract.tokenizer import build_tokenizer

    qids = [q for q in counts if q in texts]
    if not qids:
        return
    pieces = [len(ids) - 1 for ids in build_tokenizer("bert-large-19", 512).batch_ids([texts[q][0] for q in qids])]
    fits = {name: sum(counts[q] == p + extra for q, p in zip(qids, pieces)) for name, extra in TEXT_TOKENS.items()}
    best = max(fits, key=fits.get)
    if 2 * fits[chosen] < len(qids):
        raise ValueError(f"--text-tokens {chosen}: the token counts of {fits[chosen]} of {len(qids)} query files fit it"
                         + (f", {fits[best]} fit --text-tokens {best}" if fits[best] > fits[chosen] else
                            " and no other layout fits better (padded to a fixed length?)")
                         + "; choose the layout, or --no-token-check to import them as they are")


class BadValues(NpzError):
    """An array holds NaN or infinite values, or values beyond float16 (``at``: the index of the file)."""

    def __init__(self, message: str, at: int):
        super().__init__(message)
        self.at = at


def read_item(group: str, files: list[Path], ident: dict, check: bool = False) -> np.ndarray:
    """One item's files as the store holds it: (layers, clips or tokens, dim), several video folders cut to the
    shortest and concatenated along dim; raises NpzError, and with ``check`` BadValues (its index is the file's
    own). Also used by ``python -m extract compare``."""
    lay = LAYOUTS[ident["import"]]
    axes = (lay.video_axes if group == "videos" else lay.text_axes).split()
    keys = tuple(ident["video_keys"]) if group == "videos" else (ident["text_key"],)
    arrays = [load(f, header(f, keys)[0]) for f in files]
    for i, a in enumerate(arrays if check else ()):
        if problem := value_problem(a):
            raise BadValues(problem, i)
    arrays = [np.moveaxis(a, axes.index("layers"), 0) if "layers" in axes else a[None] for a in arrays]
    n = min(a.shape[1] for a in arrays)
    return np.concatenate([a[:, :n] for a in arrays], axis=2)


# ------------------------------------------------------------------------------------------------ import
def _reason(store, group, key, files) -> tuple[bool, str | None]:
    """(import it, why: None for an absent item, else damaged/changed)."""
    problem = store.problem(group, key, deep=True)
    if problem is not None:
        return True, None if problem == ABSENT else f"damaged: {problem}"
    recorded = store.entry(group, key).attrs.get("sources") or []
    if len(recorded) != len(files):
        return True, f"now {len(files)} source file(s), {len(recorded)} when imported"
    for rec, f in zip(recorded, files):
        change = source_change(rec, f) if f.is_file() else "source file removed"
        if change:
            return True, f"{f}: {change}"
    return False, None


def import_features(store: FeatureStore, videos: dict, queries: dict, texts=None, durations=None,
                    token_check: bool = True, progress: bool = True) -> dict:
    """Import the items whose files are new, changed or damaged in ``store`` (see :func:`items_from_folders`);
    returns the report (the shape of a shard report, so extract.stores.write_summary merges it)."""
    from tqdm import tqdm

    from extract.shard import shard_digest

    t0, ident, texts, durations = time.perf_counter(), store.identity, texts or {}, durations or {}
    report = {"shard": 0, "n_shards": 1, "store": str(store.path), "identity_hash": store.identity_hash,
              "format": ident["import"], "clips": 0, "model_seconds": 0.0, "clips_per_s": 0.0, "device": None,
              "damaged": [], "changed": [], "sources": {}}
    plan = []
    for group, items in (("videos", videos), ("queries", queries)):
        files_of = {k: (f if isinstance(f, list) else [f]) for k, f in items.items()}
        todo = {}
        for key, files in files_of.items():
            again, why = _reason(store, group, key, files)
            if again:
                todo[key] = files
                if why:
                    report["damaged" if why.startswith("damaged") else "changed"].append(
                        {"item": f"{ITEM[group]} '{key}'", "reason": why})
        report[group] = {"total": len(items), "already_complete": len(items) - len(todo), "extracted": 0,
                         "failed": [], **({"clamped": []} if group == "videos" else {})}
        report["sources"][group] = {k: [[f.stat().st_size, f.stat().st_mtime_ns] for f in fs if f.is_file()]
                                    for k, fs in files_of.items()}
        plan.append((group, todo))
    for group, todo in plan:
        _import_group(store, group, todo, report, texts, durations, token_check, tqdm, progress)
    store.flush()
    report["seconds"] = time.perf_counter() - t0
    # what training depends on: the stored content, the videos and (here) the query files that failed
    report["digest"] = canonical_json([shard_digest(store, list(videos), list(queries), report["videos"]["failed"]),
                                       sorted(str(f["qid"]) for f in report["queries"]["failed"])])
    report["sources_digest"] = sources_digest(store, videos, queries, report)
    return report


def sources_digest(store, videos, queries, report) -> str:
    """A fingerprint of the source files: each item's files' SHA-256s as recorded with its stored copy (checked
    against the files above), None for an item whose files could not be imported."""
    out = {}
    for group, items, name in (("videos", videos, "vid"), ("queries", queries, "qid")):
        failed = {str(f[name]) for f in report[group]["failed"]}
        out[group] = {k: None if k in failed or store.entry(group, k) is None else
                      [s.get("sha256") for s in store.entry(group, k).attrs.get("sources") or []] for k in items}
    return hashlib.sha1(canonical_json(out).encode()).hexdigest()[:16]


def _fail(report, group, key, file, reason) -> None:
    name = "vid" if group == "videos" else "qid"
    report[group]["failed"].append({name: key, "file": str(file), "reason": reason})


def _import_group(store, group, todo, report, texts, durations, token_check, tqdm, progress) -> None:
    ident = store.identity
    looked = {}
    for key, files in todo.items():
        shape, dtypes, problem, at = _inspect(group, files, ident)
        if problem:
            _fail(report, group, key, files[at], problem)
        else:
            looked[key] = (shape, dtypes)
    # dims equal across files: those of the store's items, else the most common among the files imported now
    have = next((store.entry(group, k).shape[-1] for k in store.keys(group)), None)
    common = Counter(s[2] for s, _ in looked.values()).most_common(1)[0][0] if looked else None
    for key in list(looked):
        dims = looked[key][0][2]
        if (have is not None and sum(dims) != have) or (have is None and dims != common):
            bad = next((i for i, d in enumerate(dims) if common is None or d != common[i]), 0)
            expect = f"the store's {ITEM[group]}s have {have}" if have is not None else f"the other files have {common}"
            _fail(report, group, key, todo[key][bad], f"feature dim {dims[bad] if have is None else sum(dims)}, {expect}")
            del looked[key]
    if group == "queries" and token_check and looked:
        token_layout_check({k: s[1] for k, (s, _) in looked.items()}, texts, ident["text_tokens"])
    for key in tqdm(sorted(looked), desc=group, unit=ITEM[group], disable=not progress):
        files = todo[key]
        try:
            x = read_item(group, files, ident, check=True)
        except NpzError as err:
            _fail(report, group, key, files[getattr(err, "at", 0)], str(err))
            continue
        n = x.shape[1]
        sources = [file_identity(f, whole=True) for f in files]
        common_attrs = {"file": files[0].name, "sources": sources, "source_dtype": looked[key][1][0]}
        if group == "videos":
            store.write_video(key, x, clip_len=ident["clip_len"], duration=float(durations.get(key, n * ident["clip_len"])),
                              **common_attrs)
            report["clips"] += n
        else:
            text, vid = texts.get(key, (None, None))
            store.write_query(key, x, **({"query": text, "vid": vid} if text is not None else {}), **common_attrs)
        report[group]["extracted"] += 1


# ------------------------------------------------------------------------------------------------ command line
def _names(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: comma-separated layer names, e.g. -5,-4,-3,-2,-1") from None


def add_args(p) -> None:
    p.add_argument("--format", choices=list(LAYOUTS), help="sdst (the SDST authors' release) or moment_detr")
    p.add_argument("--videos", nargs="+", required=True, help="folder of {vid}.npz (sdst: vid_feats/); moment_detr: "
                                                               "one or more, concatenated along dim in this order")
    p.add_argument("--queries", default=None, help="folder of query files (sdst: txt_feats/{qid}.npz; moment_detr: "
                                                   "qid{qid}.npz)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="output folder: features.zarr, store.json, import.json, summary.json")
    where.add_argument("--store-json", help="a store made by `init-store` (the workflow): its identity gives "
                                            "--format and every option below")
    p.add_argument("--report", default=None, help="the import report (default: import.json beside the store)")
    p.add_argument("--annotations", nargs="*", default=[],
                   help="import only the videos and queries these name; their durations and texts are recorded "
                        "and the query token counts checked")
    p.add_argument("--layers", default=None, help="names of the files' vision layers, shallow to deep (sdst default "
                                                  "-5,-4,-3,-2,-1: blocks 36-40 of 40; moment_detr: -1)")
    p.add_argument("--text-layers", default=None, help="names of the text layers (default: as --layers; sdst: BERT "
                                                       "layers 15-19 of the 19 text-only ones)")
    p.add_argument("--clip-len", type=float, default=2.0, help="seconds per clip (2 QVHighlights/TACoS, 1 Charades-STA)")
    p.add_argument("--text-tokens", default="cls", choices=list(TEXT_TOKENS),
                   help="special tokens around the word pieces: cls = [CLS] X (InternVideo2's own; default), "
                        "cls_sep = [CLS] X [SEP], plain = X")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="source dtype required (auto: any float)")
    p.add_argument("--text-prefix", default=None, help="query file name prefix (default: '' sdst, 'qid' moment_detr)")
    p.add_argument("--no-token-check", action="store_true", help="do not compare token counts with the query texts")
    p.add_argument("--no-progress", action="store_true")


def main(args) -> int:
    from extract.locking import exclusive
    from extract.shard import write_json_atomic
    from extract.stores import write_summary

    if args.store_json:
        meta = json.loads(Path(args.store_json).read_text())
        store = FeatureStore(meta["store"], mode="a")
        if "import" not in store.identity:
            raise ValueError(f"{args.store_json}: {meta['store']} is not a store of imported features")
        if args.format and args.format != store.identity["import"]:
            raise ValueError(f"--format {args.format}: the store holds {store.identity['import']} features")
        summary = None
    else:
        if not args.format:
            raise ValueError("--format: sdst or moment_detr (required with --out)")
        ident = import_identity(args.format, args.clip_len, _names(args.layers, "--layers"),
                                _names(args.text_layers, "--text-layers"), args.text_tokens, args.dtype, args.videos)
        store = FeatureStore.create(Path(args.out) / "features.zarr", ident)
        meta = {"store": str(store.path), "identity": ident, "identity_hash": store.identity_hash}
        write_json_atomic(Path(args.out) / "store.json", meta)
        summary = Path(args.out) / "summary.json"
    fmt = store.identity["import"]
    folders = store.identity.get("video_folders")
    if folders is not None and [Path(d).name for d in args.videos] != folders:
        raise ValueError(f"--videos {' '.join(args.videos)}: this store concatenates folders named {folders}, in "
                         "that order")
    videos, queries, texts, durations = items_from_folders(fmt, args.videos, args.queries, args.annotations,
                                                           args.text_prefix)
    lock = store.path.with_name(store.path.name + ".locks") / "import.lock"
    with exclusive(lock, f"import into {store.path}"):
        report = import_features(store, videos, queries, texts, durations, not args.no_token_check,
                                 not args.no_progress)
    write_json_atomic(args.report or store.path.parent / "import.json", report)
    if summary is not None:
        write_summary(meta, [report], summary)  # prints every bad file
    else:
        for f in report["videos"]["failed"] + report["queries"]["failed"]:
            print(f"  BAD {f['file']}: {f['reason']}")
    bad = len(report["videos"]["failed"]) + len(report["queries"]["failed"])
    print(f"{store.path}: {fmt} import: {report['videos']['extracted']} videos and {report['queries']['extracted']} "
          f"queries imported, {report['videos']['already_complete']} + {report['queries']['already_complete']} "
          f"already there and unchanged, {len(report['changed'])} changed and {len(report['damaged'])} damaged "
          f"re-imported, {bad} bad file(s) (listed above)")
    return 1 if bad else 0
