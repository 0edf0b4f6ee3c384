"""Pool sharding changes how the work is split, never what is selected: 1 vs 3 shards, local runs."""

import copy

import pytest
from workflow_helpers import TINY_CONFIG, run_snakemake

pytestmark = pytest.mark.e2e

R = "results/tiny"


def test_selections_do_not_depend_on_shard_count(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["al"]["seeds"] = [0]
    config["experiments"] = [e for e in TINY_CONFIG["experiments"] if e["name"] == "cb_adaptive_sieve"]
    config["infer"]["keep"] = False
    targets = [f"{R}/cb_adaptive_sieve/seed0/round2/answers.csv"]
    runs = {}
    for shards in (1, 3):
        config["pool"]["shards"] = shards
        runs[shards] = tmp_path / f"shards{shards}"
        run_snakemake(runs[shards], config, *targets)
    assert sorted(p.name for p in (runs[3] / R / "superpixels").glob("base_shard*.h5")) == [
        f"base_shard{k}.h5" for k in range(3)
    ]
    for d in ["warmup/seed0/round0", "cb_adaptive_sieve/seed0/round1", "cb_adaptive_sieve/seed0/round2"]:
        for name in ("selection.csv", "answers.csv"):
            rel = f"{R}/{d}/{name}"
            assert (runs[1] / rel).read_bytes() == (runs[3] / rel).read_bytes(), rel
    # probabilities are intermediate: deleted once merge, acquire and the sieving annotate have read them
    for run in runs.values():
        assert list((run / R).rglob("probs_shard*.h5")) == []
        assert len(list((run / R).rglob("regions_shard*.h5"))) > 0
