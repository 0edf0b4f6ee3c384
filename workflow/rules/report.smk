# What `snakemake --report report.html` shows besides summarize's outputs: runtime and memory per rule, and a
# gallery of a few pool images in every round of every experiment and seed.


rule usage:
    input:
        # every other job's benchmark file is written once these exist: the rule reads them all from the results
        summary=f"{RESULTS}/summary.csv",
        gallery=gallery_dirs(),
    output:
        table=report(
            f"{RESULTS}/usage.csv",
            category="Resources",
            caption="../report/usage.rst",
        ),
        plot=report(
            f"{RESULTS}/usage.png",
            category="Resources",
            caption="../report/usage.rst",
        ),
    log:
        f"{LOGS}/usage.log",
    benchmark:
        # read by the next run's usage job (this one's is written when it ends)
        f"{RESULTS}/benchmarks/usage.tsv"
    conda:
        CONDA_ENV
    params:
        # the folder of the results: every job's benchmark file lies below it
        results=lambda w, input: str(Path(input.summary).parent),
    script:
        "../scripts/usage.py"


rule gallery:
    input:
        manifest=f"{RESULTS}/manifest.json",
        rounds=gallery_rounds,
    output:
        report(
            directory(f"{RESULTS}/gallery/{{experiment}}/seed{{seed}}"),
            patterns=["round{round,\\d+}_{image}.png"],
            category="Gallery",
            subcategory="{experiment}",
            caption="../report/gallery.rst",
            labels={"seed": "{seed}", "round": "{round}", "image": "{image}"},
        ),
    log:
        f"{LOGS}/gallery/{{experiment}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/{{experiment}}/seed{{seed}}/benchmarks/gallery.tsv"
    conda:
        CONDA_ENV
    params:
        folders=lambda w, input: [str(Path(p).parent) for p in input.rounds],
        images=config["report"]["gallery_images"],
    script:
        "../scripts/gallery.py"
