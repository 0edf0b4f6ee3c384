rule summarize:
    input:
        metrics=[e["metrics"] for e in summary_entries()],
        stats=[e["stats"] for e in summary_entries()],
    output:
        summary=f"{RESULTS}/summary.csv",
        curves=f"{RESULTS}/learning_curves.png",
    params:
        entries=summary_entries(),
    log:
        f"{LOGS}/summarize.log",
    script:
        "../scripts/summarize.py"
