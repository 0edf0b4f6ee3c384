"""The workflow on a real single-node SLURM cluster through the executor plugin and profiles/slurm-cpu.

The cluster (munged, slurmctld, slurmd bound to 127.0.0.1, see tests/slurm_cluster.py) is started by a fixture;
the test is skipped, with the reason, only when Debian's slurm binaries or the executor plugin are missing. CI
(.ci/run) installs both, so `make test` there runs it.
"""

import copy
import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from slurm_cluster import missing_binaries, slurm_cluster
from workflow_helpers import ROOT, TINY_CONFIG, run_snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]

R = "results/tiny"
EXPERIMENTS = ["random", "cb_adaptive_sieve"]
# one seed, two experiments (random on base superpixels; adaptive regions with sieving), two pool shards
SLURM_CONFIG = copy.deepcopy(TINY_CONFIG)
SLURM_CONFIG["experiments"] = [e for e in TINY_CONFIG["experiments"] if e["name"] in EXPERIMENTS]
SLURM_CONFIG["al"]["seeds"] = [0]
SLURM_CONFIG["pool"]["shards"] = 2
COMPARED = [f"{R}/{e}/seed0/round{r}" for e in EXPERIMENTS for r in (1, 2)] + [f"{R}/warmup/seed0/round0"]
RUN_TIMEOUT = 600  # seconds, hard limit for one Snakemake run on the cluster
# The plugin polls squeue this long after a submission, then 10 s longer each time nothing finished; a tiny job
# takes ~5 s on the test cluster, so 6 s catches most of them at the first poll (2 s would cost 14 s per job).
STATUS_INTERVAL = 6


def _skip_reason() -> str | None:
    missing = missing_binaries()
    if missing:
        return f"SLURM binaries not installed ({', '.join(missing)}); apt-get install slurmctld slurmd munge"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm not installed (pip install -e '.[test]')"
    if os.geteuid() != 0:
        return "the test cluster's slurmd must run as root (SlurmdUser=root)"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def snakemake_on_cluster(cluster, workdir: Path, profile: str, *args: str) -> subprocess.CompletedProcess:
    """Snakemake through ``profile`` against the test cluster (no accounting: job status comes from squeue)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--profile", str(ROOT / "profiles" / profile),
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", str(STATUS_INTERVAL),
           "--slurm-no-account", "--latency-wait", "5", *args]  # fmt: skip
    env = {**cluster.env, "PYTHONHASHSEED": "0"}
    try:
        return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
    except subprocess.TimeoutExpired as e:
        squeue = cluster.run("squeue", "-t", "all").stdout
        cluster.run("scancel", "--user", "root")
        raise AssertionError(f"snakemake on SLURM timed out:\n{e.stderr}\n{squeue}\n{cluster.logs()}") from e


def test_workflow_on_slurm_matches_local_run(cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    remote.mkdir()
    (remote / "config.yaml").write_text(yaml.safe_dump(SLURM_CONFIG))
    # the local reference run goes on while the cluster run mostly waits between status polls
    with ThreadPoolExecutor(1) as pool:
        local_run = pool.submit(run_snakemake, local, SLURM_CONFIG)
        proc = snakemake_on_cluster(cluster, remote, "slurm-cpu")
        local_run.result()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{out[-8000:]}\n{cluster.logs()}"
    assert (remote / R / "summary.csv").exists()

    # the jobs really ran on SLURM: squeue (MinJobAge=3600) lists them, completed, one per Snakemake job,
    # with the plugin's comment naming the rule
    jobs = cluster.run("squeue", "-h", "-t", "all", "-o", "%i|%T|%k").stdout.split()
    comments = [j.split("|", 2)[2] for j in jobs]
    states = {j.split("|", 2)[1] for j in jobs}
    assert states == {"COMPLETED"}, jobs
    for rule in ("train", "infer", "evaluate", "acquire", "annotate", "merge_superpixels", "base_superpixels"):
        assert any(c.startswith(f"rule_{rule}_") for c in comments), (rule, comments)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert len(submitted) == len(jobs) >= 20
    # slurmd started each as a batch job whose step (the plugin's inner srun) ran the rule
    slurmd_log = cluster.slurmd_log()
    for jobid in submitted:
        assert f"Launching batch job {jobid} " in slurmd_log and f"launch task StepId={jobid}.0 " in slurmd_log

    # ... and computed exactly what a local run computes
    for d in COMPARED:
        for name in ("selection.csv", "answers.csv"):
            assert (remote / d / name).read_bytes() == (local / d / name).read_bytes(), f"{d}/{name}"
        with h5py.File(remote / d / "targets.h5") as a, h5py.File(local / d / "targets.h5") as b:
            assert sorted(a["labels"]) == sorted(b["labels"])
            for image in a["labels"]:
                np.testing.assert_array_equal(a["labels"][image][()], b["labels"][image][()], err_msg=f"{d} {image}")

    # the GPU profile on a cluster without GPUs: sbatch refuses the job with a clear error
    proc = snakemake_on_cluster(cluster, remote, "slurm", "--retries", "0", "--forcerun", "train",
                                f"{R}/warmup/seed0/round0/model.pt")  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "--gpus=1" in out and "Invalid generic resource (gres) specification" in out, out[-4000:]
