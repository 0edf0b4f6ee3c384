"""``fidelity: official``: the reference code's behaviour in every stage at once.

Each behaviour keeps its own config key; the switch only changes the keys the user's config does not set
(:func:`resolve`), so any of them can be mixed back. Settings the reference code has no counterpart for stop the
run (:func:`conflicts`). README, "Differences from the reference implementation", lists every difference with the
key that restores the reference behaviour.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

FIDELITIES = ("adaspx", "official")

OFFICIAL: dict[str, Any] = {
    # the network sees the half-size image; its softmax, at half resolution, is read by label pixel (y // 2, x // 2)
    "infer.half_resolution": True,
    # the float32 softmax as the reference computes it, not float16
    "infer.dtype": "float32",
    # acquisition statistics on the probabilities' grid, the region map shrunk to it with scipy's zoom (order 0)
    "al.statistics": "probabilities",
    # oracle experiments start from a warm-up of random clicks on oracle regions
    "al.oracle_warmup": True,
    # regions answered before are candidates again (and cost clicks again)
    "al.exclude_labeled": None,
    # 512 px: the reference's literal minimum (twice its mean SEEDS-8192 superpixel on 1024x2048 Cityscapes)
    "sieve.min_pixels": 512,
    # oracle regions: ground-truth contours filled in painter's order
    "superpixels.oracle": "official",
    # SEEDS as the reference calls it: HSV with hue in degrees, single-pixel level-0 blocks
    "superpixels.seeds.preset": "official",
    # the reference's merge loop: float32 means and distances (NaN never merges), its order, its cap's overshoot
    "merge.loop": "official",
    # answers painted over earlier ones: void answers and sieved pixels leave what was painted before
    "targets.overlap": "painter",
}
"""Dotted config key -> the value that reproduces the reference code."""

OFFICIAL_STRATEGIES = {"class_balanced": "class_balanced_official"}
"""Under ``fidelity: official`` an experiment's acquisition is read through this table."""

# key -> (the only value the reference has, what the reference does instead)
_REFERENCE_HAS = {
    "al.click_cost": ("region", "charges one click per region"),
    "al.overshoot": (False, "has no class-cost selection to overshoot"),
    "al.max_per_image": (None, "has no per-image cap"),
    "al.max_per_class": (None, "has no class quota"),
    "al.size_exponent": (0.0, "does not weight scores by region size"),
    "sieve.method": ("knee", "sieves with the knee only"),
    "sieve.freeze": (False, "re-sieves every answer every round"),
}


def explicit_keys(config: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every dotted key a (user's) config sets, blocks and leaves alike."""
    keys = set()
    for key, value in config.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        keys.add(dotted)
        if isinstance(value, Mapping):
            keys |= explicit_keys(value, dotted)
    return keys


def resolve(config: Mapping[str, Any], explicit: Iterable[str]) -> dict[str, Any]:
    """``config`` (defaults filled) with :data:`OFFICIAL`'s values for the keys not in ``explicit`` when its
    ``fidelity`` is ``official``, and every experiment's acquisition read through :data:`OFFICIAL_STRATEGIES`;
    unchanged otherwise."""
    out = copy.deepcopy(dict(config))
    if out.get("fidelity", "adaspx") != "official":
        return out
    explicit = set(explicit)
    for dotted, value in OFFICIAL.items():
        if dotted in explicit:
            continue
        *blocks, leaf = dotted.split(".")
        node = out
        for block in blocks:
            node = node.setdefault(block, {})
        node[leaf] = value
    for experiment in out.get("experiments", []):
        experiment["acquisition"] = OFFICIAL_STRATEGIES.get(experiment["acquisition"], experiment["acquisition"])
    return out


def conflicts(config: Mapping[str, Any]) -> list[str]:
    """One line per setting of a ``fidelity: official`` config that the reference code cannot honour."""
    if config.get("fidelity", "adaspx") != "official":
        return []
    found = []
    for dotted, (value, instead) in _REFERENCE_HAS.items():
        block, leaf = dotted.split(".")
        got = config.get(block, {}).get(leaf, value)
        if got != value:
            found.append(f"fidelity: official cannot honour {dotted}: {got} (the reference code {instead})")
    for experiment in config.get("experiments", []):
        if experiment.get("answer", "dominant") != "dominant":
            found.append(
                f"fidelity: official cannot honour experiments[{experiment['name']}].answer: {experiment['answer']} "
                "(the reference code answers dominant labels)"
            )
    return found
