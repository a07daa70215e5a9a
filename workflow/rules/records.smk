# A finished run recorded without its weights (config `run_records`; python -m sdst.archive save --outputs) stands
# for the jobs that made each recorded piece (its log and summary, its predictions, its diagnostics) when the run
# and the code of that piece's job are this workflow's (common.smk: recorded_piece). The record is small enough for
# git, so a comparison trained over several machines keeps its finished runs. A job that needs the weights (another
# split, the example figures) trains the run.


localrules:
    restore_record_train,
    restore_record_predictions,
    restore_record_levels,
    restore_record_offsets,


ruleorder: restore_run > restore_record_train > train
ruleorder: restore_record_predictions > predict
ruleorder: restore_record_levels > diagnose_levels
ruleorder: restore_record_offsets > diagnose_offsets


rule restore_record_train:
    """A recorded run's train_log.csv and train_summary.json (its curves drawn again), instead of training it."""
    input:
        recorded_piece("train"),
    output:
        log_csv=f"{RUN_DIR}/train_log.csv",
        curves=report(
            f"{RUN_DIR}/curves.png",
            caption="../report/curves.rst",
            category="Training curves",
            subcategory="{dataset}",
            labels={"run": "{model}, seed {seed}"},
        ),
        summary=f"{RUN_DIR}/train_summary.json",
    log:
        f"{RUN_DIR}/train.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("sdst.archive"),
        piece_code=arch_code("sdst.train"),
        run=run_config,
        features=features_digest,
        entry=record_entry,
        out=run_folder,
    shell:
        "python -m sdst.archive restore {params.entry} --piece train --out {params.out} > {log} 2>&1"


rule restore_record_predictions:
    """A recorded run's predictions on one split (and the two files beside them), instead of predicting."""
    input:
        recorded_piece("predictions_{split}"),
    output:
        pred=f"{RUN_DIR}/predictions_{{split}}.jsonl",
        gt=f"{RUN_DIR}/predictions_{{split}}.jsonl.gt.jsonl",
        info=f"{RUN_DIR}/predictions_{{split}}.jsonl.info.json",
    log:
        f"{RUN_DIR}/predict_{{split}}.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("sdst.archive"),
        piece_code=arch_code("sdst.infer"),
        run=run_config,
        features=features_digest,
        entry=record_entry,
        out=run_folder,
    shell:
        "python -m sdst.archive restore {params.entry} --piece predictions_{wildcards.split} "
        "--out {params.out} > {log} 2>&1"


rule restore_record_levels:
    """A recorded run's levels.json (sdst.levels), instead of computing it from the weights."""
    input:
        recorded_piece("levels"),
    output:
        json=f"{RUN_DIR}/diagnose/levels.json",
    log:
        "logs/diagnose/{dataset}/{model}/seed{seed}.levels.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("sdst.archive"),
        piece_code=arch_code("sdst.levels"),
        run=run_config,
        features=features_digest,
        entry=record_entry,
        out=run_folder,
    shell:
        "python -m sdst.archive restore {params.entry} --piece levels --out {params.out} > {log} 2>&1"


rule restore_record_offsets:
    """A recorded run's offsets figure and statistics (sdst.diagnose), instead of computing them from the weights."""
    input:
        recorded_piece("offsets"),
    output:
        png=report(
            f"{RUN_DIR}/diagnose/offsets.png",
            caption="../report/offsets.rst",
            category="Diagnostics",
            subcategory="{dataset}",
            labels={"figure": "{model}, seed {seed}, deformable offsets"},
        ),
        json=f"{RUN_DIR}/diagnose/offsets.json",
    log:
        "logs/diagnose/{dataset}/{model}/seed{seed}.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("sdst.archive"),
        piece_code=arch_code("sdst.diagnose"),
        run=run_config,
        features=features_digest,
        entry=record_entry,
        out=run_folder,
    shell:
        "python -m sdst.archive restore {params.entry} --piece offsets --out {params.out} > {log} 2>&1"
