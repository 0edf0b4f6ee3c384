rule summarize:
    input:
        metrics=[e["metrics"] for e in summary_entries()],
        stats=[e["stats"] for e in summary_entries()],
    output:
        summary=f"{RESULTS}/summary.csv",
        per_class=f"{RESULTS}/summary_per_class.csv",
        curves=f"{RESULTS}/learning_curves.png",
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
