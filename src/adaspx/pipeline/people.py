"""Stage ``ask_people``: a round's queries go to Label Studio, people's answers come back as ``people.csv``.

The exchange itself runs in Label Studio's environment (:mod:`adaspx.label_studio`, called as a script under
``annotator.label_studio.python``); this side reads the round's artifacts, hands the bridge the query maps, checks
what comes back against the selection and the dataset's classes, and writes ``people.csv`` only once every queried
region has an answer. ``annotate`` then reads those answers instead of ground truth.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from adaspx import IGNORE_INDEX, datasets
from adaspx.h5io import MultiArtifact, write_csv
from adaspx.label_studio import label_config, region_key
from adaspx.pipeline.common import _dataset, pool_ids

PEOPLE_COLUMNS = ["asked", "image", "region", "label", "annotator", "time", "task", "annotation"]
"""``asked``: the round whose query the answer is (its region is of that round's map): this round's, or an earlier
round's whose answer was changed in Label Studio after it was imported (a correction, a new row)."""
VOID_CHOICE = "void / can't tell"
log = logging.getLogger("adaspx")
BRIDGE = Path(__file__).resolve().parents[1] / "label_studio.py"


class PeopleError(ValueError):
    """An answer or an exchange that cannot be used: the message is one line naming the task, region or server."""


class StillOpen(PeopleError):
    """Some queried regions have no answer yet: nothing is written, running the rule again continues."""


def ask_people(
    manifest_path,
    selection_path,
    region_paths: Sequence[str],
    *,
    people_csv,
    url: str,
    token_env: str,
    python: str,
    document_root: str,
    project: str,
    experiment: str,
    seed: int,
    round: int,
    earlier_people: Sequence[str] = (),
    earlier_projects: Sequence[str] = (),
) -> None:
    """Push the round's queries to the Label Studio server at ``url`` (one project per round, named after
    ``project``, the round's key), read back every queried region's answer, and write ``people_csv`` when all of
    them are answered; otherwise raise :class:`StillOpen` (how many are open, and where), writing nothing.

    ``earlier_people`` / ``earlier_projects``: the ``people.csv`` and project key of each earlier round of the
    experiment (round order). Their projects are read again: an answer whose class was changed there since it was
    recorded becomes a new row (``asked``: its round), so that nothing recorded is ever overwritten.

    Images are served by the server from its local files (``LOCAL_FILES_SERVING_ENABLED``) under
    ``document_root``, its ``LOCAL_FILES_DOCUMENT_ROOT``; ``python`` is the interpreter of the environment that
    has label-studio-sdk; ``token_env`` names the environment variable holding the API token.
    """
    manifest = datasets.load_manifest(manifest_path)
    ds = _dataset(manifest, "pool")
    selection = _queried(selection_path, pool_ids(manifest))
    classes = list(manifest["classes"])
    out = Path(people_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".ask_people.") as tmp:
        masks = Path(tmp) / "queries.npz"
        tasks = query_tasks(masks, selection, region_paths, ds, document_root)
        history = [_read_people_csv(p) for p in earlier_people]
        request = {
            "url": url,
            "token_env": token_env,
            "title": f"{experiment} seed{seed} round{round}"[:50],  # Label Studio titles hold 50 characters
            "description": project,
            "label_config": label_config(classes, getattr(ds, "colors", None), VOID_CHOICE),
            "storage_path": os.path.commonpath([str(Path(t["path"]).parent) for t in tasks]) if tasks else None,
            "model_version": f"round{round}",
            "masks": str(masks),
            "tasks": tasks,
            "earlier": [_earlier(key, frame) for key, frame in zip(earlier_projects, history, strict=True)],
        }
        reply = _run_bridge(python, request, Path(tmp) / "request.json")
    people = _answers(reply, classes).assign(asked=round)
    fixes = _corrections(reply, history, classes)
    if len(fixes):
        log.info("%d answers of earlier rounds were changed in Label Studio: recorded as new answers", len(fixes))
    write_csv(out, pd.concat([people, fixes], ignore_index=True)[PEOPLE_COLUMNS])


def _read_people_csv(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"image": str, "annotator": str, "time": str})


