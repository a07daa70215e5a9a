# Stage 2: train -> predict -> evaluate per dataset x model x seed, then aggregate over seeds.


# Merging JSON files and copying one: on SLURM they run on the submitting node, without a job of their own.
localrules:
    aggregate_model,
    restore_run,
    dataset_metrics,
    dataset_summary,


rule train:
    """Train one seed; resumes from checkpoint_last.pt after an interruption."""
    input:
        # ancient: a shard job that ran again re-trains only if the features changed (params.features)
        features=ancient(lambda wc: f"{xdir(wc.dataset)}/summary.json"),
        annotations=lambda wc: annotation_files(wc.dataset),
        levels=levels_check,
    output:
        best="results/{dataset}/{model}/seed{seed}/checkpoint_best.pt",
        log_csv="results/{dataset}/{model}/seed{seed}/train_log.csv",
        curves=report(
            "results/{dataset}/{model}/seed{seed}/curves.png",
            caption="../report/curves.rst",
            category="Training curves",
            subcategory="{dataset}",
            # one label: Snakemake shows a label after the first one with exactly two values as a toggle
            labels={"run": "{model}, seed {seed}"},
        ),
        summary="results/{dataset}/{model}/seed{seed}/train_summary.json",
    log:
        "results/{dataset}/{model}/seed{seed}/train.log",
    conda:
        "../../envs/sdst.yaml"
    threads: train_threads
    resources:
        gpu=lambda wc: gpus(train_runtime("device")(wc)),
        mem_mb=job_mem_mb("train"),
        runtime=train_runtime_min,
        torch_threads=train_runtime("threads"),
        device=train_runtime("device"),
        num_workers=train_runtime("num_workers"),
        eval_batch_size=train_runtime("eval_batch_size"),
        preload=train_runtime("preload"),
    params:
        code=arch_code("sdst.train"),
        run=run_config,
        features=features_digest,
        out=lambda wc, output: str(Path(output.best).parent),
    shell:
        "python -m sdst.train --run {params.run:q} --features {input.features} --out {params.out} "
        "--device {resources.device} --threads {resources.torch_threads} --num-workers {resources.num_workers} "
        "--eval-batch-size {resources.eval_batch_size} --preload {resources.preload} --no-progress > {log} 2>&1"


# A finished run kept in the run archive (config `run_archive`) stands for training it when it is the same run.
ruleorder: restore_run > train


rule restore_run:
    """The train outputs of a finished run from the run archive (sdst.archive), checked against their sha256,
    when the archived run's identity is this job's; any difference trains the run (archived_run)."""
    input:
        archived_run,
    output:
        best="results/{dataset}/{model}/seed{seed}/checkpoint_best.pt",
        log_csv="results/{dataset}/{model}/seed{seed}/train_log.csv",
        curves=report(
            "results/{dataset}/{model}/seed{seed}/curves.png",
            caption="../report/curves.rst",
            category="Training curves",
            subcategory="{dataset}",
            labels={"run": "{model}, seed {seed}"},
        ),
        summary="results/{dataset}/{model}/seed{seed}/train_summary.json",
    log:
        "results/{dataset}/{model}/seed{seed}/train.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("sdst.archive"),
        run=run_config,
        features=features_digest,
        entry=lambda wc, input: str(Path(input[0]).parent),
        out=lambda wc, output: str(Path(output.best).parent),
    shell:
        "python -m sdst.archive restore {params.entry} --out {params.out} > {log} 2>&1"


rule predict:
    """Best checkpoint -> submission file for one reported split (+ its ground truth and coverage)."""
    input:
        ckpt="results/{dataset}/{model}/seed{seed}/checkpoint_best.pt",
        features=ancient(lambda wc: f"{xdir(wc.dataset)}/summary.json"),
    output:
        pred="results/{dataset}/{model}/seed{seed}/predictions_{split}.jsonl",
        gt="results/{dataset}/{model}/seed{seed}/predictions_{split}.jsonl.gt.jsonl",
        info="results/{dataset}/{model}/seed{seed}/predictions_{split}.jsonl.info.json",
    log:
        "results/{dataset}/{model}/seed{seed}/predict_{split}.log",
    conda:
        "../../envs/sdst.yaml"
    threads: max(train_setting(config, "threads"), 1)
    resources:
        gpu=gpus(train_setting(config, "device")),
        mem_mb=job_mem_mb("predict"),
        runtime=lambda wc: TINY_MIN if backbone(wc) == "tiny" else 60,
        device=train_setting(config, "device"),
    params:
        code=arch_code("sdst.infer"),
        features=features_digest,
    shell:
        "python -m sdst.infer --checkpoint {input.ckpt} --features {input.features} --split {wildcards.split} "
        "--device {resources.device} --out {output.pred} > {log} 2>&1"


