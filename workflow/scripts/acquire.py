from adaspx.pipeline import acquire, log_to

i = snakemake.input
with log_to(snakemake.log[0]):
    acquire(
        i.manifest,
        list(i.regions),
        list(i.probs),
        i.answers or None,
        snakemake.output.selection,
        **dict(snakemake.params.items()),
    )
