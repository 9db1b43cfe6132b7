"""The reconciler with a network hook: networks first, interfaces into each WorkloadSpec."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from node_agent.image_store import ImageStore
from node_agent.network import ConfigRefused, WorkloadNetworks
from node_agent.reconciler import Reconciler
from node_agent.runtime.base import NetAttachment, Workload, WorkloadSpec
from protocol.desired_state import DesiredState
from protocol.messages import AppState
from tests.fakes import FakeRuntime
from tests.fixtures.netns import app_doc, desired_doc

NODE = str(uuid.UUID(int=21))
BLOB = b"an image"
SHA = hashlib.sha256(BLOB).hexdigest()
NETS = [{"name": "lan", "subnet": "10.5.0.0/24"}, {"name": "dmz", "subnet": "10.6.0.0/24"}]


class RecordingRuntime(FakeRuntime):
    def __init__(self, kind: str, events: list[str]) -> None:
        super().__init__()
        self.kind = kind
        self.events = events
        self.specs: list[WorkloadSpec] = []

    def start(self, spec: WorkloadSpec) -> Workload:
        self.events.append(f"start {spec.name}")
        self.specs.append(spec)
        return super().start(spec)

    def stop(self, app_uuid: str, timeout_s: float = 10.0) -> None:
        self.events.append(f"stop {app_uuid[:8]}")
        super().stop(app_uuid, timeout_s)

    def remove(self, app_uuid: str) -> None:
        self.events.append(f"remove {app_uuid[:8]}")
        super().remove(app_uuid)


class FakeHook:
    """Plans one attachment per declared network; can refuse the next config."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.refuse = False
        self.in_force: dict[str, WorkloadNetworks] = {}
        self.octet = 2

    def apply(self, desired: DesiredState | None) -> None:
        self.events.append("apply")
        if self.refuse:
            raise ConfigRefused("networks 'lan' and 'dmz' overlap")
        self.in_force = {}
        for app in desired.apps if desired else []:
            atts = tuple(
                NetAttachment(
                    n.name,
                    f"ob-{n.name}",
                    "52:54:00:00:00:01",
                    f"10.5.0.{self.octet}",
                    24,
                    "10.5.0.1",
                    "ov-x-0",
                )
                for n in app.networks
            )
            self.in_force[app.uuid] = WorkloadNetworks(
                atts, "/run/netns/x" if app.kind == "container" else ""
            )

    def workload_networks(self, app_uuid: str) -> WorkloadNetworks:
        return self.in_force.get(app_uuid, WorkloadNetworks())


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def runtimes(events):  # type: ignore[no-untyped-def]
    return {
        "container": RecordingRuntime("container", events),
        "vm": RecordingRuntime("vm", events),
    }


@pytest.fixture
def hook(events) -> FakeHook:  # type: ignore[no-untyped-def]
    return FakeHook(events)


def _reconciler(tmp_path: Path, runtimes, hook) -> Reconciler:  # type: ignore[no-untyped-def]
    store = ImageStore(tmp_path / "images", client=None, max_bytes=1 << 20)  # type: ignore[arg-type]
    (tmp_path / "images" / "sha256" / SHA).write_bytes(BLOB)
    return Reconciler(NODE, store, runtimes, tmp_path / "apps", network=hook)


def _doc(*apps: dict[str, object], generation: int = 1) -> DesiredState:
    return DesiredState.model_validate(desired_doc(NODE, generation, NETS, list(apps)))


def _app(
    name: str, kind: str = "container", nets: tuple[str, ...] = ("lan",), **kw: object
) -> dict[str, object]:
    return app_doc(name, kind, [{"name": n} for n in nets], sha256=SHA, size=len(BLOB), **kw)


def test_networks_are_applied_before_any_app_starts(tmp_path, runtimes, hook, events):
    _reconciler(tmp_path, runtimes, hook).reconcile(_doc(_app("web"), _app("vm1", "vm")))
    assert events[0] == "apply" and sorted(events[1:]) == ["start vm1", "start web"]


def test_a_container_gets_its_interfaces_and_namespace(tmp_path, runtimes, hook):
    _reconciler(tmp_path, runtimes, hook).reconcile(_doc(_app("web", nets=("lan", "dmz"))))
    (spec,) = runtimes["container"].specs
    assert [a.network for a in spec.networks] == ["lan", "dmz"]
    assert spec.netns_path == "/run/netns/x"


def test_an_app_without_networks_gets_no_network_at_all(tmp_path, runtimes, hook):
    _reconciler(tmp_path, runtimes, hook).reconcile(_doc(_app("solo", nets=())))
    (spec,) = runtimes["container"].specs
    assert (spec.networks, spec.netns_path) == ((), "")


def test_usb_adapters_reach_the_vm_spec(tmp_path, runtimes, hook):
    app = _app("cam", "vm", nets=(), adapters=[{"kind": "usb", "match": "046d:0825"}])
    _reconciler(tmp_path, runtimes, hook).reconcile(_doc(app))
    assert runtimes["vm"].specs[0].usb_devices == ("046d:0825",)


def test_an_app_on_networks_is_in_error_where_networks_are_not_managed(tmp_path, runtimes):
    (status,) = _reconciler(tmp_path, runtimes, None).reconcile(_doc(_app("web")))
    assert (status.state, status.error) == (
        AppState.ERROR,
        "app networks are not managed on this node",
    )
    assert runtimes["container"].specs == []


def test_a_refused_network_config_leaves_apps_on_networks_in_force_running(
    tmp_path, runtimes, hook
):
    rec = _reconciler(tmp_path, runtimes, hook)
    rec.reconcile(_doc(_app("web")))
    hook.refuse = True
    (status,) = rec.reconcile(_doc(_app("web"), generation=2))
    assert status.state is AppState.RUNNING and len(runtimes["container"].specs) == 1


def test_a_refused_network_config_puts_a_new_app_needing_it_in_error(tmp_path, runtimes, hook):
    rec = _reconciler(tmp_path, runtimes, hook)
    rec.reconcile(_doc(_app("web")))
    hook.refuse = True
    statuses = {s.name: s for s in rec.reconcile(_doc(_app("web"), _app("new"), generation=2))}
    assert statuses["new"].state is AppState.ERROR
    assert statuses["new"].error == "network config not applied: networks 'lan' and 'dmz' overlap"


def test_changed_interfaces_recreate_a_running_app_once(tmp_path, runtimes, hook, events):
    rec = _reconciler(tmp_path, runtimes, hook)
    rec.reconcile(_doc(_app("web")))
    hook.octet = 9  # the next apply plans another address
    rec.reconcile(_doc(_app("web"), generation=2))
    rec.reconcile(_doc(_app("web"), generation=2))
    assert [e for e in events if e != "apply"] == [
        "start web",
        f"remove {_app('web')['uuid'][:8]}",
        "start web",
    ]
    assert runtimes["container"].specs[-1].networks[0].ip == "10.5.0.9"


def test_changed_interfaces_are_noticed_after_an_agent_restart(tmp_path, runtimes, hook, events):
    _reconciler(tmp_path, runtimes, hook).reconcile(_doc(_app("web")))
    hook.octet = 9
    again = _reconciler(tmp_path, runtimes, hook)  # a new agent process, same workloads
    again.reconcile(_doc(_app("web"), generation=2))
    assert [e for e in events if e.startswith("start")] == ["start web", "start web"]
    assert runtimes["container"].specs[-1].networks[0].ip == "10.5.0.9"
