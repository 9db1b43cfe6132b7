"""Lifecycle events on libvirt's ``test:///default`` driver: the watcher sees this node's
domains stop (and only this node's), and wakes its listener."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import libvirt
import pytest

from node_agent.runtime.base import WorkloadSpec
from node_agent.runtime.vm import LibvirtRuntime
from node_agent.runtime.vm_events import event_name
from node_agent.runtime.vm_policy import domain_name
from tests.fixtures.libvirt_daemon import cleanup_node_domains
from tests.unit.test_vm_runtime_testdriver import URI, make_bundle


def _spec(tmp_path: Path, node: str) -> WorkloadSpec:
    image, sha = make_bundle(tmp_path / "vm.tar")
    app = str(uuid.uuid4())
    return WorkloadSpec(
        app_uuid=app,
        name="evt",
        node_uuid=node,
        image_path=image,
        image_sha256=sha,
        image_format="kernel-bundle",
        work_dir=tmp_path / "apps" / app,
    )


@pytest.fixture
def nodes():
    made = [str(uuid.uuid4()), str(uuid.uuid4())]
    yield made
    for node in made:
        cleanup_node_domains(URI, node)


def test_a_domain_stopping_behind_the_runtimes_back_wakes_the_listener(tmp_path, nodes):
    runtime = LibvirtRuntime(URI, nodes[0], "tcg", qemu_user=None)
    woken = threading.Event()
    runtime.watch(woken.set)
    spec = _spec(tmp_path, nodes[0])
    runtime.start(spec)
    name = domain_name(nodes[0], spec.app_uuid)
    _wait_for(
        woken,
        lambda: any(e.domain == name and e.name.startswith("started") for e in runtime.events),
    )
    seen = len(runtime.events)
    libvirt.open(URI).lookupByName(name).destroy()
    _wait_for(woken, lambda: any(e.stopped for e in runtime.events[seen:]))
    stopped = next(e for e in runtime.events[seen:] if e.stopped)
    assert stopped.domain == name
    assert stopped.name == "stopped/destroyed"
    runtime.close()


def _wait_for(woken: threading.Event, seen: Callable[[], bool]) -> None:
    """Wait on the listener's wake-ups (not on a clock) until `seen()` holds."""
    while not seen():
        assert woken.wait(5.0), "no libvirt event within 5 s"
        woken.clear()


def test_other_nodes_domains_are_not_reported(tmp_path, nodes):
    mine = LibvirtRuntime(URI, nodes[0], "tcg", qemu_user=None)
    other = LibvirtRuntime(URI, nodes[1], "tcg", qemu_user=None)
    mine.watch(lambda: None)
    seen_by_other = threading.Event()
    other.watch(seen_by_other.set)
    other.start(_spec(tmp_path, nodes[1]))
    other.remove(other.list().popitem()[0])
    assert seen_by_other.wait(5.0)  # events were delivered …
    assert mine.events == []  # … but not for domains of another node
    mine.close()
    other.close()


def test_event_names_are_readable() -> None:
    assert event_name(
        libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED
    ) == ("stopped/failed")
    assert event_name(libvirt.VIR_DOMAIN_EVENT_STARTED, 0) == "started/0"
