"""Stage ``summarize``: one table and the learning curves of every experiment, seed and round."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from adaspx.comparisons import compare
from adaspx.h5io import write_csv, write_figure

SUMMARY_COLUMNS = [
    "experiment",
    "seed",
    "round",
    "clicks",
    "labeled_pixels",
    "miou",
    "label_precision",
    "label_precision_before_sieve",
    "correct_pixels_kept",
    "set_pixels",
    "set_precision",
]
SUMMARY_CLASS_COLUMNS = [
    "experiment",
    "seed",
    "round",
    "class",
    "labeled_pixels",
    "label_precision",
    "label_precision_before_sieve",
    "correct_pixels_kept",
    "iou",
]


def summarize(
    entries: Sequence[Mapping[str, Any]], summary_csv, curves_png, per_class_csv=None, comparisons_csv=None
) -> pd.DataFrame:
    """One row per (experiment, seed, round) from each round's metrics.json and annotation_stats.json; with
    ``per_class_csv``, also one row per class of each (label statistics and IoU on val); with
    ``comparisons_csv``, the paired comparisons of every two experiments (:func:`adaspx.comparisons.compare`)."""
    rows, class_rows = [], []
    for e in entries:
        metrics = json.loads(Path(e["metrics"]).read_text())
        stats = json.loads(Path(e["stats"]).read_text())
        key = {"experiment": e["experiment"], "seed": e["seed"], "round": e["round"]}
        iou = dict(zip(metrics["classes"], metrics["iou"], strict=True))
        for k, name in enumerate(metrics["classes"]):  # the manifest's class order (JSON objects are key-sorted)
            c = stats["per_class"][name]
            class_rows.append(
                {
                    **key,
                    "class": name,
                    "labeled_pixels": c["labeled_pixels"],
                    "label_precision": c["precision"],
                    "label_precision_before_sieve": c["precision_before_sieve"],
                    "correct_pixels_kept": c.get("correct_pixels_kept"),
                    "iou": iou[name],
                    "k": k,
                }
            )
        rows.append(
            {
                "experiment": e["experiment"],
                "seed": e["seed"],
                "round": e["round"],
                "clicks": stats["clicks"],
                "labeled_pixels": stats["labeled_pixels"],
                "miou": metrics["miou"],
                "label_precision": stats["label_precision"],
                "label_precision_before_sieve": stats["label_precision_before_sieve"],
                "correct_pixels_kept": stats["correct_pixels_kept"],
                # class-set answers (pixels trained with a set of several classes, share whose class is in it);
                # absent from the statistics of versions without class sets
                "set_pixels": stats.get("set_pixels", 0),
                "set_precision": stats.get("set_precision"),
            }
        )
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).sort_values(["experiment", "seed", "round"])
    write_csv(summary_csv, frame)
    if per_class_csv is not None:
        per_class = pd.DataFrame(class_rows).sort_values(["experiment", "seed", "round", "k"])
        write_csv(per_class_csv, per_class.reindex(columns=SUMMARY_CLASS_COLUMNS))
    if comparisons_csv is not None:
        order = list(dict.fromkeys(e["experiment"] for e in entries))  # the config's order
        write_csv(comparisons_csv, compare(frame, order))
    plot_learning_curves(frame, curves_png)
    return frame


def plot_learning_curves(frame: pd.DataFrame, out) -> None:
    """mIoU against clicks (left) and against labeled pixels (right), mean over seeds, band = min..max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120, sharey=True)
    for name, group in frame.groupby("experiment", sort=False):
        agg = group.groupby("round").agg(
            clicks=("clicks", "mean"),
            pixels=("labeled_pixels", "mean"),
            miou=("miou", "mean"),
            lo=("miou", "min"),
            hi=("miou", "max"),
        )
        for ax, x in zip(axes, ("clicks", "pixels"), strict=True):
            (line,) = ax.plot(agg[x], 100 * agg["miou"], marker="o", label=name)
            ax.fill_between(agg[x], 100 * agg["lo"], 100 * agg["hi"], color=line.get_color(), alpha=0.15)
    axes[0].set_xlabel("clicks")
    axes[1].set_xlabel("labeled pixels")
    axes[0].set_ylabel("mIoU on val (%)")
    fig.suptitle("Learning curves (mean over seeds, band = min..max)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    write_figure(out, fig)
    plt.close(fig)
