"""The dataset presets: a user who has the data changes only dataset.root."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_datasets import make_cityscapes, make_voc
from workflow_helpers import run_snakemake

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "preset, make, splits",
    [("cityscapes", make_cityscapes, ("train", "val")), ("voc", make_voc, ("train", "val"))],
)
def test_preset_prepares_a_real_layout_changing_only_the_root(tmp_path, preset, make, splits):
    data = tmp_path / "data"
    if preset == "cityscapes":
        for split in splits:
            make(data, split=split)
    else:
        make(data)
        sets = data / "VOC2012/ImageSets/Segmentation"
        (sets / "val.txt").write_text("2007_000032\n")
    config = yaml.safe_load((ROOT / "config" / f"{preset}.yaml").read_text())
    config["dataset"]["root"] = str(data)
    proc = run_snakemake(tmp_path / "run", config, "-n")
    assert "train" in proc.stdout and "merge_superpixels" in proc.stdout
    run_snakemake(tmp_path / "run", None, f"results/{preset}/manifest.json")
    manifest = json.loads((tmp_path / "run" / f"results/{preset}/manifest.json").read_text())
    assert manifest["num_classes"] == {"cityscapes": 19, "voc": 21}[preset]
    assert manifest["splits"][config["dataset"]["val_split"]]["ids"]
    assert np.sum(manifest["splits"]["train"]["class_pixels"]) > 0


def test_preset_with_wrong_root_names_it(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "cityscapes.yaml").read_text())
    proc = run_snakemake(tmp_path, config, "-n", check=False)
    assert proc.returncode != 0 and "dataset.root: /path/to/cityscapes does not exist" in proc.stdout + proc.stderr
