"""Maintenance windows end to end on one injected clock: the controller's rollout engine
and a node's reconciler, pre-fetcher and image store (real HTTP from a loopback image
server) both read it.

The site's download window is 01:00-02:00 UTC and its switch-over window 03:00-04:00.
A rollout started at noon: the node pre-fetches the new image only in its download window
(the server sees every byte then), is switched over only in its switch window, and the
rollout view says at each stage what the node waits for and when that opens.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from controller.domain.desired import current_desired_state
from controller.rollouts.engine import tick
from controller.rollouts.service import find_rollout, rollout_json
from controller.store.models import Node
from node_agent.client import ControllerClient
from node_agent.download_gate import DownloadGate
from node_agent.image_store import ImageStore
from node_agent.prefetch import Prefetcher
from node_agent.reconciler import Reconciler
from protocol.desired_state import DesiredState
from protocol.messages import InfoMessage
from tests.fakes import FakeClock, FakeRuntime

SERIALS = ("shop-1", "shop-2")


def _utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def _oci(tag: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, body in (("oci-layout", b"{}"), ("index.json", b"{}"), ("tag", tag.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


V1, V2 = _oci("one"), _oci("two" * 1000)
SHA1, SHA2 = hashlib.sha256(V1).hexdigest(), hashlib.sha256(V2).hexdigest()


class Clock(FakeClock):
    def at(self, text: str) -> None:
        self.now = _utc(text) - 1_700_000_000.0  # FakeClock.time() = 1.7e9 + now


@pytest.fixture
def image_server(clock: Clock) -> Iterator[tuple[str, list[tuple[float, str]]]]:
    """Serves the two images by digest; records (clock time, digest) per request."""
    blobs = {SHA1: V1, SHA2: V2}
    seen: list[tuple[float, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            sha = self.path.rsplit("/", 1)[-1]
            seen.append((clock.time(), sha))
            body = blobs[sha]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Site:
    """The controller (in process) and two nodes' agent parts, on one clock."""

    def __init__(self, app, client, headers, clock: Clock, root: Path) -> None:  # type: ignore[no-untyped-def]
        self.app, self.client, self.headers, self.clock = app, client, headers, clock
        self.services = app.extensions["outpost"]
        self.runtimes: dict[str, FakeRuntime] = {}
        self.agents: dict[str, tuple[Reconciler, Prefetcher]] = {}
        for serial in SERIALS:
            runtime = FakeRuntime()
            gate = DownloadGate(clock, clock.advance)
            client_ = ControllerClient("https://unused", root / "none.pem", 10.0)
            store = ImageStore(root / serial / "images", client_, 1 << 30, gate=gate)
            uuid = "00000000-0000-4000-8000-00000000000" + serial[-1]
            apps = root / serial / "apps"
            rec = Reconciler(uuid, store, {"container": runtime}, apps, clock=clock)
            self.runtimes[serial] = runtime
            self.agents[serial] = (rec, Prefetcher(store, clock))

    def api(self, method: str, path: str, **kw: Any) -> Any:
        r = self.client.open(f"/api/v1{path}", method=method, headers=self.headers, **kw)
        assert r.status_code < 400, (path, r.json)
        return r.json

    def node_step(self, serial: str) -> None:
        """What the agent does on a pass: take its config, reconcile, pre-fetch, report."""
        rec, prefetcher = self.agents[serial]
        with self.services.db.transaction() as s:
            node = s.scalar(select(Node).where(Node.serial == serial))
            doc = DesiredState.model_validate(
                current_desired_state(s, node, "https://c").model_dump(mode="json")
            )
        statuses = rec.reconcile(doc)
        prefetcher.want(doc.prefetch)
        prefetcher.run_once()
        info = InfoMessage(agent_version="t", config_generation=doc.generation, apps=statuses,
                           prefetch=prefetcher.statuses())  # fmt: skip
        with self.services.db.transaction() as s:
            node = s.scalar(select(Node).where(Node.serial == serial))
            node.info = info.model_dump(mode="json")

    def at(self, text: str) -> None:
        """The clock reads ``text``; every node takes a pass; the engine ticks."""
        self.clock.at(text)
        for serial in SERIALS:
            self.node_step(serial)
        with self.app.app_context():
            tick(self.services, now=self.clock.time())
        for serial in SERIALS:  # a switch-over reaches the node at its next pass
            self.node_step(serial)

    def view(self) -> dict[str, Any]:
        with self.services.db.transaction() as s:
            return rollout_json(s, find_rollout(s, 1), now=self.clock.time())

    def waiting(self) -> dict[str, str]:
        return {n["serial"]: n["waiting"] for n in self.view()["rings"][0]["nodes"]}

    def images_run(self) -> dict[str, str]:
        return {s: next(iter(rt.workloads.values())).image_sha256
                for s, rt in self.runtimes.items()}  # fmt: skip


