# Stage 3: significance reports across models (Friedman / Nemenyi, critical-difference diagram).
# Each entry of `significance.reports` names its output folder: {folder}/report.md, with report.json,
# scores.csv and cd_diagram.png beside it.


rule significance_report:
    """Tables of mean ± std per dataset and model, parameter counts, then the statistics across all of them."""
    input:
        metrics=report_inputs,
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
        code=code("sdst/report.py", "sdst/stats.py"),
        spec=lambda wc: report_spec(wc.folder),
    shell:
        "python -m sdst.report --metrics {input.metrics} --out {output.report} {params.spec} > {log} 2>&1"
