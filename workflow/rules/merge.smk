rule merge_superpixels:
    input:
        base=f"{RESULTS}/superpixels/base_shard{{shard}}.h5",
        probs=merge_probs,
    output:
        regions=f"{ROUND}/regions_shard{{shard}}.h5",
    log:
        f"{ROUND_LOGS}/merge_superpixels_shard{{shard}}.log",
    benchmark:
        f"{ROUND}/benchmarks/merge_superpixels_shard{{shard}}.tsv"
    conda:
        CONDA_ENV
    threads: 2
    params:
        merge=config["merge"],
        statistics=merge_statistics,
        provenance=provenance,
    script:
        "../scripts/merge_superpixels.py"
