from adaspx.pipeline import ask_people, log_to

i = snakemake.input
with log_to(snakemake.log[0]):
    ask_people(
        i.manifest,
        i.selection,
        list(i.regions),
        people_csv=snakemake.output.people,
        earlier_people=list(i.earlier),
        **snakemake.params.projects,
        **snakemake.config["annotator"]["label_studio"],
        **snakemake.params.provenance,
    )
