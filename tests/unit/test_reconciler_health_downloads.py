"""The reconciler with health probes (verdicts in the status, liveness restarts counted
and kept across agent restarts) and with the node's download policy (a new version's
image fetched before the old one stops; a closed window makes the app wait, saying so)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import tarfile
import uuid
from pathlib import Path

from node_agent.download_gate import DownloadGate
from node_agent.health import HealthMonitor
from node_agent.image_store import ImageStore
from node_agent.reconciler import Reconciler
from node_agent.runtime.base import WorkloadState
from protocol.desired_state import AppSpec, DesiredState, ImageRef, NodeSettings
from protocol.downloads import DownloadPolicy
from protocol.health import HealthProbe
from protocol.messages import AppState
from protocol.windows import Window
from tests.fakes import FakeClock, FakeRuntime
from tests.unit.test_health_probes import Results
from tests.unit.test_image_store import FakeClient

NODE = str(uuid.uuid4())
APP = str(uuid.uuid4())


def _oci(tag: str) -> bytes:
    """A tiny archive that passes the oci-archive format check."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, body in (("oci-layout", b"{}"), ("index.json", b"{}"), ("tag", tag.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


V1, V2 = _oci("version one"), _oci("version two")
LIVENESS = HealthProbe(
    kind="exec", command=["check"], interval_s=1, unhealthy_threshold=2, on_unhealthy="restart"
)


def _ref(data: bytes) -> ImageRef:
    sha = hashlib.sha256(data).hexdigest()
    return ImageRef(name="img", sha256=sha, size=len(data), url=f"http://d/{sha}",
                    format="oci-archive")  # fmt: skip


def _app(data: bytes = V1, probe: HealthProbe | None = LIVENESS) -> AppSpec:
    return AppSpec(uuid=APP, name="web", kind="container", image=_ref(data), health=probe)


def _doc(app: AppSpec, policy: DownloadPolicy | None = None, **kw: object) -> DesiredState:
    return DesiredState(
        node_uuid=NODE, generation=1, apps=[app], settings=NodeSettings(downloads=policy), **kw
    )


class Node:
    """One node's state dir; :meth:`agent` makes the agent's reconciler (again)."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.clock = FakeClock()
        self.runtime = FakeRuntime()
        self.client = FakeClient({_ref(d).url: d for d in (V1, V2)})
        self.results = Results()

    def agent(self) -> Reconciler:
        gate = DownloadGate(self.clock, lambda s: self.clock.advance(s))
        store = ImageStore(self.dir / "images", self.client, 1 << 20, gate=gate)  # type: ignore[arg-type]
        monitor = HealthMonitor(self.dir / "app-health.json", self.clock, run=self.results)
        return Reconciler(NODE, store, {"container": self.runtime}, self.dir / "apps",
                          clock=self.clock, health=monitor)  # fmt: skip


def test_a_probed_app_reports_its_health_and_one_without_a_probe_none(tmp_path: Path):
    node = Node(tmp_path)
    rec = node.agent()
    (status,) = rec.reconcile(_doc(_app()))
    assert status.state is AppState.RUNNING and status.health is not None
    assert status.health.status == "starting"
    rec.health.run_due()
    (status,) = rec.reconcile(_doc(_app()))
    assert status.health is not None and status.health.status == "healthy"
    (plain,) = node.agent().reconcile(_doc(_app(probe=None)))
    assert plain.health is None


def _turn_unhealthy(node: Node, rec: Reconciler) -> None:
    node.results.answers = [False, False]
    for _ in range(2):
        rec.health.run_due()
        node.clock.advance(1)


def test_an_app_failing_its_liveness_probe_is_restarted_and_the_restart_counted(tmp_path):
    node = Node(tmp_path)
    rec = node.agent()
    rec.reconcile(_doc(_app()))
    _turn_unhealthy(node, rec)
    (status,) = rec.reconcile(_doc(_app()))
    assert node.runtime.started == ["web", "web"]
    assert status.state is AppState.RUNNING and status.restarts == 1
    assert status.last_stop_reason == "unhealthy: HTTP 500"
    assert status.health is not None
    assert (status.health.status, status.health.liveness_restarts) == ("starting", 1)


def test_restart_count_and_health_survive_an_agent_restart(tmp_path: Path):
    node = Node(tmp_path)
    rec = node.agent()
    rec.reconcile(_doc(_app()))
    _turn_unhealthy(node, rec)
    rec.reconcile(_doc(_app()))
    rec.health.run_due()
    (before,) = rec.reconcile(_doc(_app()))
    assert before.health is not None and before.health.status == "healthy"

    (after,) = node.agent().reconcile(_doc(_app()))  # a new agent process, same state dir
    assert after.restarts == before.restarts == 1
    assert after.health == before.health
    assert node.runtime.started == ["web", "web"]  # the running app was not touched


def test_a_report_only_probe_never_restarts_the_app(tmp_path: Path):
    node = Node(tmp_path)
    rec = node.agent()
    probe = LIVENESS.model_copy(update={"on_unhealthy": "report"})
    rec.reconcile(_doc(_app(probe=probe)))
    _turn_unhealthy(node, rec)
    (status,) = rec.reconcile(_doc(_app(probe=probe)))
    assert status.health is not None and status.health.status == "unhealthy"
    assert status.health.last_failure == "HTTP 500"
    assert node.runtime.started == ["web"] and status.restarts == 0


def _at(text: str) -> float:
    """The FakeClock 'now' whose wall time is ``text`` (UTC)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() - 1_700_000_000.0