@pytest.fixture
def site(controller_app, client, admin_headers, clock, image_server, tmp_path) -> Site:  # type: ignore[no-untyped-def]
    base, _ = image_server
    s = Site(controller_app, client, admin_headers, clock, tmp_path)
    for name, sha, data in (("v1", SHA1, V1), ("v2", SHA2, V2)):
        s.api("POST", "/images/register", json={"name": name, "format": "oci-archive",
              "sha256": sha, "size": len(data), "url": f"{base}/sha256/{sha}"})  # fmt: skip
    s.api("POST", "/apps", json={"name": "pos", "kind": "container", "image": "v1",
                                 "selector": {"site": "shop"}})  # fmt: skip
    with s.services.db.transaction() as db:
        for i, serial in enumerate(SERIALS, start=1):
            db.add(Node(serial=serial, uuid=f"00000000-0000-4000-8000-00000000000{i}",
                        state="registered", labels={"site": "shop"}))  # fmt: skip
    clock.at("2026-03-10 11:00")
    for serial in SERIALS:
        s.node_step(serial)  # v1 downloads and runs before any policy
    s.api("POST", "/site-policies", json={
        "name": "shop", "selector": {"site": "shop"},
        "download_window": {"cron": "0 1 * * *", "time_zone": "UTC", "grace_s": 3600},
        "switch_window": {"cron": "0 3 * * *", "time_zone": "UTC", "grace_s": 3600}})  # fmt: skip
    return s


def test_download_and_switch_over_each_happen_in_their_own_window(site: Site, image_server):
    _, seen = image_server
    seen.clear()
    site.clock.at("2026-03-10 12:00")
    site.api("POST", "/rollouts", json={
        "app": {"name": "pos", "kind": "container", "image": "v2", "selector": {"site": "shop"}},
        "rings": [{"soak_s": 60, "deadline_s": 600}]})  # fmt: skip
    site.at("2026-03-10 12:00")
    assert site.waiting() == dict.fromkeys(
        SERIALS,
        "waiting for its download window 0 1 * * * (UTC, 60 min): opens 2026-03-11 01:00:00 UTC",
    )
    site.at("2026-03-11 00:59")
    assert seen == [] and site.images_run() == dict.fromkeys(SERIALS, SHA1)

    site.at("2026-03-11 01:00")  # the download window: both pre-fetch
    assert sorted(sha for _, sha in seen) == [SHA2, SHA2]
    assert all(_utc("2026-03-11 01:00") <= t < _utc("2026-03-11 02:00") for t, _ in seen)
    assert site.waiting() == dict.fromkeys(
        SERIALS,
        "waiting for its switch window 0 3 * * * (UTC, 60 min): opens 2026-03-11 03:00:00 UTC",
    )
    assert site.images_run() == dict.fromkeys(SERIALS, SHA1)  # downloaded, not switched
    assert site.view()["expected_completion"] == pytest.approx(
        _utc("2026-03-11 03:00") + 5 + 60, abs=1
    )

    site.at("2026-03-11 02:59")
    assert site.images_run() == dict.fromkeys(SERIALS, SHA1)
    site.at("2026-03-11 03:00")  # the switch-over window
    assert site.images_run() == dict.fromkeys(SERIALS, SHA2)
    assert len(seen) == 2  # the switch-over downloaded nothing more
    assert {n["phase"] for n in site.view()["rings"][0]["nodes"]} == {"switched"}
    site.at("2026-03-11 03:01")
    site.at("2026-03-11 03:02")
    assert site.view()["state"] == "succeeded"


def test_a_closed_download_window_is_what_the_node_itself_reports(site: Site, image_server):
    site.clock.at("2026-03-10 12:00")
    site.api("POST", "/rollouts", json={
        "app": {"name": "pos", "kind": "container", "image": "v2", "selector": {"site": "shop"}},
        "rings": [{"soak_s": 0, "deadline_s": 600}]})  # fmt: skip
    site.at("2026-03-10 12:00")
    with site.services.db.transaction() as s:
        node = s.scalar(select(Node).where(Node.serial == "shop-1"))
        (fetch,) = node.info["prefetch"]
    assert fetch["state"] == "waiting" and fetch["opens_at"] == _utc("2026-03-11 01:00")