def _earlier(key: str, people: pd.DataFrame) -> dict:
    """What the bridge reads again of an earlier round (its ``people.csv``): its project, the regions asked there."""
    asked = int(people["asked"].max()) if len(people) else None
    own = people[people["asked"] == asked]
    tasks = [{"image": i, "regions": g["region"].tolist()} for i, g in own.groupby("image", sort=False)]
    return {"description": key, "round": asked, "tasks": tasks}


def _queried(selection_path, ids: Sequence[str]) -> pd.DataFrame:
    """The selected regions (reserve rows aside: people are asked exactly what the selection chose)."""
    selection = pd.read_csv(selection_path, dtype={"image": str})
    unknown = sorted(set(selection["image"]) - set(ids))
    if unknown:
        raise PeopleError(f"{selection_path}: images {unknown[:5]} are not in the pool")
    if "reserve" in selection:
        selection = selection[~selection["reserve"].astype(bool)]
    return selection


def _write_query_maps(path: Path, selection: pd.DataFrame, region_paths: Sequence[str]) -> list[dict]:
    """One query map per queried image into the ``.npz`` at ``path`` (k + 1 where the image's k-th queried region
    is, 0 elsewhere), written one image at a time; the tasks that name them."""
    tasks = []
    with MultiArtifact(region_paths) as regions, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, (image_id, sel) in enumerate(selection.groupby("image", sort=False)):
            rids = sel["region"].to_numpy(np.int64)
            rmap = regions.get("labels", image_id)
            order = np.argsort(rids, kind="stable")
            at = np.minimum(np.searchsorted(rids[order], rmap), len(rids) - 1)
            hit = rids[order][at] == rmap
            qmap = np.zeros(rmap.shape, dtype=np.uint16 if len(rids) < 2**16 else np.uint32)
            qmap[hit] = order[at[hit]] + 1
            key = f"t{k}"
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, qmap)
            tasks.append({"image": image_id, "key": key, "regions": rids.tolist()})
    return tasks


def query_tasks(path: Path, selection: pd.DataFrame, region_paths: Sequence[str], ds, document_root) -> list[dict]:
    """The tasks of the queried images, their query maps written to the ``.npz`` at ``path``: each with the image's
    file (``path``) and the URL Label Studio serves it under, from below ``document_root``."""
    root = Path(document_root).resolve()
    tasks = _write_query_maps(path, selection, region_paths)
    for t in tasks:
        file = Path(ds.image_path(t["image"])).resolve()
        t.update(path=str(file), url=_local_files_url(file, root, t["image"]))
    return tasks