NIGHT = DownloadPolicy(window=Window(cron="0 1 * * *", grace_s=3600))


def test_a_new_version_waits_for_the_download_window_while_the_old_one_runs(tmp_path):
    node = Node(tmp_path)
    node.clock.now = _at("2026-03-10 12:00")
    rec = node.agent()
    rec.reconcile(_doc(_app(V1, None)))  # no policy yet: v1 downloads and runs
    (status,) = rec.reconcile(_doc(_app(V2, None), NIGHT))
    assert status.state is AppState.DOWNLOADING
    assert "waits for the download window" in status.waiting
    assert "opens 2026-03-11 01:00 UTC" in status.waiting
    (workload,) = node.runtime.workloads.values()
    assert workload.state is WorkloadState.RUNNING and workload.image_sha256 == _ref(V1).sha256
    node.clock.now = _at("2026-03-11 01:05")
    (status,) = rec.reconcile(_doc(_app(V2, None), NIGHT))
    assert status.state is AppState.RUNNING and status.waiting == ""
    assert node.runtime.workloads[APP].image_sha256 == _ref(V2).sha256


def test_a_new_version_is_fully_downloaded_before_the_old_workload_stops(tmp_path):
    node = Node(tmp_path)
    rec = node.agent()
    rec.reconcile(_doc(_app(V1, None)))
    seen_while_downloading = []
    original = node.client.download

    def download(url: str, dest: Path, offset: int):  # type: ignore[no-untyped-def]
        seen_while_downloading.append(node.runtime.workloads[APP].state)
        return original(url, dest, offset)

    node.client.download = download  # type: ignore[method-assign]
    rec.reconcile(_doc(_app(V2, None)))
    assert seen_while_downloading == [WorkloadState.RUNNING]


def test_prefetched_images_are_kept_from_garbage_collection(tmp_path: Path):
    node = Node(tmp_path)
    rec = node.agent()
    rec.store.ensure(_ref(V2))
    rec.reconcile(_doc(_app(V1, None), prefetch=[_ref(V2)]))
    assert rec.store.has(_ref(V2).sha256)
    rec.reconcile(_doc(_app(V1, None)))
    assert not rec.store.has(_ref(V2).sha256)


def test_a_new_datastore_for_the_image_recreates_nothing(tmp_path: Path):
    node = Node(tmp_path)
    rec = node.agent()
    rec.reconcile(_doc(_app(V1, None)))
    nearer = _app(V1, None)
    nearer = nearer.model_copy(
        update={"image": nearer.image.model_copy(update={"url": "http://cache/sha256/x"})}
    )
    rec.reconcile(_doc(nearer))
    assert node.runtime.started == ["web"]


def test_a_workload_whose_digest_still_holds_the_image_url_is_not_recreated(tmp_path: Path):
    from node_agent.spec_digest import url_spec_digest

    node = Node(tmp_path)
    rec = node.agent()
    rec.reconcile(_doc(_app(V1, None)))
    old = node.runtime.workloads[APP]
    node.runtime.workloads[APP] = dataclasses.replace(
        old, spec_digest=url_spec_digest(_app(V1, None))
    )  # as an agent before this one labelled it
    rec.reconcile(_doc(_app(V1, None)))
    assert node.runtime.started == ["web"]
