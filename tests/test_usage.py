"""Stage ``usage``: benchmark files of Snakemake jobs summed per rule."""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from adaspx.pipeline.usage import USAGE_COLUMNS, usage

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(path, seconds, rss, cpu):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def test_usage_sums_jobs_per_rule_across_rounds_and_shards(tmp_path):
    r = tmp_path / "results"
    _bench(r / "benchmarks" / "prepare_dataset.tsv", 2.0, 100.0, 1.5)
    _bench(r / "e" / "seed0" / "round1" / "benchmarks" / "train.tsv", 10.0, 900.0, 18.0)
    _bench(r / "e" / "seed1" / "round1" / "benchmarks" / "train.tsv", 12.5, 950.5, 20.0)
    _bench(r / "e" / "seed0" / "round1" / "benchmarks" / "infer_shard0.tsv", 3.0, 400.0, 5.0)
    _bench(r / "e" / "seed0" / "round1" / "benchmarks" / "infer_shard1.tsv", 4.0, "-", 6.0)  # not measured
    table = usage(r, tmp_path / "usage.csv", tmp_path / "usage.png")
    written = pd.read_csv(tmp_path / "usage.csv")
    assert list(written.columns) == USAGE_COLUMNS
    assert written["rule"].tolist() == ["train", "infer", "prepare_dataset"]  # by total runtime
    train = written.iloc[0]
    assert (train["jobs"], train["seconds_total"], train["seconds_max"]) == (2, 22.5, 12.5)
    assert (train["max_rss_mb"], train["cpu_seconds_total"]) == (950.5, 38.0)
    infer = written.iloc[1]
    assert (infer["jobs"], infer["seconds_total"], infer["max_rss_mb"]) == (2, 7.0, 400.0)
    assert len(table) == 3
    with Image.open(tmp_path / "usage.png") as png:
        assert png.size[0] > 500


def test_a_file_that_is_not_a_benchmark_is_named(tmp_path):
    bad = tmp_path / "results" / "benchmarks" / "train.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("what\n1\n")
    with pytest.raises(ValueError, match=r"train\.tsv: not a Snakemake benchmark table"):
        usage(tmp_path / "results", tmp_path / "usage.csv", tmp_path / "usage.png")
    assert not (tmp_path / "usage.csv").exists()
