# adaspx: superpixel-based active learning for semantic segmentation.
#
#   snakemake --cores all                       # built-in synthetic dataset (config/config.yaml)
#   snakemake --cores all --configfile config/my.yaml
#   snakemake --profile profiles/slurm          # the same workflow on a SLURM cluster


from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


# Cheap bookkeeping jobs run on the submitting node, never queued on a cluster.
localrules:
    all,
    summarize,
    prepare_dataset,
    synthesize_dataset,


include: "workflow/rules/common.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/superpixels.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/summarize.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/summary.csv",
        f"{RESULTS}/summary_per_class.csv",
        f"{RESULTS}/learning_curves.png",
