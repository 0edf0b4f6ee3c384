"""The exchange with a Label Studio server, run in Label Studio's own environment.

label-studio-sdk pins numpy and opencv apart from adaspx (requirements/label-studio.txt), so this module runs under
the Python of that environment, called by :mod:`adaspx.pipeline.people` as
``python -P .../adaspx/label_studio.py REQUEST.json``, and imports nothing of adaspx and nothing beyond the standard
library, numpy and label-studio-sdk. It reads and writes no artifact: the request (JSON) names the project, the
tasks and a ``.npz`` of query maps; the reply (JSON, into the request's ``reply`` file) is what the server holds.
Failures (server down, wrong token, an API error) end it with one line on stderr and exit status 2. With
``"action": "export"`` it writes the tasks as a Label Studio import file instead (``adaspx export``).

One project per round (its description is the round's key), one task per queried image, keyed by ``data.adaspx_image``;
every queried region is a brush region of the task's prediction with the id ``"<image>_r<region>"``, and its answer
is the per-region choice with that id in the task's annotation. Pushing is idempotent: tasks that exist are kept
as they are, so running a round again never touches what people answered.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

TOKEN_MISSING = "the environment variable {name} (annotator.label_studio.token_env) holding the API token is not set"
BRUSH = "query"  # the brush label of every pre-drawn region; the answer is the per-region choice
FROM_BRUSH, FROM_CHOICE = "region", "region_class"


class ExchangeError(RuntimeError):
    """A failure talking to the server: its message is the one line the caller shows."""


def region_key(image_id: str, region: int) -> str:
    """The Label Studio region id of a queried region: the join key between a task and the selection. (Not
    ``#``: the editor cuts region ids at ``#``, which would merge every region of an image into one.)"""
    return f"{image_id}_r{region}"


def label_config(classes: list[str], colours: list[list[int]] | None, void: str) -> str:
    """The labelling interface: the image, the queried regions as brush regions, and per selected region one
    choice among the class names (each with its colour, where the dataset has a palette) and ``void``."""
    from xml.sax.saxutils import quoteattr

    def swatch(k: int) -> str:
        if colours is None:
            return ""
        r, g, b = colours[k]
        return f" style={quoteattr(f'border-left: 14px solid rgb({r}, {g}, {b}); padding-left: 4px')}"

    choices = "\n".join(f"    <Choice value={quoteattr(name)}{swatch(k)}/>" for k, name in enumerate(classes))
    return f"""<View>
  <Image name="image" value="$image" zoom="true" zoomControl="true"/>
  <BrushLabels name="{FROM_BRUSH}" toName="image">
    <Label value="{BRUSH}" background="#ff00ff"/>
  </BrushLabels>
  <Header value="Class of the selected region:" visibleWhen="region-selected"/>
  <Choices name="{FROM_CHOICE}" toName="image" perRegion="true" choice="single-radio" required="false">
{choices}
    <Choice value={quoteattr(void)}/>
  </Choices>
</View>"""


def _client(url: str, token_env: str):
    from label_studio_sdk.client import LabelStudio

    token = os.environ.get(token_env)
    if not token:
        raise ExchangeError(TOKEN_MISSING.format(name=token_env))
    return LabelStudio(base_url=url, api_key=token, max_retries=0)


def _call(what: str, url: str, fn, *args, **kwargs):
    """One API call, its failures as one line naming the server and what was being done."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        return fn(*args, **kwargs)
    except httpx.HTTPError as err:
        raise ExchangeError(f"Label Studio at {url} is unreachable ({what}): {err}") from None
    except ApiError as err:
        detail = err.body.get("detail", err.body) if isinstance(err.body, dict) else err.body
        if err.status_code == 401:
            raise ExchangeError(f"Label Studio at {url} refused the API token ({what}): {detail}") from None
        raise ExchangeError(f"Label Studio at {url}: {what} failed with HTTP {err.status_code}: {detail}") from None


def _brush(key: str, mask: np.ndarray) -> dict:
    from label_studio_sdk.converter.brush import mask2rle

    h, w = mask.shape
    return {
        "id": key,
        "type": "brushlabels",
        "from_name": FROM_BRUSH,
        "to_name": "image",
        "original_width": int(w),
        "original_height": int(h),
        "image_rotation": 0,
        # Label Studio's RLE over RGBA; 255 where the region is (the value is the mask's alpha)
        "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [BRUSH]},
    }


def task_payload(task: dict, qmap: np.ndarray, model_version: str) -> dict:
    """One image's task: its data and the prediction holding its queried regions (``qmap``: k + 1 where the
    task's k-th region is, 0 elsewhere), as Label Studio imports it."""
    result = [_brush(region_key(task["image"], r), qmap == k + 1) for k, r in enumerate(task["regions"])]
    return {
        "data": {"image": task["url"], "adaspx_image": task["image"]},
        "predictions": [{"model_version": model_version, "result": result}],
    }


def _find_project(ls, url: str, key: str):
    """The project whose description is the round's key (titles are for people, and may repeat)."""
    for project in _call("listing projects", url, lambda: list(ls.projects.list())):
        if project.description == key:
            return project
    return None


def push(ls, url: str, request: dict) -> tuple[int, dict[str, dict]]:
    """The round's project (created with its tasks when missing; tasks of images it lacks added): its id and its
    tasks by image id."""
    project = _find_project(ls, url, request["description"])
    if project is None:
        project = _call(
            f"creating project {request['title']!r}",
            url,
            ls.projects.create,
            title=request["title"],
            label_config=request["label_config"],
            description=request["description"],
        )
        if request.get("storage_path"):  # local files served by the server (LOCAL_FILES_SERVING_ENABLED)
            _call(
                "adding the images' local storage",
                url,
                ls.import_storage.local.create,
                project=project.id,
                path=request["storage_path"],
                title="images",
                use_blob_urls=False,
            )
    tasks = pull_tasks(ls, url, project.id)
    missing = [t for t in request["tasks"] if t["image"] not in tasks]
    if missing:
        with np.load(request["masks"]) as masks:
            payload = [task_payload(t, masks[t["key"]], request["model_version"]) for t in missing]
        _call(f"importing {len(payload)} tasks", url, ls.projects.import_tasks, project.id, request=payload)
        # the prediction that pre-fills the editor is the one of the project's model version
        _call("setting the model version", url, ls.projects.update, project.id, model_version=request["model_version"])
        tasks = pull_tasks(ls, url, project.id)
    return project.id, tasks


def pull_tasks(ls, url: str, project: int) -> dict[str, dict]:
    """Every task of a project with its annotations, by image id (tasks without ``adaspx_image`` are not ours)."""
    out = {}
    for task in _call("listing tasks", url, lambda: list(ls.tasks.list(project=project, fields="all"))):
        image = (task.data or {}).get("adaspx_image")
        if image is not None:
            out[image] = {"id": task.id, "annotations": [_plain(a) for a in (task.annotations or [])]}
    return out


def _plain(obj) -> dict:
    return obj if isinstance(obj, dict) else obj.model_dump(mode="json")


def answers(tasks: dict[str, dict], request: dict, emails: dict[int, str]) -> dict:
    """Per queried region, what the task's latest submitted annotation says: ``status`` ``answered`` (with its
    ``choices``, its annotator's address from ``emails`` by user id, and the annotation's time), ``open`` (not
    answered yet), or ``deleted`` (the annotation lacks the region); and ``foreign``: choices for ids that were
    never queried in that task."""
    rows, foreign = [], []
    for t in request["tasks"]:
        task = tasks[t["image"]]
        keys = [region_key(t["image"], r) for r in t["regions"]]
        submitted = [a for a in task["annotations"] if not a.get("was_cancelled")]
        if not submitted:
            rows += [{"image": t["image"], "region": r, "task": task["id"], "status": "open"} for r in t["regions"]]
            continue
        latest = max(submitted, key=lambda a: (a.get("updated_at") or "", a["id"]))
        items: dict[str, dict] = {}
        for item in latest.get("result") or []:
            kind = {"brushlabels": "brush", "choices": "choices"}.get(item.get("type"))
            if kind is not None and "id" in item:
                items.setdefault(item["id"], {})[kind] = item.get("value", {}).get(kind, True)
        foreign += [
            {"image": t["image"], "task": task["id"], "id": key}
            for key, got in items.items()
            if key not in keys and "choices" in got
        ]
        who = emails.get(latest.get("completed_by"), str(latest.get("completed_by", "")))
        for r, key in zip(t["regions"], keys, strict=True):
            got = items.get(key)
            row = {"image": t["image"], "region": r, "task": task["id"], "annotation": latest["id"]}
            if got is None:
                row["status"] = "deleted"
            elif not got.get("choices"):
                row["status"] = "open"
            else:
                row.update(status="answered", choices=list(got["choices"]), annotator=who, time=latest["updated_at"])
            rows.append(row)
    return {"regions": rows, "foreign": foreign}


def exchange(request: dict) -> dict:
    """Push the round's tasks (where missing) and read back every queried region's answer."""
    url = request["url"].rstrip("/")
    ls = _client(url, request["token_env"])
    _call("checking the API token", url, ls.users.whoami)
    project, tasks = push(ls, url, request)
    emails = {u.id: u.email for u in _call("listing users", url, lambda: list(ls.users.list()))}
    earlier = []
    for before in request.get("earlier", []):  # read again, never written: their answers may have changed
        found = _find_project(ls, url, before["description"])
        if found is None:  # deleted from the server: what was recorded stands
            continue
        held = pull_tasks(ls, url, found.id)
        before = {**before, "tasks": [t for t in before["tasks"] if t["image"] in held]}
        page = f"{url}/projects/{found.id}/data"
        earlier.append({"round": before["round"], "project_url": page, **answers(held, before, emails)})
    reply = {"project": project, "project_url": f"{url}/projects/{project}/data", "earlier": earlier}
    return reply | answers(tasks, request, emails)


def export_tasks(request: dict) -> dict:
    """Write the tasks of ``request`` as a Label Studio import file (JSON, with their predictions) at ``out``."""
    with np.load(request["masks"]) as masks:
        payload = [task_payload(t, masks[t["key"]], request["model_version"]) for t in request["tasks"]]
    out = Path(request["out"])
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(out)
    return {"tasks": len(payload)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -P label_studio.py REQUEST.json", file=sys.stderr)
        return 2
    try:
        request = json.loads(Path(argv[0]).read_text())
        reply = export_tasks(request) if request.get("action") == "export" else exchange(request)
    except ExchangeError as err:
        print(err, file=sys.stderr)
        return 2
    Path(request["reply"]).write_text(json.dumps(reply))  # a file, not stdout: libraries may print there
    return 0


if __name__ == "__main__":
    sys.exit(main())
