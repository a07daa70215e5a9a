# Stage 1: demo data (generated datasets only), feature store creation, shard extraction, summary.


# Seconds of work that need no cluster allocation: on SLURM they run on the submitting node (a local run runs
# everything locally anyway).
localrules:
    init_store,
    extract_summary,
    extraction_report,


for _name, _ds in config["datasets"].items():
    if "generate" not in _ds:
        continue

    rule:
        name:
            f"demo_data_{_name}"
        output:
            annotations=[_ds["annotations"][s] for s in sorted(_ds["annotations"])],
            videos=directory(_ds["videos"]),
        log:
            f"logs/demo_data/{_name}.log",
        conda:
            "../../envs/extract.yaml"
        threads: 2
        resources:
            mem_mb=SMALL_MEM_MB,
            runtime=TINY_MIN,
        params:
            code=code("extract.__main__", "extract.demo"),
            spec=canonical_json(_ds["generate"]),
            out=lambda wc, output: str(Path(output.videos).parent),
        shell:
            "python -m extract demo-data --out {params.out} --spec {params.spec:q} --workers {threads} > {log} 2>&1"


rule init_store:
    """Create the dataset's Zarr store once, before any shard job writes into it."""
    input:
        check_hash,
        dataset_checks,
    output:
        f"{CACHE}/{{dataset}}/{{xhash}}/store.json",
    log:
        f"logs/extract/{{dataset}}/{{xhash}}/init_store.log",
    conda:
        "../../envs/extract.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("extract.__main__", "extract.stores"),
        identity=lambda wc: canonical_json(identity(wc.dataset)),
        store=lambda wc, output: str(Path(output[0]).parent / "features.zarr"),
    shell:
        "python -m extract init-store --store {params.store} --identity {params.identity:q} --out {output} > {log} 2>&1"


rule extract_shard:
    """Decode + backbone for the videos (and queries) hashed to this shard; skips items that verify."""
    input:
        check_hash,
        store=f"{CACHE}/{{dataset}}/{{xhash}}/store.json",
        annotations=lambda wc: annotation_files(wc.dataset),
        videos=lambda wc: dataset(wc.dataset)["videos"],
        # rewritten when the store lost some of this shard's items or a video file changed (extract.repair)
        health=shard_health,
    output:
        f"{CACHE}/{{dataset}}/{{xhash}}/shards/{{shard}}-of-{{nshards}}.json",
    log:
        f"logs/extract/{{dataset}}/{{xhash}}/shard{{shard}}-of-{{nshards}}.log",
    conda:
        "../../envs/extract.yaml"
    # the decode processes and the torch threads; extract.run settings are resources, not params: changing how
    # the work runs re-runs nothing
    threads: extract_threads()
    resources:
        gpu=gpus(RUN["device"]),
        mem_mb=job_mem_mb("extract_shard"),
        runtime=extract_runtime,
        torch_threads=RUN["threads"],
        decode_workers=RUN["decode_workers"],
        batch_clips=RUN["batch_clips"],
        decode_timeout_s=RUN["decode_timeout_s"],
        device=RUN["device"],
    params:
        code=code("extract.__main__", "extract.shard"),
        checkpoint=lambda wc: (
            f"--checkpoint {dataset(wc.dataset)['checkpoint']}" if dataset(wc.dataset).get("checkpoint") else ""
        ),
        exts=lambda wc: ",".join(video_exts(wc.dataset)),
    shell:
        "python -m extract shard --store-json {input.store} --annotations {input.annotations} "
        "--videos {input.videos} {params.checkpoint} --shard {wildcards.shard} --n-shards {wildcards.nshards} "
        "--workers {resources.decode_workers} --batch-clips {resources.batch_clips} "
        "--timeout {resources.decode_timeout_s} --device {resources.device} --threads {resources.torch_threads} "
        "--exts {params.exts} --out {output} > {log} 2>&1"