def _local_files_url(path: Path, root: Path, image_id: str) -> str:
    """The URL under which Label Studio serves a local file (``/data/local-files/?d=<path under its root>``)."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise PeopleError(
            f"image {image_id}: {path} is not under annotator.label_studio.document_root ({root}), the folder the "
            "server serves local files from (LOCAL_FILES_DOCUMENT_ROOT)"
        ) from None
    return "/data/local-files/?d=" + quote(str(rel))


def _run_bridge(python: str, request: dict, request_path: Path) -> dict:
    """Run the exchange under Label Studio's Python; its one-line failure becomes a :class:`PeopleError`."""
    if not Path(python).is_file():
        raise PeopleError(
            f"annotator.label_studio.python: {python} not found (the environment with label-studio-sdk: "
            "make label-studio creates .venv-label-studio)"
        )
    reply = request_path.with_name("reply.json")
    request_path.write_text(json.dumps({**request, "reply": str(reply)}))
    # -P: the bridge's folder (adaspx's own modules) is not put on sys.path; it imports only numpy and the SDK
    proc = subprocess.run([python, "-P", str(BRIDGE), str(request_path)], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise PeopleError(lines[-1])
    return json.loads(reply.read_text())


def _answers(reply: dict, classes: list[str]) -> pd.DataFrame:
    """The answers of a complete round as ``people.csv`` rows, or the one-line refusal: a choice for a region
    never queried, a region deleted from its task, a choice that is no class, then regions still open."""
    where = f"project {reply['project_url']}"
    for f in reply["foreign"]:
        raise PeopleError(f"{where}: task {f['task']} (image {f['image']}): region {f['id']} was never queried")
    rows, still_open = [], 0
    for r in reply["regions"]:
        if r["status"] == "deleted":
            raise PeopleError(f"{where}: {_name(r)} was deleted from annotation {r['annotation']}; restore it")
        if r["status"] == "open":
            still_open += 1
            continue
        label = _label(r, classes, where)
        rows.append((r["image"], int(r["region"]), label, r["annotator"], r["time"], r["task"], r["annotation"]))
    if still_open:
        total = len(reply["regions"])
        raise StillOpen(f"{still_open} of {total} queried regions are still open: {reply['project_url']}")
    return pd.DataFrame(rows, columns=PEOPLE_COLUMNS[1:])


def _name(r: dict) -> str:
    return f"task {r['task']} (image {r['image']}): region {region_key(r['image'], r['region'])}"


def _label(r: dict, classes: list[str], where: str) -> int:
    """The class index (255: void) of an answered region's choice; one that is none of them is refused."""
    index = {name: k for k, name in enumerate(classes)} | {VOID_CHOICE: IGNORE_INDEX}
    choice = r["choices"][0] if len(r["choices"]) == 1 else None
    if choice not in index:
        raise PeopleError(f"{where}: {_name(r)} is answered {r['choices']!r}, not one of {classes + [VOID_CHOICE]}")
    return index[choice]


def _corrections(reply: dict, history: list[pd.DataFrame], classes: list[str]) -> pd.DataFrame:
    """Earlier rounds' answers whose class in Label Studio is no longer the one last recorded for their region
    (in ``history``, the earlier ``people.csv`` in round order): new rows, ``asked`` their round. A region left
    unanswered or deleted there since keeps what was recorded."""
    last: dict[tuple[int, str, int], int] = {}
    for frame in history:
        for asked, image, region, label in frame[["asked", "image", "region", "label"]].itertuples(index=False):
            last[(int(asked), image, int(region))] = int(label)
    rows = []
    for earlier in reply["earlier"]:
        where = f"project {earlier['project_url']}"
        for r in earlier["regions"]:
            if r["status"] != "answered":
                continue
            label = _label(r, classes, where)
            if last.get((earlier["round"], r["image"], r["region"])) != label:
                row = (earlier["round"], r["image"], r["region"], label, r["annotator"], r["time"], r["task"])
                rows.append((*row, r["annotation"]))
    return pd.DataFrame(rows, columns=PEOPLE_COLUMNS)


def read_people(path, selection: pd.DataFrame, num_classes: int, round: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``people.csv`` of round ``round``: its answers to the selected regions, indexed by (image, region) and
    checked against them, and the corrections of earlier rounds' answers (``asked`` < ``round``), in file order."""
    people = _read_people_csv(path)
    missing = [c for c in PEOPLE_COLUMNS if c not in people]
    if missing:
        raise PeopleError(f"{path}: columns {missing} missing")
    labels = people["label"].to_numpy()
    bad = np.flatnonzero(~(((labels >= 0) & (labels < num_classes)) | (labels == IGNORE_INDEX)))
    if bad.size:
        raise PeopleError(f"{path}: line {bad[0] + 2}: label {labels[bad[0]]} is no class of the dataset nor void")
    later = np.flatnonzero(people["asked"].to_numpy() > round)
    if later.size:
        raise PeopleError(f"{path}: line {later[0] + 2}: answers a query of round {people['asked'].iat[later[0]]}")
    fixes = people[people["asked"] < round].reset_index(drop=True)
    people = people[people["asked"] == round].set_index(["image", "region"])
    if not people.index.is_unique:
        twice = people.index[people.index.duplicated()][0]
        raise PeopleError(f"{path}: region {region_key(*twice)} is answered twice")
    asked = pd.MultiIndex.from_frame(selection[["image", "region"]].astype({"region": np.int64}))
    unasked = people.index.difference(asked)
    if len(unasked):
        raise PeopleError(f"{path}: region {region_key(*unasked[0])} was never queried")
    unanswered = asked.difference(people.index)
    if len(unanswered):
        raise PeopleError(f"{path}: queried region {region_key(*unanswered[0])} has no answer")
    return people, fixes
