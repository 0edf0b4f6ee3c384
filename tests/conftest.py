import hdf5plugin  # noqa: F401  (registers the Blosc filter: tests read artifacts with plain h5py, as users do)
import pytest
from workflow_helpers import TINY_CONFIG, run_snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One complete run of a tiny config (synthetic data, 2 shards, 2 rounds, 3 experiments)."""
    workdir = tmp_path_factory.mktemp("tiny")
    run_snakemake(workdir, TINY_CONFIG)
    return workdir