rule import_features:
    """Imported features (datasets.<name>.features): the files the annotations name, checked and written into the
    dataset's store; resumes, re-importing only absent, damaged or changed items; a bad file is listed, the rest is
    imported (exit status 1 is that case)."""
    input:
        check_hash,
        store=f"{CACHE}/{{dataset}}/{{xhash}}/store.json",
        annotations=lambda wc: annotation_files(wc.dataset),
        # rewritten when an imported item was lost or a file changed, appeared or went (extract.repair)
        health=import_health,
    output:
        f"{CACHE}/{{dataset}}/{{xhash}}/import.json",
    log:
        f"logs/extract/{{dataset}}/{{xhash}}/import.log",
    conda:
        "../../envs/extract.yaml"
    resources:
        mem_mb=job_mem_mb("import_features"),
        runtime=lambda wc: TINY_MIN if backbone(wc) == "tiny" else 120,
    params:
        code=code("extract.__main__", "extract.importer"),
        args=import_args,
    shell:
        "python -m extract import --store-json {input.store} {params.args} --annotations {input.annotations} "
        "--report {output} --no-progress > {log} 2>&1 || [ $? -eq 1 ]"


# a checkpoint: what depends on the features reads their digest from its output again after it ran
checkpoint extract_summary:
    """Merge the shard reports: counts, every video that failed with its file and reason, the features digest."""
    input:
        store=f"{CACHE}/{{dataset}}/{{xhash}}/store.json",
        shards=lambda wc: shard_reports(wc.dataset),
    output:
        f"{CACHE}/{{dataset}}/{{xhash}}/summary.json",
    log:
        f"logs/extract/{{dataset}}/{{xhash}}/summary.log",
    conda:
        "../../envs/extract.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("extract.__main__", "extract.stores"),
    shell:
        "python -m extract summary --store-json {input.store} --shards {input.shards} --out {output} > {log} 2>&1"


rule extraction_report:
    """results/{dataset}/extraction.json: the current cache's summary, where users look for results."""
    input:
        lambda wc: f"{xdir(wc.dataset)}/summary.json",
    output:
        "results/{dataset}/extraction.json",
    log:
        "logs/extract/{dataset}/extraction_report.log",
    conda:
        "../../envs/extract.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    shell:
        "cp {input} {output} 2> {log}"


rule extract_folder:
    """Any folder of videos (config `folders`), no annotations: features/{name}/ as `python -m extract videos`
    writes it (features.zarr, store.json, shards/, summary.json); resumes, like the shard jobs."""
    input:
        videos=lambda wc: folder(wc.name)["videos"],
        queries=lambda wc: folder(wc.name).get("queries") or [],
    output:
        "features/{name}/summary.json",
    log:
        "logs/extract_folder/{name}.log",
    conda:
        "../../envs/extract.yaml"
    threads: extract_threads()
    resources:
        gpu=gpus(RUN["device"]),
        mem_mb=lambda wc: MEM_MB["extract_shard"][folder(wc.name)["backbone"]],
        runtime=lambda wc: TINY_MIN if folder(wc.name)["backbone"] == "tiny" else 24 * 60,
        torch_threads=RUN["threads"],
        decode_workers=RUN["decode_workers"],
        batch_clips=RUN["batch_clips"],
        decode_timeout_s=RUN["decode_timeout_s"],
        device=RUN["device"],
    params:
        code=code("extract.__main__", "extract.videos"),
        out=lambda wc, output: str(Path(output[0]).parent),
        queries=lambda wc, input: f"--queries {input.queries}" if input.queries else "",
        checkpoint=lambda wc: (
            f"--checkpoint {folder(wc.name)['checkpoint']}" if folder(wc.name).get("checkpoint") else ""
        ),
        backbone=lambda wc: folder(wc.name)["backbone"],
        clip_len=lambda wc: folder(wc.name).get("clip_len", 2.0),
        clip_rule=lambda wc: folder(wc.name).get("clip_rule", "round"),
        settings=canonical_json({k: config["extract"][k] for k in FEATURE_KEYS}),
    shell:
        "python -m extract videos --videos {input.videos} --out {params.out} {params.queries} "
        "--backbone {params.backbone} {params.checkpoint} --clip-len {params.clip_len} --clip-rule {params.clip_rule} --settings {params.settings:q} "
        "--workers {resources.decode_workers} --batch-clips {resources.batch_clips} --timeout {resources.decode_timeout_s} "
        "--device {resources.device} --threads {resources.torch_threads} --no-progress > {log} 2>&1"
