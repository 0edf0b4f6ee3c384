if DS["kind"] == "synthetic":

    rule synthesize_dataset:
        output:
            directory(DATASET_ROOT),
        log:
            f"{LOGS}/synthesize_dataset.log",
        benchmark:
            f"{RESULTS}/benchmarks/synthesize_dataset.tsv"
        conda:
            CONDA_ENV
        params:
            synthetic=DS.get("synthetic", {}),
        script:
            "../scripts/synthesize_dataset.py"


rule prepare_dataset:
    input:
        root=DATASET_ROOT,
        lists=LIST_FILES,
    output:
        manifest=f"{RESULTS}/manifest.json",
    log:
        f"{LOGS}/prepare_dataset.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_dataset.tsv"
    conda:
        CONDA_ENV
    params:
        kind=DS["kind"],
        splits={"pool": DS["pool_split"], "val": DS["val_split"]},
        list_files={"pool": DS.get("pool_list"), "val": DS.get("val_list")},
    script:
        "../scripts/prepare_dataset.py"
