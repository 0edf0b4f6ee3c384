# adaspx: superpixel-based active learning for semantic segmentation.
#
#   snakemake --cores all                       # built-in synthetic dataset (config/config.yaml)
#   snakemake --cores all --configfile config/my.yaml
#   snakemake --profile profiles/slurm          # the same workflow on a SLURM cluster
#
# Results layout (every path below is under results/<dataset.name>/; logs mirror it under logs/<dataset.name>/):
#   manifest.json                                    every pool and val image, checked once (prepare_dataset)
#   superpixels/{base,oracle}_shard<k>.h5            base superpixels and oracle regions per pool shard
#   warmup/seed<s>/round0/                           round 0, shared by every experiment of seed s:
#       selection.csv answers.csv answers.h5 targets.h5 annotation_stats.json model.pt metrics.json
#       probs_shard<k>.h5 (temp unless infer.keep)   regions_shard<k>.h5 (adaptive regions for round 1)
#   <experiment>/seed<s>/round<r>/                   rounds r >= 1: the same files, round r's
#   <...>/round<r>/benchmarks/<rule>.tsv             runtime and peak memory of every job
#   benchmarks/<rule>.tsv                            the same for the dataset-level jobs
#   summary.csv summary_per_class.csv comparisons.csv learning_curves.png usage.csv usage.png
#   gallery/<experiment>/seed<s>/round<r>_<image>.png  a few pool images of every round (report.gallery_images)


import copy

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


RAW_CONFIG = copy.deepcopy(
    config
)  # before the schema fills defaults: what the config files set (fidelity, common.smk)


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


# Cheap bookkeeping jobs run on the submitting node, never queued on a cluster (synthesize_dataset too: it says so
# itself, as it exists only for the synthetic dataset).
localrules:
    all,
    summarize,
    usage,
    prepare_dataset,


include: "workflow/rules/common.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/superpixels.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/summarize.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/summary.csv",
        f"{RESULTS}/summary_per_class.csv",
        f"{RESULTS}/learning_curves.png",
        f"{RESULTS}/comparisons.csv",
        f"{RESULTS}/usage.csv",
        f"{RESULTS}/usage.png",
        gallery_dirs(),
