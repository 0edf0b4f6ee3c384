"""Stage ``merge_superpixels``: a round's adaptive regions and their statistics."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from adaspx import acquisition
from adaspx.artifacts import SCHEMA_REGIONS, SCHEMA_SUPERPIXELS, Probabilities, RegionTableWriter
from adaspx.h5io import Artifact, ArtifactWriter
from adaspx.parallel import BufferRing, ordered_map, usable_cores
from adaspx.pipeline.common import _progress

log = logging.getLogger("adaspx")


def merge_superpixels(
    base_path,
    probs_path,
    out,
    *,
    eps: float,
    experiment: str,
    seed: int,
    round: int,
    max_visited: int | None = None,
    loop: str = "kernel",
    threads: int | None = None,
    features: Sequence[str] = (),
    grid: str = "labels",
) -> None:
    """Adaptive regions of one pool shard, and their statistics for acquisition (``/stats``, ``/image_stats``; see
    :func:`adaspx.acquisition.region_features`; ``features``: the optional ones to add, those that the strategies
    of the experiments reading these regions need, :attr:`adaspx.acquisition.Strategy.features`). The merged
    regions' sums are added up from their base regions' (:func:`adaspx.merge.region_stats_and_merge`): equal to
    statistics computed on the merged map up to float64 rounding, for one kernel pass per image instead of two.

    The calling thread reads and writes; ``threads`` workers (default: every usable core) each decode, merge and
    describe one image at a time, single-threaded, so the result does not depend on their number. ``grid``
    (``al.statistics``): where the statistics are taken (:func:`adaspx.acquisition.grid_features`).
    """
    from adaspx.merge import _check_eps, _check_loop, _check_max_visited, region_stats_and_merge

    eps = _check_eps(eps)
    features = sorted(features)
    acquisition.feature_columns(features)  # names checked before any work
    if grid not in acquisition.STATISTICS_GRIDS:
        raise ValueError(f"statistics grid {grid!r} unknown; expected one of {', '.join(acquisition.STATISTICS_GRIDS)}")
    _check_max_visited(max_visited)
    _check_loop(loop)
    with (
        Artifact(base_path, SCHEMA_SUPERPIXELS) as base,
        Probabilities([probs_path]) as probs,
        ArtifactWriter(
            out,
            SCHEMA_REGIONS,
            config={"eps": eps, "max_visited": max_visited, "loop": loop, "features": features, "grid": grid},
            eps=eps,
            experiment=experiment,
            seed=seed,
            round=round,
        ) as w,
    ):

        def merge_one(image_id: str, labels: np.ndarray, raw: np.ndarray):
            p = probs.decode(image_id, raw, labels.shape)
            merged, stats = region_stats_and_merge(
                labels, p, eps, channel_axis=0, max_visited=max_visited, threads=1, loop=loop
            )
            columns = acquisition.grid_features(merged, p, probs.stride, features, grid, stats, probs.temperature)
            return image_id, merged, len(stats.ids), columns

        workers = threads or usable_cores()
        label_ring, probs_ring = BufferRing(workers), BufferRing(workers)

        def inputs():
            for image_id in base.names("labels"):
                yield image_id, base.get("labels", image_id, label_ring), probs.read(image_id, probs_ring)

        n_base = n_merged = 0
        table = RegionTableWriter(w)
        for image_id, merged, regions, (columns, per_image) in _progress(
            ordered_map(merge_one, inputs(), workers), "merge"
        ):
            base_regions = int(base.dataset("labels", image_id).attrs["regions"])
            w.add("labels", image_id, merged, regions=regions, base_regions=base_regions)
            table.add(image_id, columns, per_image)
            n_base, n_merged = n_base + base_regions, n_merged + regions
        table.flush()
        log.info("merged %d base regions into %d regions", n_base, n_merged)
