"""Stage ``gallery``: the report's pictures of a few pool images in every round of one experiment and seed."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from adaspx import datasets
from adaspx.pipeline.common import pool_ids


def gallery(manifest_path, round_dirs: Sequence[str], out_dir, *, images: int, seed: int = 0) -> list[Path]:
    """``round<r>_<image>.png`` in ``out_dir`` for every round folder and each of ``images`` pool images, the same
    images in every round, experiment and seed (:func:`adaspx.show.gallery_images` with ``seed``), drawn by
    :func:`adaspx.show.render_round_panel`. The pictures are drawn into a sibling folder that replaces ``out_dir``
    once all are there."""
    from adaspx.show import Round, gallery_images, render_round_panel

    chosen = gallery_images(pool_ids(datasets.load_manifest(manifest_path)), images, seed)
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written = []
    for folder in round_dirs:
        number = Round.of(folder).number
        for image_id in chosen:
            written.append(render_round_panel(folder, image_id, tmp / f"round{number}_{image_id}.png"))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return [out / p.name for p in written]
