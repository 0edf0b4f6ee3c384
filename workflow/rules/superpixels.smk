rule base_superpixels:
    input:
        manifest=rules.prepare_dataset.output.manifest,
    output:
        f"{RESULTS}/superpixels/base_shard{{shard}}.h5",
    log:
        f"{LOGS}/base_superpixels_shard{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/base_superpixels_shard{{shard}}.tsv"
    conda:
        CONDA_ENV
    params:
        method=config["superpixels"]["method"],
        method_params=config["superpixels"][config["superpixels"]["method"]],
        shards=len(SHARDS),
    script:
        "../scripts/base_superpixels.py"


rule oracle_superpixels:
    input:
        manifest=rules.prepare_dataset.output.manifest,
    output:
        f"{RESULTS}/superpixels/oracle_shard{{shard}}.h5",
    log:
        f"{LOGS}/oracle_superpixels_shard{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/oracle_superpixels_shard{{shard}}.tsv"
    conda:
        CONDA_ENV
    params:
        method=config["superpixels"]["oracle"],
        shards=len(SHARDS),
    script:
        "../scripts/oracle_superpixels.py"
