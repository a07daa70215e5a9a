# Stage 3: significance reports across models (Friedman / Nemenyi, critical-difference diagram).
# Each entry of `significance.reports` names its output folder: {folder}/report.md, with report.json,
# scores.csv and cd_diagram.png beside it; the page embeds the offsets figures of its SDST-family models.


rule significance_report:
    """Tables of mean ± std per dataset and model, parameter counts, then the statistics across all of them, the
    breakdown by moment length and, for SDST-family models, where the deformable offsets point (Fig. 4) and what
    each refinement level predicts."""
    input:
        metrics=report_inputs,
        gt=lambda wc: list(report_ground_truth(wc).values()),
        offsets=report_offsets,
        levels=report_levels,
    output:
        report="{folder}/report.md",
        json="{folder}/report.json",
        scores="{folder}/scores.csv",
        html=report(
            "{folder}/report.html",
            caption="../report/significance.rst",
            category="Significance",
            labels={"report": "{folder}", "figure": "tables and tests"},
        ),
        cd=report(
            "{folder}/cd_diagram.png",
            caption="../report/cd_diagram.rst",
            category="Significance",
            labels={"report": "{folder}", "figure": "critical-difference diagram"},
        ),
    log:
        "logs/significance/{folder}.log",
    conda:
        "../../envs/sdst.yaml"
    resources:
        mem_mb=SMALL_MEM_MB,
        runtime=SMALL_MIN,
    params:
        code=code("sdst.reporting.significance"),
        spec=lambda wc: report_spec(wc.folder),
        gt=report_gt_options,
    shell:
        "python -m sdst.reporting.significance --metrics {input.metrics} --offsets {input.offsets} --levels {input.levels} "
        "{params.gt} --out {output.report} "
        "{params.spec} > {log} 2>&1"
