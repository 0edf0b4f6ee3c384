"""Running the real workflow from tests: a tiny config, a Snakemake subprocess wrapper, dry-run job counts."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TINY_CONFIG = {
    "dataset": {
        "name": "tiny",
        "kind": "synthetic",
        "root": "resources/datasets/tiny",
        "synthetic": {"train_size": 6, "val_size": 3, "height": 48, "width": 64, "seed": 3},
    },
    "superpixels": {"method": "slic", "slic": {"n_segments": 40}},
    "pool": {"shards": 2},
    "model": {"name": "small"},
    "train": {"iterations": 20, "batch_size": 4},
    "infer": {"batch_size": 4, "keep": True},
    "al": {"seeds": [0], "rounds": 2, "warmup_clicks": 12, "clicks_per_round": 10},
    "merge": {"eps": 0.1},
    "sieve": {"min_pixels": 20},
    "experiments": [
        {"name": "random", "regions": "base", "acquisition": "random"},
        {"name": "cb_oracle", "regions": "oracle", "acquisition": "class_balanced"},
        {"name": "cb_adaptive_sieve", "regions": "adaptive", "acquisition": "class_balanced", "sieve": True},
    ],
}


def run_snakemake(workdir: Path, config: dict | None = None, *args: str, check: bool = True, timeout: int = 900):
    """Run the workflow in ``workdir`` with ``config`` written to workdir/config.yaml; return the process."""
    workdir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_rules(stdout_and_err: str) -> dict[str, int]:
    """Job counts of a dry run's 'Job stats' table."""
    table = stdout_and_err.split("Job stats:")[-1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}