rule evaluate_run:
    input:
        pred="results/{dataset}/{model}/seed{seed}/predictions_{split}.jsonl",
        gt="results/{dataset}/{model}/seed{seed}/predictions_{split}.jsonl.gt.jsonl",
    output:
        "results/{dataset}/{model}/seed{seed}/metrics_{split}.json",
    log:
        "results/{dataset}/{model}/seed{seed}/evaluate_{split}.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("sdst.evaluate"),
        kind=lambda wc: eval_type(wc.dataset),
    shell:
        "python -m sdst.evaluate --submission {input.pred} --gt {input.gt} --out {output} "
        "--dataset-type {params.kind} > {log} 2>&1"


rule random_baseline:
    """Random windows and saliency on the headline split: the floor every model must clear."""
    input:
        gt=lambda wc: dataset(wc.dataset)["annotations"][report_splits(wc.dataset)[0]],
    output:
        pred="results/{dataset}/random_baseline/predictions.jsonl",
        metrics="results/{dataset}/random_baseline/metrics.json",
    log:
        "results/{dataset}/random_baseline/baseline.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("sdst.baseline", "sdst.evaluate"),
        kind=lambda wc: eval_type(wc.dataset),
        clip_len=lambda wc: dataset(wc.dataset)["clip_len"],
    shell:
        "(python -m sdst.baseline --gt {input.gt} --out {output.pred} --clip-len {params.clip_len} && "
        "python -m sdst.evaluate --submission {output.pred} --gt {input.gt} --out {output.metrics} "
        "--dataset-type {params.kind}) > {log} 2>&1"


rule aggregate_model:
    """Mean, std and per-seed values of every metric for one model on one dataset."""
    input:
        metrics=lambda wc: [f"{r}/metrics_{s}.json" for r in run_dirs(wc) for s in report_splits(wc.dataset)],
        predictions=lambda wc: [
            f"{r}/predictions_{s}.jsonl{x}"
            for r in run_dirs(wc)
            for s in report_splits(wc.dataset)
            for x in ("", ".gt.jsonl")
        ],
        summaries=lambda wc: [f"{r}/train_summary.json" for r in run_dirs(wc)],
        logs=lambda wc: [f"{r}/train_log.csv" for r in run_dirs(wc)],
        baseline="results/{dataset}/random_baseline/metrics.json",
        extraction="results/{dataset}/extraction.json",
    output:
        "results/{dataset}/{model}/metrics.json",
    log:
        "logs/aggregate/{dataset}/{model}.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("sdst.reporting.aggregate"),
        runs=run_dirs,
        splits=lambda wc: report_splits(wc.dataset),
        demo=lambda wc: demo_spec_arg(wc.dataset),
    shell:
        "python -m sdst.reporting.aggregate --dataset {wildcards.dataset} --model {wildcards.model} --runs {params.runs} "
        "--splits {params.splits} --baseline {input.baseline} --extraction {input.extraction} {params.demo} "
        "--out {output} > {log} 2>&1"


rule dataset_metrics:
    """results/{dataset}/metrics.json: the configured default model's aggregated metrics."""
    input:
        lambda wc: f"results/{wc.dataset}/{config['model']['default']}/metrics.json",
    output:
        "results/{dataset}/metrics.json",
    log:
        "logs/aggregate/{dataset}/default.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    shell:
        "cp {input} {output} 2> {log}"


rule dataset_summary:
    """results/{dataset}/summary.md/.csv/.html (every model of evaluate.models, the random baseline, parameter
    counts) and extraction.md/.html (what the feature extraction did, every failure with its reason)."""
    input:
        metrics=lambda wc: [f"results/{wc.dataset}/{m}/metrics.json" for m in summary_models()],
        extraction="results/{dataset}/extraction.json",
    output:
        md="results/{dataset}/summary.md",
        csv="results/{dataset}/summary.csv",
        html=report(
            "results/{dataset}/summary.html",
            caption="../report/summary.rst",
            category="Results",
            subcategory="{dataset}",
            labels={"table": "models x metrics"},
        ),
        extraction_md="results/{dataset}/extraction.md",
        extraction=report(
            "results/{dataset}/extraction.html",
            caption="../report/extraction.rst",
            category="Feature extraction",
            subcategory="{dataset}",
            labels={"table": "extraction summary"},
        ),
    log:
        "logs/summary/{dataset}.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("sdst.reporting.summary"),
        paper=lambda wc: f"--paper {dataset(wc.dataset)['paper']}" if dataset(wc.dataset).get("paper") else "",
        protocol=lambda wc: run_protocol(dataset(wc.dataset)["splits"]),
    shell:
        "python -m sdst.reporting.summary --dataset {wildcards.dataset} --metrics {input.metrics} "
        "--extraction {input.extraction} --out {output.md} {params.paper} --protocol {params.protocol:q} > {log} 2>&1"


