"""Stage ``usage``: runtime and peak memory of every rule, from the jobs' Snakemake benchmark files."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from adaspx.h5io import write_csv, write_figure

USAGE_COLUMNS = ["rule", "jobs", "seconds_total", "seconds_max", "max_rss_mb", "cpu_seconds_total"]
"""``usage.csv``: one row per rule, jobs in descending total runtime."""

_SHARD = re.compile(r"_shard\d+$")


def rule_of(benchmark: Path) -> str:
    """The rule a benchmark file belongs to: its name without ``.tsv`` and a ``_shard<k>`` suffix."""
    return _SHARD.sub("", benchmark.stem)


def read_benchmarks(paths) -> pd.DataFrame:
    """One row per job: ``rule``, ``path`` and Snakemake's columns (``s``, ``max_rss`` in MB, ``cpu_time``, ...).
    A file that is not a Snakemake benchmark table stops with its path named."""
    frames = []
    for path in sorted(Path(p) for p in paths):
        try:
            frame = pd.read_csv(path, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a Snakemake benchmark table ({err})") from None
        missing = {"s", "max_rss", "cpu_time"} - set(frame.columns)
        if missing or frame.empty:
            raise ValueError(f"{path}: not a Snakemake benchmark table (columns {sorted(missing)} or rows missing)")
        frames.append(frame.assign(rule=rule_of(path), path=str(path)))
    if not frames:
        return pd.DataFrame(columns=["rule", "path", "s", "max_rss", "cpu_time"])
    return pd.concat(frames, ignore_index=True)


def usage_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs, total and longest runtime (s), the largest peak RSS (MB), total CPU time (s). Snakemake
    writes ``-`` where it could not measure; such values count as missing."""
    numeric = jobs.assign(**{c: pd.to_numeric(jobs[c], errors="coerce") for c in ("s", "max_rss", "cpu_time")})
    table = numeric.groupby("rule").agg(
        jobs=("s", "size"),
        seconds_total=("s", "sum"),
        seconds_max=("s", "max"),
        max_rss_mb=("max_rss", "max"),
        cpu_seconds_total=("cpu_time", "sum"),
    )
    table = table.sort_values(["seconds_total", "jobs"], ascending=False).reset_index()[USAGE_COLUMNS]
    return table.round({"seconds_total": 2, "seconds_max": 2, "max_rss_mb": 2, "cpu_seconds_total": 2})


def plot_usage(table: pd.DataFrame, out) -> None:
    """Two bar charts side by side: total runtime per rule and largest peak RSS per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(table) + 1.5), dpi=120, sharey=True)
    y = range(len(table))
    axes[0].barh(y, table["seconds_total"], color="tab:blue")
    axes[0].set_xlabel("runtime, all jobs (s)")
    axes[1].barh(y, table["max_rss_mb"], color="tab:orange")
    axes[1].set_xlabel("largest peak RSS of a job (MB)")
    axes[0].set_yticks(list(y), [f"{r} ({n})" for r, n in zip(table["rule"], table["jobs"], strict=True)])
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Resources per rule (jobs in brackets)")
    fig.tight_layout()
    write_figure(out, fig)
    plt.close(fig)


def usage(results_dir, usage_csv, usage_png) -> pd.DataFrame:
    """``usage.csv`` and ``usage.png`` from every ``benchmarks/*.tsv`` under ``results_dir`` (the dataset's jobs and
    every round's). The rule runs after ``summarize``, so every round's jobs have written theirs."""
    table = usage_table(read_benchmarks(Path(results_dir).rglob("benchmarks/*.tsv")))
    write_csv(usage_csv, table)
    plot_usage(table, usage_png)
    return table
