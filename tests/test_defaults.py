"""The config schema is the single source of defaults: every default a stage function or model setting repeats for
library callers equals the schema's, and every schema key with a default is accounted for here."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from adaspx import annotation, merge, pipeline, superpixels, synthetic, training
from adaspx.models import build_model
from adaspx.pipeline.gallery import gallery as pipeline_gallery

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"

# schema key -> the functions (or dataclasses) that take it, and under which parameter name
COUNTERPARTS = {
    "superpixels.oracle": [(pipeline.oracle_superpixels, "method"), (superpixels.oracle_superpixels, "method")],
    **{f"superpixels.slic.{k}": [(superpixels.slic_superpixels, k)] for k in ("n_segments", "compactness", "sigma")},
    **{
        f"superpixels.seeds.{k}": [(superpixels.seeds_superpixels, k)]
        for k in ("num_superpixels", "num_levels", "prior", "histogram_bins", "double_step", "iterations", "preset")
    },
    "superpixels.seeds.equalize_hist": [
        (superpixels.seeds_superpixels, "equalize_hist"),
        (superpixels.seeds_hsv, "equalize_hist"),
    ],
    "superpixels.seeds.hue": [(superpixels.seeds_superpixels, "hue"), (superpixels.seeds_hsv, "hue")],
    "pool.shards": [(pipeline.pool_ids, "shards")],
    "model.weights": [(pipeline.train, "weights"), (training.train_model, "weights"), (build_model, "weights")],
    **{
        f"train.{k}": [(training.TrainConfig, k)]
        for k in ("iterations", "batch_size", "lr", "momentum", "weight_decay", "crop_size", "hflip")
    },
    "train.checkpoint_every": [(training.train_model, "checkpoint_every")],
    "train.scales": [(training.TrainConfig, "scales")],
    "infer.half_resolution": [(pipeline.infer, "half_resolution"), (training.predict_probs, "half_resolution")],
    "infer.dtype": [(pipeline.infer, "dtype")],
    "al.statistics": [(pipeline.acquire, "statistics"), (pipeline.merge_superpixels, "grid")],
    **{
        f"train.set_loss.{k}": [(training.SetLoss, k)]
        for k in ("ce_weight", "mc_weight", "group_weight", "ce_temperature", "mc_temperature", "group_temperature")
    },
    "train.pseudo_labels": [(pipeline.train, "pseudo_labels")],
    "annotator.trim": [(pipeline.annotate, "trim"), (annotation.class_sets, "trim")],
    "annotator.void": [(pipeline.annotate, "void"), (annotation.class_sets, "void")],
    "experiments[].answer": [(pipeline.annotate, "answer")],
    "targets.overlap": [(pipeline.annotate, "overlap")],
    "infer.batch_size": [
        (pipeline.infer, "batch_size"),
        (pipeline.evaluate, "batch_size"),
        (training.predict_probs, "batch_size"),
    ],
    "infer.stride": [(pipeline.infer, "stride"), (training.predict_probs, "stride"), (annotation.sieve_mask, "stride")],
    **{
        f"al.{k}": [(pipeline.acquire, k)]
        for k in ("exclude_labeled", "size_exponent", "max_per_image", "max_per_class")
    },
    "al.click_cost": [(pipeline.acquire, "click_cost"), (pipeline.annotate, "click_cost")],
    "al.overshoot": [(pipeline.annotate, "overshoot")],
    "merge.eps": [(merge.adaptive_merge, "eps"), (merge.region_stats_and_merge, "eps"), (merge.merge_many, "eps")],
    "merge.max_visited": [
        (pipeline.merge_superpixels, "max_visited"),
        (merge.adaptive_merge, "max_visited"),
        (merge.region_stats_and_merge, "max_visited"),
        (merge.merge_many, "max_visited"),
    ],
    "report.gallery_images": [(pipeline_gallery, "images")],
    "merge.loop": [
        (pipeline.merge_superpixels, "loop"),
        (merge.adaptive_merge, "loop"),
        (merge.region_stats_and_merge, "loop"),
    ],
    "sieve.min_pixels": [(pipeline.annotate, "min_pixels")],
    "sieve.method": [
        (pipeline.annotate, "sieve_method"),
        (annotation.sieve_mask, "method"),
        (annotation.sieve_answered, "method"),
    ],
    "sieve.disagree_threshold": [
        (pipeline.annotate, "disagree_threshold"),
        (annotation.sieve_mask, "disagree_threshold"),
        (annotation.sieve_answered, "disagree_threshold"),
    ],
    "sieve.freeze": [(pipeline.annotate, "freeze_sieve")],
    "experiments[].sieve": [(pipeline.annotate, "sieve")],
    "dataset.synthetic.train_size": [(synthetic.write_dataset, "train_size")],
    "dataset.synthetic.val_size": [(synthetic.write_dataset, "val_size")],
    "dataset.synthetic.height": [(synthetic.write_dataset, "height")],
    "dataset.synthetic.width": [(synthetic.write_dataset, "width")],
    "dataset.synthetic.seed": [(synthetic.write_dataset, "seed")],
}

# keys only the workflow reads (rule files, common.smk): no function repeats their default
WORKFLOW_ONLY = {
    "dataset.pool_split",
    "dataset.val_split",
    "dataset.pool_list",
    "dataset.val_list",
    "train.init",
    "fidelity",
    "al.oracle_warmup",
    "infer.keep",
    # who answers, and where the Label Studio server is: ask_people takes them without defaults
    "annotator.kind",
    "annotator.label_studio.url",
    "annotator.label_studio.token_env",
    "annotator.label_studio.python",
    "annotator.label_studio.document_root",
}


def schema_defaults(node: dict, path: str = "") -> dict[str, object]:
    """Dotted key -> default of every schema property with one (blocks defaulting to {} excluded: their keys are)."""
    found = {}
    for key, sub in node.get("properties", {}).items():
        dotted = f"{path}.{key}" if path else key
        if "default" in sub and sub["default"] != {}:
            found[dotted] = sub["default"]
        found.update(schema_defaults(sub, dotted))
    if "items" in node:
        found.update(schema_defaults(node["items"], f"{path}[]"))
    return found


DEFAULTS = schema_defaults(yaml.safe_load(SCHEMA.read_text()))


def default_of(target, name: str):
    """The default a function parameter or dataclass field declares (inspect.Parameter.empty when required)."""
    if dataclasses.is_dataclass(target):
        field = {f.name: f for f in dataclasses.fields(target)}[name]
        return inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default
    return inspect.signature(target).parameters[name].default


def test_every_schema_default_is_accounted_for():
    assert set(DEFAULTS) == set(COUNTERPARTS) | WORKFLOW_ONLY
    assert not set(COUNTERPARTS) & WORKFLOW_ONLY


@pytest.mark.parametrize("key", sorted(COUNTERPARTS))
def test_functions_repeat_the_schema_default_or_require_the_value(key):
    for target, name in COUNTERPARTS[key]:
        declared = default_of(target, name)
        if declared is not inspect.Parameter.empty:
            assert declared == DEFAULTS[key], f"{target.__qualname__}({name}={declared!r}): schema says {key}"
