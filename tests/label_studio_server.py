"""A real Label Studio server on 127.0.0.1 for the tests, from the environment `make label-studio` creates."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LS_PYTHON = ROOT / ".venv-label-studio" / "bin" / "python"
TOKEN_ENV = "ADASPX_TEST_LABEL_STUDIO_TOKEN"


@dataclass
class Server:
    url: str
    token: str
    email: str
    password: str
    process: subprocess.Popen
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data_dir: Path, *, timeout: float = 400.0) -> Server:
    """Start a server with a fresh data folder, a known user and token, serving local files from ``/``; wait until
    it answers /health."""
    if not LS_PYTHON.is_file():
        raise RuntimeError(f"{LS_PYTHON} missing: run `make label-studio`")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = Server(
        url=f"http://127.0.0.1:{port}",
        token="adaspx0test0token0123456789abcdef012345",  # 40 characters: a legacy API token
        email="annotator@example.com",  # the login page checks the address (a one-letter TLD never logs in)
        password="adaspx-test-pass",
        process=None,  # type: ignore[arg-type]
        log=data_dir / "server.log",
    )
    env = {k: v for k, v in os.environ.items() if k not in {"USERNAME", "PASSWORD", "PORT", "HOST", "USER_TOKEN"}}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LOCAL_FILES_SERVING_ENABLED="true",
        LOCAL_FILES_DOCUMENT_ROOT="/",
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    cmd = [str(LS_PYTHON.parent / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1",
           "--port", str(port), "--username", server.email, "--password", server.password,
           "--user-token", server.token, "--enable-legacy-api-token"]  # fmt: skip
    with open(server.log, "w") as log:
        server.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"Label Studio exited:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=5) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(1)
    stop(server)
    raise RuntimeError(f"Label Studio did not answer within {timeout} s:\n{server.log.read_text()[-3000:]}")


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


def api(server: Server, method: str, path: str, body=None):
    """One REST call with the server's token, as a person's client makes it; the decoded JSON reply."""
    request = urllib.request.Request(
        server.url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Token {server.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        data = reply.read()
    return json.loads(data) if data else None


def project(server: Server, description: str) -> dict:
    """The project adaspx made for a round (its description is the round's key)."""
    found = api(server, "GET", "/api/projects?page_size=1000")
    found = [p for p in found["results"] if p["description"] == description]
    assert len(found) == 1, f"{len(found)} projects described {description!r}"
    return found[0]


def tasks(server: Server, project_id: int) -> list[dict]:
    """Every task of a project with its predictions and annotations."""
    reply = api(server, "GET", f"/api/tasks?project={project_id}&fields=all&page_size=1000")
    return reply["tasks"] if isinstance(reply, dict) else reply


def answer(server: Server, task: dict, choices: dict[str, str | None], annotation: int | None = None) -> dict:
    """Submit (or, given ``annotation``, change) a task's annotation as the editor does: every pre-drawn region of
    its prediction, and for each region id in ``choices`` with a class name the per-region choice."""
    brushes = [dict(item, origin="prediction") for item in task["predictions"][0]["result"]]
    result = list(brushes)
    for item in brushes:
        if choices.get(item["id"]) is not None:
            result.append(choice_item(item, choices[item["id"]]))
    if annotation is None:
        return api(server, "POST", f"/api/tasks/{task['id']}/annotations", {"result": result, "lead_time": 3.5})
    return api(server, "PATCH", f"/api/annotations/{annotation}", {"result": result, "lead_time": 5.0})


def choice_item(brush: dict, choice: str, key: str | None = None) -> dict:
    """The per-region choice the editor stores for a brush region: the same id (or ``key``), one class name."""
    same = {k: brush[k] for k in ("to_name", "original_width", "original_height", "image_rotation")}
    value = {"choices": [choice]}
    return {"id": key or brush["id"], "type": "choices", "from_name": "region_class", **same, "value": value}
