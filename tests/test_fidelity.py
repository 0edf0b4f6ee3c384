"""fidelity: official: the reference's value for every key the user's config leaves out; what it cannot honour."""

import copy

import pytest

from adaspx.fidelity import OFFICIAL, conflicts, explicit_keys, resolve

CONFIG = {
    "fidelity": "official",
    "infer": {"batch_size": 4, "stride": 1, "half_resolution": False, "dtype": "float16", "keep": False},
    "al": {"exclude_labeled": 0.5, "statistics": "labels", "click_cost": "region", "overshoot": False},
    "sieve": {"min_pixels": None, "method": "knee", "freeze": False},
    "superpixels": {"method": "slic", "oracle": "exact", "seeds": {"preset": None}},
    "experiments": [
        {"name": "cb", "regions": "base", "acquisition": "class_balanced", "answer": "dominant"},
        {"name": "rnd", "regions": "base", "acquisition": "random", "answer": "dominant"},
    ],
}


def test_official_sets_every_behaviour_key_the_user_left_out():
    user = {"fidelity": "official", "sieve": {"min_pixels": 20}, "al": {"seeds": [0]}}
    config = copy.deepcopy(CONFIG)
    config["sieve"]["min_pixels"] = 20  # the user's config merged over the defaults
    got = resolve(config, explicit_keys(user))
    assert got["sieve"]["min_pixels"] == 20  # set by the user: wins (small images)
    assert got["infer"]["half_resolution"] is True and got["infer"]["dtype"] == "float32"
    assert got["al"]["exclude_labeled"] is None and got["al"]["statistics"] == "probabilities"
    assert got["superpixels"]["oracle"] == "official" and got["superpixels"]["seeds"]["preset"] == "official"
    assert [e["acquisition"] for e in got["experiments"]] == ["class_balanced_official", "random"]
    assert CONFIG["al"]["exclude_labeled"] == 0.5  # the input is left as it was
    every = {k for k in OFFICIAL if k != "sieve.min_pixels"}
    assert {k for k in every if _get(got, k) == OFFICIAL[k]} == every


def test_adaspx_changes_nothing():
    config = copy.deepcopy(CONFIG) | {"fidelity": "adaspx"}
    assert resolve(config, set()) == config


def test_explicit_keys_are_blocks_and_leaves():
    assert explicit_keys({"a": {"b": 1, "c": {"d": None}}, "e": 2}) == {"a", "a.b", "a.c", "a.c.d", "e"}


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (("al", "click_cost", "classes"), "fidelity: official cannot honour al.click_cost: classes (the reference code "
                                          "charges one click per region)"),
        (("sieve", "method", "knee_disagree"), "cannot honour sieve.method: knee_disagree"),
        (("sieve", "freeze", True), "cannot honour sieve.freeze: True"),
    ],
)  # fmt: skip
def test_settings_the_reference_lacks_are_named_with_the_switch(change, line):
    config = copy.deepcopy(CONFIG)
    block, key, value = change
    config[block][key] = value
    assert line in conflicts(config)[0] and len(conflicts(config)) == 1
    config["fidelity"] = "adaspx"
    assert conflicts(config) == []


def test_class_set_answers_are_refused_under_the_switch():
    config = copy.deepcopy(CONFIG)
    config["experiments"][1]["answer"] = "classes"
    assert conflicts(config) == [
        "fidelity: official cannot honour experiments[rnd].answer: classes (the reference code answers dominant labels)"
    ]


def _get(config, dotted):
    for key in dotted.split("."):
        config = config[key]
    return config
