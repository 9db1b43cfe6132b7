"""``outpost-lab deploy``: one app on every lab node, through the operator API.

The image is uploaded from the local image build (``build/images/manifest.json``, made by
``make images``) unless the controller has it already; the app is defined from an app
file (the operator API's app body, YAML or JSON) or from ``--name/--image/--command``;
it is assigned to every node and ``deploy`` waits until every node reports it RUNNING.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from lab.errors import LabError
from lab.operator import Operator
from lab.state import LabState, lab_lock, load_state, save_state
from lab.watch import NodeView, Progress, wait_for_nodes

__all__ = ["DEFAULT_COMMAND", "IMAGES_DIR", "app_body", "deploy"]

IMAGES_DIR = Path(__file__).resolve().parent.parent / "build" / "images"
DEFAULT_COMMAND = ["sh", "-c", "echo hello from the lab; while true; do sleep 30; done"]
MAX_APP_FILE = 64 * 1024


def _manifest(images_dir: Path) -> dict[str, dict[str, Any]]:
    path = images_dir / "manifest.json"
    try:
        return {i["name"]: i for i in json.loads(path.read_text())["images"]}
    except FileNotFoundError:
        raise LabError(f"no image build in {images_dir}: run `make images`") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(f"cannot read {path}: {exc}") from exc


def app_body(
    name: str, image: str, command: list[str] | None, app_file: Path | None, kind: str
) -> dict[str, Any]:
    """The app definition to create (validated by the controller when posted)."""
    if app_file is None:
        body: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "image": image,
            "resources": {"vcpus": 1, "memory_mib": 64 if kind == "container" else 96},
        }
        if kind == "container":
            body["command"] = command or DEFAULT_COMMAND
        return body
    try:
        if app_file.stat().st_size > MAX_APP_FILE:
            raise LabError(f"{app_file} is larger than {MAX_APP_FILE // 1024} KiB")
        loaded = yaml.safe_load(app_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LabError(f"cannot read the app file {app_file}: {exc}") from exc
    if not isinstance(loaded, dict) or not isinstance(loaded.get("name"), str):
        raise LabError(f"{app_file}: expected a mapping with at least name, kind and image")
    return loaded


def _upload_image(api: Operator, name: str, images_dir: Path) -> None:
    have = {i["name"] for i in api.call("GET", "/images")["images"]}
    if name in have:
        return
    manifest = _manifest(images_dir)
    if name not in manifest:
        raise LabError(
            f"image {name!r} is neither on the controller nor in {images_dir}/manifest.json"
            f" (built images: {', '.join(sorted(manifest))})"
        )
    img = manifest[name]
    path = images_dir / img["file"]
    if not path.exists():
        raise LabError(f"{path} is missing: run `make images`")
    params = {"name": name, "format": img["format"], "sha256": img["sha256"]}
    with path.open("rb") as fh:
        api.call("POST", "/images", params=params, data=fh)


def deploy(
    lab_dir: Path,
    body: dict[str, Any],
    progress: Progress,
    timeout_s: float = 600.0,
    images_dir: Path = IMAGES_DIR,
) -> dict[str, NodeView]:
    with lab_lock(lab_dir):
        state = load_state(lab_dir)
        if state is None or state.phase != "up":
            raise LabError(f"no lab is up in {lab_dir}: run `outpost-lab up` first")
        api = Operator(state.controller)
        name = body["name"]
        _upload_image(api, str(body.get("image", "")), images_dir)
        resp = api.request("POST", "/apps", json=body)
        if resp.status_code == 409:
            progress.say(f"app {name} exists already: assigning it as it is")
        elif resp.status_code != 201:
            raise LabError(f"the controller refused app {name}: {resp.status_code} {resp.text}")
        for node in state.nodes:
            api.call("POST", f"/nodes/{node.serial}/apps", json={"app": name})
        if name not in state.apps:
            state.apps.append(name)
            save_state(state)
        progress.say(f"app {name} assigned to {len(state.nodes)} node(s)")
        return _wait_running(state, api, name, progress, timeout_s)


def _wait_running(
    state: LabState, api: Operator, name: str, progress: Progress, timeout_s: float
) -> dict[str, NodeView]:
    def describe(view: NodeView) -> str:
        st = view.apps.get(name, "")
        err = view.app_errors.get(name, "")
        return f"{name} {st}" + (f": {err[:200]}" if err else "") if st else ""

    views = wait_for_nodes(
        state, api, progress, describe, lambda v: v.apps.get(name) == "RUNNING", timeout_s
    )
    progress.say(f"{name} RUNNING on {len(views)}/{len(state.nodes)} nodes")
    return views
