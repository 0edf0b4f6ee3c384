if DS["kind"] == "synthetic":

    rule synthesize_dataset:
        output:
            SYNTHETIC_SUMMARY,
        log:
            f"{LOGS}/synthesize_dataset.log",
        benchmark:
            f"{RESULTS}/benchmarks/synthesize_dataset.tsv"
        localrule: True
        conda:
            CONDA_ENV
        params:
            root=lambda w, output: os.path.dirname(output[0]),
            synthetic=DS["synthetic"],
        script:
            "../scripts/synthesize_dataset.py"


rule prepare_dataset:
    input:
        dataset=DATASET_FILES,
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
        # the folder the dataset's files lie in (not a prefix of the input files: those are the files themselves)
        root=lambda w: DATASET_ROOT,
        splits={"pool": DS["pool_split"], "val": DS["val_split"]},
        list_files={"pool": DS["pool_list"], "val": DS["val_list"]},
    script:
        "../scripts/prepare_dataset.py"
