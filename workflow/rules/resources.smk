# What every job asks for: CPUs (`threads`), host memory (`mem_mb`), GPUs (`gpu`) and wall time (`runtime`,
# minutes), and the limits a local run fits them into.
#
# - Locally, Snakemake runs jobs side by side only while their sums fit --cores and the `--resources` limits.
#   A local run that does not give `--resources gpu=N` / `mem_mb=M` gets this machine's own figures (the end of
#   this file; extract/devices.py), so GPU jobs never share a GPU and concurrent jobs fit in memory. A job
#   asking for more than a limit is scaled down to it and runs alone (as Snakemake does with threads above
#   --cores).
# - On SLURM (profiles/slurm) the executor plugin turns the same figures into sbatch options: threads ->
#   --cpus-per-task, mem_mb -> --mem, gpu -> --gpus, runtime -> -t. The profile only adds the partitions.
from extract.devices import available_memory_mb, visible_gpus

# Host memory in MB, for each job by the backbone of its dataset. The tiny backbone's figures: the peak RSS of the
# job's process tree on the demo (extraction 1.0-1.3 GB with its 2 decode workers, training 0.5 GB) with
# headroom. 1b: an extraction job's model takes 5.6 GB of host memory once loaded memory-mapped (bench/memory.py;
# 9.4 GB before), plus its decode workers (~0.5 GB each with full-resolution frames) and batches; training and prediction preload the features (QVHighlights: 4.7 GB of video + 1.2 GB of
# text features, README "Sizes") beside the model.
MEM_MB = {
    "extract_shard": {"tiny": 2500, "1b": 8000},
    "train": {"tiny": 1500, "1b": 16000},
    "predict": {"tiny": 1500, "1b": 12000},
    # one item in memory at a time plus the store's write buffer (256 MB before a pack is written)
    "import_features": {"tiny": 1000, "1b": 2000},
}
SMALL_MEM_MB = 1000  # CPU-only steps: store creation, merges, copies, evaluation, aggregation, reports
# Wall time in minutes. 1b extraction: 48 h of shard time for a whole dataset, split over its shards, plus 30 min
# to load the model; 48 h covers QVHighlights' 759k clips at 4.4 clips/s, below the 7.4 clips/s (29.6 frames/s)
# that 2 decode workers reached on the real h264 files with the official resize on 2 CPU cores (README
# "Performance"). 1b training: 5 min per epoch plus 30 min; TACoS (150 epochs over videos of up to 701 clips)
# is the longest run.
EXTRACT_1B_TOTAL_MIN = 48 * 60
TRAIN_1B_MIN_PER_EPOCH = 5
TINY_MIN = 30  # any job on the demo
SMALL_MIN = 15  # CPU-only steps


def backbone(wc):
    """The dataset's backbone; imported features (`features:`) may leave it out: sized as 1b."""
    return dataset(wc.dataset).get("backbone", "1b")


def job_mem_mb(rule):
    """mem_mb of a dataset's job: the rule's figure for the dataset's backbone."""
    return lambda wc: MEM_MB[rule][backbone(wc)]


def gpus(device):
    """GPUs a job with this `device` setting asks for. 'auto' asks for one: where there is none (a local run on a
    machine without GPUs), the machine's limit of 0 scales the request down to 0."""
    return 0 if device == "cpu" else 1


def extract_threads():
    """CPUs of an extraction job: its decode processes plus its torch threads (0 = torch's default, counted as 1)."""
    return RUN["decode_workers"] + max(RUN["threads"], 1)


def extract_runtime(wc):
    if backbone(wc) == "tiny":
        return TINY_MIN
    return 30 + -(-EXTRACT_1B_TOTAL_MIN // int(wc.nshards))


def _train(wc):
    return resolve_run(config, wc.dataset, wc.model, int(wc.seed))["train"]


def train_threads(wc):
    """CPUs of a training job: its torch threads (0 = torch's default, counted as 1) plus its DataLoader workers."""
    t = _train(wc)
    return max(t["threads"], 1) + t["num_workers"]


def train_runtime_min(wc):
    if backbone(wc) == "tiny":
        return TINY_MIN
    return 30 + TRAIN_1B_MIN_PER_EPOCH * _train(wc)["epochs"]


# A local run has no --jobs (that is a cluster or cloud run, where every job gets its own allocation); jobs
# started by an executor (ExecMode REMOTE, e.g. inside a SLURM job) run what they are given.
if workflow.is_main_process and workflow.nodes is None:
    # `--resources mem_mb=...` (or mem=, mem_mib=) is stored as mem_mb
    for _name, _detect in (("gpu", visible_gpus), ("mem_mb", available_memory_mb)):
        if _name not in workflow.global_resources:
            workflow.register_resource(_name, _detect())