rule examples:
    """One-video prediction figures of the first queries of the headline split (first seed's predictions)."""
    input:
        pred=lambda wc: f"results/{wc.dataset}/{wc.model}/seed{seeds(wc.dataset)[0]}/predictions_{report_splits(wc.dataset)[0]}.jsonl",
        gt=lambda wc: f"results/{wc.dataset}/{wc.model}/seed{seeds(wc.dataset)[0]}/predictions_{report_splits(wc.dataset)[0]}.jsonl.gt.jsonl",
    output:
        [
            report(
                f"results/{{dataset}}/{{model}}/examples/{i}.png",
                caption="../report/example.rst",
                category="Predictions",
                subcategory="{dataset}",
                labels={"figure": f"{{model}}, example {i + 1}"},
            )
            for i in range(n_examples())
        ],
    log:
        "logs/examples/{dataset}/{model}.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("sdst.reporting.plots"),
        clip_len=lambda wc: dataset(wc.dataset)["clip_len"],
    shell:
        "python -m sdst.reporting.plots examples --pred {input.pred} --gt {input.gt} --clip-len {params.clip_len} "
        "--out {output} > {log} 2>&1"


rule diagnose_levels:
    """Moment retrieval at every refinement level of an SDST-family model over the headline split, from one seed's
    best checkpoint (sdst.levels)."""
    input:
        ckpt=levels_checkpoint,
        features=ancient(lambda wc: f"{xdir(wc.dataset)}/summary.json"),
    output:
        json="results/{dataset}/{model}/seed{seed}/diagnose/levels.json",
    log:
        "logs/diagnose/{dataset}/{model}/seed{seed}.levels.log",
    conda:
        "../../envs/sdst.yaml"
    threads: max(train_setting(config, "threads"), 1)
    resources:
        gpu=gpus(train_setting(config, "device")),
        mem_mb=job_mem_mb("predict"),
        runtime=lambda wc: TINY_MIN if backbone(wc) == "tiny" else 60,
        device=train_setting(config, "device"),
    params:
        code=arch_code("sdst.levels"),
        features=features_digest,
        split=lambda wc: report_splits(wc.dataset)[0],
        out=lambda wc, output: str(Path(output.json).parent),
    shell:
        "python -m sdst.levels --checkpoint {input.ckpt} --features {input.features} --split {params.split} "
        "--device {resources.device} --out {params.out} > {log} 2>&1"


rule diagnose_offsets:
    """Where the deformable offsets point (paper Fig. 4): d_q = sum_p A_qp Delta_qp per level and head, relative
    to the reference's width, over the headline split, from one seed's best checkpoint (sdst.diagnose)."""
    input:
        ckpt=diagnose_checkpoint,
        features=ancient(lambda wc: f"{xdir(wc.dataset)}/summary.json"),
    output:
        png=report(
            "results/{dataset}/{model}/seed{seed}/diagnose/offsets.png",
            caption="../report/offsets.rst",
            category="Diagnostics",
            subcategory="{dataset}",
            labels={"figure": "{model}, seed {seed}, deformable offsets"},
        ),
        json="results/{dataset}/{model}/seed{seed}/diagnose/offsets.json",
    log:
        "logs/diagnose/{dataset}/{model}/seed{seed}.log",
    conda:
        "../../envs/sdst.yaml"
    threads: max(train_setting(config, "threads"), 1)
    resources:
        gpu=gpus(train_setting(config, "device")),
        mem_mb=job_mem_mb("predict"),
        runtime=lambda wc: TINY_MIN if backbone(wc) == "tiny" else 60,
        device=train_setting(config, "device"),
    params:
        code=arch_code("sdst.diagnose"),
        features=features_digest,
        split=lambda wc: report_splits(wc.dataset)[0],
        out=lambda wc, output: str(Path(output.png).parent),
    shell:
        "python -m sdst.diagnose --checkpoint {input.ckpt} --features {input.features} --split {params.split} "
        "--device {resources.device} --out {params.out} > {log} 2>&1"
