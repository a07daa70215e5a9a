# SDST pipeline: decode + InternVideo2 features once (stage 1), train/evaluate SDST per dataset and seed
# (stage 2), significance reports across models (stage 3). Run from the project root:
#   snakemake --cores 8 results/qvh/metrics.json        (one dataset)
#   snakemake --cores 2                                 (rule all: see `evaluate.datasets` in config.yaml)
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/common_report.smk"
include: "workflow/rules/resources.smk"


# Path pieces never contain "/"; a model is one of the configured variants (so results/{dataset}/random_baseline
# is never read as a model's folder).
wildcard_constraints:
    dataset=r"[A-Za-z0-9_-]+",
    name=r"[A-Za-z0-9_-]+",
    model="|".join(sorted(config["model"]["variants"])),
    seed=r"\d+",
    split=r"[A-Za-z0-9_.-]+",
    xhash=r"[0-9a-f]{12}",
    shard=r"\d+",
    nshards=r"\d+",
    folder="|".join(sorted(config["significance"]["reports"])),


include: "workflow/rules/extract.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/records.smk"
include: "workflow/rules/significance.smk"


rule all:
    default_target: True
    input:
        all_targets(),
