if DS["kind"] == "synthetic":

    rule synthesize_dataset:
        output:
            directory(DATASET_ROOT),
        params:
            synthetic=DS.get("synthetic", {}),
        log:
            f"{LOGS}/synthesize_dataset.log",
        script:
            "../scripts/synthesize_dataset.py"


rule prepare_dataset:
    input:
        root=DATASET_ROOT,
    output:
        manifest=f"{RESULTS}/manifest.json",
    params:
        kind=DS["kind"],
        splits={"pool": DS["pool_split"], "val": DS["val_split"]},
    log:
        f"{LOGS}/prepare_dataset.log",
    script:
        "../scripts/prepare_dataset.py"
