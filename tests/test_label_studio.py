"""People in the loop against a real Label Studio server on 127.0.0.1 (started from .venv-label-studio, which
`make label-studio` creates and `make test` depends on): the workflow waits for people, continues with their
answers, and refuses answers it cannot use."""

import contextlib
import copy
import glob
import json
import os
import subprocess
from pathlib import Path

import h5py
import label_studio_server as ls
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from workflow_helpers import TINY_CONFIG, run_snakemake

from adaspx import IGNORE_INDEX
from adaspx.pipeline import annotate
from adaspx.pipeline.people import VOID_CHOICE, PeopleError, StillOpen, ask_people

pytestmark = [pytest.mark.label_studio]

# README's picture of a query in the editor: refreshed by `ADASPX_SCREENSHOTS=docs make test`
SCREENSHOTS = os.environ.get("ADASPX_SCREENSHOTS")
EXPERIMENT = "cb_adaptive"  # without sieving: a corrected answer labels its whole region


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ls.start(tmp_path_factory.mktemp("label-studio-data"))
    os.environ[ls.TOKEN_ENV] = s.token  # the workflow's subprocesses inherit it, as from a user's shell
    yield s
    os.environ.pop(ls.TOKEN_ENV, None)
    ls.stop(s)


def people_config(server) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["al"]["rounds"] = 1
    config["experiments"] = [{"name": EXPERIMENT, "regions": "adaptive", "acquisition": "class_balanced"}]
    config["report"] = {"gallery_images": 0}
    config["annotator"] = {
        "kind": "label_studio",
        "label_studio": {"url": server.url, "token_env": ls.TOKEN_ENV, "python": str(ls.LS_PYTHON)},
    }
    return config


def round_dir(work: Path, r: int) -> Path:
    return work / "results/tiny" / ("warmup" if r == 0 else EXPERIMENT) / f"seed0/round{r}"


def region_paths(work: Path, r: int) -> list[str]:
    """The region maps round r selected from: base superpixels in the warm-up, then adaptive regions."""
    folder = work / "results/tiny/superpixels" if r == 0 else round_dir(work, r - 1)
    return sorted(glob.glob(str(folder / ("base_shard*.h5" if r == 0 else "regions_shard*.h5"))))


def region_map(work: Path, r: int, image: str) -> np.ndarray:
    for path in region_paths(work, r):
        with h5py.File(path) as f:
            if image in f["labels"]:
                return f["labels"][image][()]
    raise KeyError(image)


def truth(work: Path, image: str) -> np.ndarray:
    return np.asarray(Image.open(work / "resources/datasets/tiny/labels" / f"{image}.png"))


def dominant(work: Path, r: int, key: str) -> int:
    """What a careful person answers for a region: its most frequent ground-truth value (void counted), ties to
    the smaller value, by brute force."""
    image, region = key.rsplit("_r", 1)
    values = truth(work, image)[region_map(work, r, image) == int(region)]
    return int(np.bincount(values, minlength=256).argmax())


def choices_for(work: Path, r: int, keys, classes, void=()) -> dict[str, str]:
    out = {}
    for k in keys:
        label = IGNORE_INDEX if k in void else dominant(work, r, k)
        out[k] = VOID_CHOICE if label == IGNORE_INDEX else classes[label]
    return out


