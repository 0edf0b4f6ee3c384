"""Reader throughput at Cityscapes size: images/s of ``open_dataset("cityscapes", ...)`` at 1024x2048.

Writes a few synthetic street scenes in the Cityscapes layout (labelIds PNGs, so the official id -> train id
mapping runs) into a temporary folder, then reads every item several times and reports images/s for the image,
the label, and both. A round reads each pool image a handful of times (train, infer, annotate); compare with the
per-image cost of training and inference.

    python benchmarks/bench_datasets.py [--images 6] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from adaspx.datasets import open_dataset
from adaspx.synthetic import generate_scene

# synthetic class index -> a Cityscapes label id of the same class
TO_LABEL_ID = {0: 7, 1: 8, 2: 11, 3: 21, 4: 23, 5: 26, 6: 24, 7: 17}


def write_cityscapes(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    lut = np.zeros(256, np.uint8)  # void -> 0 (unlabeled)
    for k, v in TO_LABEL_ID.items():
        lut[k] = v
    for i in range(n):
        image, label = generate_scene(rng, 1024, 2048)
        folder = "bench"
        stem = f"bench_{i:06d}_000019"
        (root / "leftImg8bit/val" / folder).mkdir(parents=True, exist_ok=True)
        (root / "gtFine/val" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "leftImg8bit/val" / folder / f"{stem}_leftImg8bit.png")
        Image.fromarray(lut[label]).save(root / "gtFine/val" / folder / f"{stem}_gtFine_labelIds.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cityscapes(root, args.images)
        ds = open_dataset("cityscapes", root, "val")
        results = {}
        for what, fn in [("image", ds.image), ("label", ds.label)]:
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                for image_id in ds.ids:
                    fn(image_id)
                best = min(best, time.perf_counter() - t0)
            results[what] = best / len(ds.ids)
        both = results["image"] + results["label"]
        print(f"Cityscapes reader, 1024x2048, {len(ds.ids)} images, best of {args.repeat}:")
        print(
            f"  image (PNG RGB decode):          {1e3 * results['image']:7.1f} ms  {1 / results['image']:6.1f} images/s"
        )
        print(
            f"  label (PNG + official id map):   {1e3 * results['label']:7.1f} ms  {1 / results['label']:6.1f} images/s"
        )
        print(f"  item (image + label):            {1e3 * both:7.1f} ms  {1 / both:6.1f} items/s")


if __name__ == "__main__":
    main()
