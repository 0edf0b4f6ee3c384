rule summarize:
    input:
        metrics=[e["metrics"] for e in summary_entries()],
        stats=[e["stats"] for e in summary_entries()],
    output:
        summary=report(
            f"{RESULTS}/summary.csv",
            category="Results",
            caption="../report/summary.rst",
        ),
        per_class=report(
            f"{RESULTS}/summary_per_class.csv",
            category="Results",
            caption="../report/summary_per_class.rst",
        ),
        comparisons=report(
            f"{RESULTS}/comparisons.csv",
            category="Results",
            caption="../report/comparisons.rst",
        ),
        curves=report(
            f"{RESULTS}/learning_curves.png",
            category="Results",
            caption="../report/learning_curves.rst",
        ),
    log:
        f"{LOGS}/summarize.log",
    benchmark:
        f"{RESULTS}/benchmarks/summarize.tsv"
    conda:
        CONDA_ENV
    params:
        entries=summary_entries(),
    script:
        "../scripts/summarize.py"