def simulated(work: Path, r: int, out: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The simulator's answers and targets for round r's selection: the annotate stage, run with the settings the
    workflow's own annotate recorded and from the workflow's previous answers (people's)."""
    d = round_dir(work, r)
    with h5py.File(d / "answers.h5") as f:
        settings = json.loads(f.attrs["config"])
    prev = round_dir(work, r - 1) if r else None
    out.mkdir(parents=True)
    with contextlib.chdir(work):  # the manifest names the dataset relative to the workflow's folder
        annotate(
            str(work / "results/tiny/manifest.json"),
            str(d / "selection.csv"),
            region_paths(work, r),
            str(prev / "answers.csv") if prev else None,
            str(prev / "answers.h5") if prev else None,
            sorted(glob.glob(str(prev / "probs_shard*.h5"))) if settings["sieve"] else [],
            region_paths(work, 0),
            answers_csv=out / "answers.csv",
            answers_h5=out / "answers.h5",
            targets_h5=out / "targets.h5",
            stats_json=out / "stats.json",
            experiment="simulated",
            seed=0,
            round=r,
            **settings,
        )
    return pd.read_csv(out / "answers.csv", dtype={"image": str}), targets(out / "targets.h5")


def targets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {k: f["labels"][k][()] for k in f["labels"]}


def keys_of(task: dict) -> list[str]:
    return [item["id"] for item in task["predictions"][0]["result"]]


def round_project(server, work: Path, r: int) -> tuple[dict, list[dict]]:
    project = ls.project(server, f"adaspx {round_dir(work, r).resolve()}")
    return project, ls.tasks(server, project["id"])


def test_workflow_waits_for_people_and_continues_with_their_answers(server, tmp_path):
    work = tmp_path / "run"
    first = run_snakemake(work, people_config(server), check=False)
    assert first.returncode != 0
    project, tasks = round_project(server, work, 0)
    url = f"{server.url}/projects/{project['id']}/data"
    keys = [k for t in tasks for k in keys_of(t)]
    assert f"{len(keys)} of {len(keys)} queried regions are still open: {url}" in first.stderr
    selection = pd.read_csv(round_dir(work, 0) / "selection.csv", dtype={"image": str})
    assert sorted(keys) == sorted(f"{i}_r{r}" for i, r in zip(selection["image"], selection["region"], strict=True))
    classes = json.loads((work / "results/tiny/manifest.json").read_text())["classes"]

    # a person answers every region with the class its ground truth shows, but two "void / can't tell", and
    # leaves one open
    void, left_open = set(keys[1:3]), keys[-1]
    choice = choices_for(work, 0, keys, classes, void)
    annotation_of = {}
    for t in tasks:
        mine = {k: (None if k == left_open else choice[k]) for k in keys_of(t)}
        annotation_of[t["id"]] = ls.answer(server, t, mine)["id"]
    waiting = run_snakemake(work, None, check=False)
    assert waiting.returncode != 0
    assert f"1 of {len(keys)} queried regions are still open: {url}" in waiting.stderr
    assert not (round_dir(work, 0) / "people.csv").exists()
    assert not (round_dir(work, 0) / "answers.csv").exists()

    # the last region answered (the annotation changed in Label Studio): the workflow goes on to round 1
    last = next(t for t in tasks if left_open in keys_of(t))
    ls.answer(server, last, {k: choice[k] for k in keys_of(last)}, annotation=annotation_of[last["id"]])
    waiting = run_snakemake(work, None, check=False)
    project1, tasks1 = round_project(server, work, 1)
    assert f"queried regions are still open: {server.url}/projects/{project1['id']}/data" in waiting.stderr

    # round 0: people's answers and targets are the simulator's, but for the regions answered void
    answers = pd.read_csv(round_dir(work, 0) / "answers.csv", dtype={"image": str})
    sim, want = simulated(work, 0, tmp_path / "sim0")
    key = (answers["image"] + "_r" + answers["region"].astype(str)).tolist()
    assert answers["label"].tolist() == [
        IGNORE_INDEX if k in void else lab for k, lab in zip(key, sim["label"], strict=True)
    ]
    assert (answers["annotator"] == server.email).all()
    assert answers["time"].str.match(r"\d{4}-\d\d-\d\dT").all()
    assert answers[["image", "region", "pixels", "clicks"]].equals(sim[["image", "region", "pixels", "clicks"]])
    for k in void:
        image, region = k.rsplit("_r", 1)
        want[image][region_map(work, 0, image) == int(region)] = IGNORE_INDEX
    got = targets(round_dir(work, 0) / "targets.h5")
    assert got.keys() == want.keys()
    for image in want:
        np.testing.assert_array_equal(got[image], want[image], err_msg=image)

    # after round 0 was recorded, a person changes one of its void answers in Label Studio to a class: round 1
    # records the change as a new answer (nothing recorded is rewritten), over that round-0 region, for no click
    fixed = sorted(void)[0]
    task0 = next(t for t in tasks if fixed in keys_of(t))
    ls.answer(server, task0, {k: (classes[0] if k == fixed else choice[k]) for k in keys_of(task0)},
              annotation=annotation_of[task0["id"]])  # fmt: skip
    # round 1: people answer as the simulator would, after round 0's people: the same targets but for the change
    keys1 = [k for t in tasks1 for k in keys_of(t)]
    choice1 = choices_for(work, 1, keys1, classes)
    for t in tasks1:
        ls.answer(server, t, {k: choice1[k] for k in keys_of(t)})
    run_snakemake(work, None)
    assert (work / "results/tiny/summary.csv").is_file()
    answers1 = pd.read_csv(round_dir(work, 1) / "answers.csv", dtype={"image": str})
    assert answers1.iloc[: len(answers)].equals(pd.read_csv(round_dir(work, 0) / "answers.csv", dtype={"image": str}))
    correction = answers1[answers1["asked"] != answers1["round"]]
    image, region = fixed.rsplit("_r", 1)
    assert correction[["round", "asked", "image", "region", "label", "clicks", "annotator"]].values.tolist() == [
        [1, 0, image, int(region), 0, 0, server.email]
    ]
    sim1, want1 = simulated(work, 1, tmp_path / "sim1")
    columns = ["round", "image", "region", "label", "pixels", "clicks"]
    assert answers1.drop(correction.index)[columns].reset_index(drop=True).equals(sim1[columns])
    assert correction["pixels"].tolist() == [int((region_map(work, 0, image) == int(region)).sum())]
    want1[image][region_map(work, 0, image) == int(region)] = 0  # no sieving here: the whole region
    got1 = targets(round_dir(work, 1) / "targets.h5")
    for name in want1:
        np.testing.assert_array_equal(got1[name], want1[name], err_msg=name)
    stats = json.loads((round_dir(work, 1) / "annotation_stats.json").read_text())
    assert stats["corrections_round"] == 1 and stats["regions_round"] == len(keys1)


@pytest.fixture(scope="module")
def asked_round(server, tmp_path_factory):
    """A workflow stopped at its first round's people: its inputs for ``ask_people`` of fresh projects."""
    work = tmp_path_factory.mktemp("asked")
    proc = run_snakemake(work, people_config(server), check=False)
    assert "queried regions are still open" in proc.stderr, proc.stderr[-3000:]
    d = round_dir(work, 0)
    inputs = (str(work / "results/tiny/manifest.json"), str(d / "selection.csv"), region_paths(work, 0))
    return work, inputs


def ask(server, asked_round, out: Path, project: str, **settings):
    work, inputs = asked_round
    kwargs = dict(url=server.url, token_env=ls.TOKEN_ENV, python=str(ls.LS_PYTHON), document_root="/")
    kwargs.update(settings)
    with contextlib.chdir(work):
        ask_people(*inputs, people_csv=out, project=project, experiment="e", seed=0, round=0, **kwargs)


def fresh_project(server, asked_round, tmp_path, name: str) -> list[dict]:
    """A new project for the round's queries (nothing answered yet): its tasks."""
    with pytest.raises(StillOpen):
        ask(server, asked_round, tmp_path / "people.csv", f"test {name}")
    return ls.tasks(server, ls.project(server, f"test {name}")["id"])


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"url": f"http://127.0.0.1:{ls.free_port()}"}, "is unreachable (checking the API token)"),
        ({"token_env": "ADASPX_TEST_WRONG_TOKEN"}, "refused the API token"),
        ({"token_env": "ADASPX_TEST_NO_TOKEN"}, "ADASPX_TEST_NO_TOKEN (annotator.label_studio.token_env)"),
        ({"python": "/nonexistent/bin/python"}, "annotator.label_studio.python: /nonexistent/bin/python not found"),
        ({"document_root": "/nonexistent"}, "is not under annotator.label_studio.document_root"),
    ],
)
def test_an_exchange_that_fails_says_why_in_one_line_and_writes_nothing(
    server, asked_round, tmp_path, monkeypatch, settings, message
):
    monkeypatch.setenv("ADASPX_TEST_WRONG_TOKEN", "0" * 40)
    monkeypatch.delenv("ADASPX_TEST_NO_TOKEN", raising=False)
    out = tmp_path / "people.csv"
    with pytest.raises(PeopleError, match="^[^\n]+$") as err:
        ask(server, asked_round, out, "test failing", **settings)
    assert message in str(err.value)
    assert server.token not in str(err.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_answers_that_cannot_be_used_are_refused_naming_task_and_region(server, asked_round, tmp_path):
    work, _ = asked_round
    classes = json.loads((work / "results/tiny/manifest.json").read_text())["classes"]
    out = tmp_path / "people.csv"

    tasks = fresh_project(server, asked_round, tmp_path, "never queried")
    t = tasks[0]
    brush = t["predictions"][0]["result"][0]
    stray = f"{t['data']['adaspx_image']}_r99999"
    result = [brush, ls.choice_item(brush, classes[0]), ls.choice_item(brush, classes[1], key=stray)]
    ls.api(server, "POST", f"/api/tasks/{t['id']}/annotations", {"result": result})
    with pytest.raises(PeopleError, match=f"task {t['id']} \\(image .*\\): region {stray} was never queried"):
        ask(server, asked_round, out, "test never queried")
    assert not out.exists()

    tasks = fresh_project(server, asked_round, tmp_path, "deleted")
    t = next(t for t in tasks if len(keys_of(t)) >= 2)
    kept, gone = t["predictions"][0]["result"][0], keys_of(t)[1]
    ls.api(server, "POST", f"/api/tasks/{t['id']}/annotations", {"result": [kept, ls.choice_item(kept, classes[0])]})
    with pytest.raises(PeopleError, match=f"task {t['id']} .*region {gone} was deleted from annotation"):
        ask(server, asked_round, out, "test deleted")
    assert not out.exists()

    tasks = fresh_project(server, asked_round, tmp_path, "unknown class")
    t = tasks[0]
    ls.answer(server, t, dict.fromkeys(keys_of(t), "unicorn"))
    with pytest.raises(PeopleError, match=f"task {t['id']} .*region {keys_of(t)[0]} is answered \\['unicorn'\\]"):
        ask(server, asked_round, out, "test unknown class")
    assert not out.exists()
    # nothing was lost: the refused answers are still in Label Studio
    assert len(ls.tasks(server, t["project"])[0]["annotations"]) == 1


@pytest.mark.browser
def test_a_person_answers_a_region_by_clicking_in_the_label_studio_page(server, asked_round, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    from test_report import _chromium

    work, _ = asked_round
    classes = json.loads((work / "results/tiny/manifest.json").read_text())["classes"]
    tasks = fresh_project(server, asked_round, tmp_path, "browser")
    task = max(tasks, key=lambda t: (len(keys_of(t)), -t["id"]))
    keys = keys_of(task)
    others = [k for t in tasks if t["id"] != task["id"] for k in keys_of(t)]
    for t in tasks:
        if t["id"] != task["id"]:
            ls.answer(server, t, choices_for(work, 0, keys_of(t), classes))
    picked = classes[-1]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{server.url}/user/login/")
        page.fill("input[name=email]", server.email)
        page.fill("input[name=password]", server.password)
        with page.expect_navigation():
            page.click("button[type=submit]")
        page.goto(f"{server.url}/projects/{task['project']}/data?task={task['id']}")
        regions = page.locator(".lsf-outliner-item")
        expect(regions).to_have_count(len(keys), timeout=90_000)  # every queried region is drawn, ready to select
        regions.first.click()
        page.locator(".lsf-choices .lsf-choice__item", has_text=picked).first.click()
        if SCREENSHOTS:
            page.screenshot(path=str(Path(__file__).resolve().parents[1] / SCREENSHOTS / "label_studio.png"))
        with page.expect_response(lambda r: "/annotations" in r.url and r.request.method == "POST") as posted:
            page.get_by_role("button", name="Submit").click()
        assert posted.value.status == 201
        browser.close()

    # the page stored one answered region (the one clicked) among the task's drawn regions
    annotation = ls.tasks(server, task["project"])
    annotation = next(t for t in annotation if t["id"] == task["id"])["annotations"][0]
    answered = {i["id"]: i["value"]["choices"] for i in annotation["result"] if i["type"] == "choices"}
    assert len(answered) == 1 and list(answered.values()) == [[picked]]
    (clicked,) = answered
    assert clicked in keys
    if len(keys) > 1:
        with pytest.raises(StillOpen, match=f"^{len(keys) - 1} of {len(keys) + len(others)} queried regions"):
            ask(server, asked_round, tmp_path / "people.csv", "test browser")
        rest = choices_for(work, 0, [k for k in keys if k != clicked], classes)
        ls.answer(server, task, {clicked: picked, **rest}, annotation=annotation["id"])
    ask(server, asked_round, tmp_path / "people.csv", "test browser")
    people = pd.read_csv(tmp_path / "people.csv", dtype={"image": str})
    row = people[(people["image"] + "_r" + people["region"].astype(str)) == clicked]
    assert row["label"].tolist() == [len(classes) - 1] and row["annotator"].tolist() == [server.email]


def test_label_studio_export_round_trips_through_the_server_pixel_for_pixel(server, asked_round, tmp_path):
    """adaspx export --format label-studio, imported into Label Studio, answered there, exported by Label Studio
    and read back with adaspx import: the masks are the regions' pixels, the answers the people's."""
    from adaspx.cli import main

    work, _ = asked_round
    folder = round_dir(work, 0)
    classes = json.loads((work / "results/tiny/manifest.json").read_text())["classes"]
    out = tmp_path / "tasks.json"
    argv = ["export", str(folder), "--format", "label-studio", "-o", str(out), "--python", str(ls.LS_PYTHON)]
    assert main(argv) == 0
    tasks = json.loads(out.read_text())
    # the masks, decoded by label-studio-sdk, are exactly the queried regions
    decode = (
        "import json, sys, numpy as np\n"
        "from label_studio_sdk.converter.brush import decode_rle\n"
        "masks = {}\n"
        "for t in json.load(open(sys.argv[1])):\n"
        "    for r in t['predictions'][0]['result']:\n"
        "        h, w = r['original_height'], r['original_width']\n"
        "        masks[r['id']] = decode_rle(r['value']['rle']).reshape(h, w, 4)[:, :, 3] > 0\n"
        "np.savez(sys.argv[2], **masks)\n"
    )
    subprocess.run([str(ls.LS_PYTHON), "-c", decode, str(out), str(tmp_path / "masks.npz")], check=True)
    with np.load(tmp_path / "masks.npz") as masks:
        keys = sorted(masks.files)
        for key in keys:
            image, region = key.rsplit("_r", 1)
            np.testing.assert_array_equal(masks[key], region_map(work, 0, image) == int(region), err_msg=key)
    assert len(keys) == len(pd.read_csv(folder / "selection.csv"))

    config = out.with_suffix(".xml").read_text()
    project = ls.api(server, "POST", "/api/projects", {"title": "offline", "label_config": config})
    ls.api(server, "POST", f"/api/projects/{project['id']}/import", tasks)
    choice = choices_for(work, 0, keys, classes)
    for t in ls.tasks(server, project["id"]):
        ls.answer(server, t, {k: choice[k] for k in keys_of(t)})
    exported = ls.api(server, "GET", f"/api/projects/{project['id']}/export?exportType=JSON")
    (tmp_path / "export.json").write_text(json.dumps(exported))
    people = tmp_path / "people.csv"
    argv = ["import", str(folder), str(tmp_path / "export.json"), "--format", "label-studio", "-o", str(people)]
    assert main(argv) == 0
    got = pd.read_csv(people, dtype={"image": str})
    got_keys = (got["image"] + "_r" + got["region"].astype(str)).tolist()
    assert sorted(got_keys) == keys
    want = [IGNORE_INDEX if choice[k] == VOID_CHOICE else classes.index(choice[k]) for k in got_keys]
    me = ls.api(server, "GET", "/api/current-user/whoami")
    assert got["label"].tolist() == want and (got["annotator"] == f"user {me['id']}").all()  # the export has no email
