"""Pre-fetching the images a rollout names (in the download window, reported per image)
and the labels a node reports about itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_agent.device_labels import device_labels
from node_agent.download_gate import DownloadGate
from node_agent.image_store import ImageStore
from node_agent.prefetch import Prefetcher
from protocol.downloads import DownloadPolicy
from protocol.inventory import NodeInventory, PciDevice
from protocol.windows import Window
from tests.fakes import FakeClock
from tests.unit.test_image_store import FakeClient
from tests.unit.test_reconciler_health_downloads import V1, V2, _at, _ref


def _prefetcher(tmp_path: Path, clock: FakeClock) -> Prefetcher:
    client = FakeClient({_ref(d).url: d for d in (V1, V2)})
    store = ImageStore(tmp_path, client, 1 << 20, gate=DownloadGate(clock))  # type: ignore[arg-type]
    return Prefetcher(store, clock)


def test_listed_images_are_fetched_one_by_one_and_reported_done(tmp_path: Path):
    p = _prefetcher(tmp_path, FakeClock())
    p.want([_ref(V1), _ref(V2)])
    assert [s.state for s in p.statuses()] == ["waiting", "waiting"]
    assert p.run_once() and p.run_once() and not p.run_once()
    done = p.statuses()
    assert [(s.state, s.done_bytes, s.total_bytes) for s in done] == [
        ("done", len(V1), len(V1)),
        ("done", len(V2), len(V2)),
    ]


def test_outside_the_download_window_nothing_is_fetched_and_the_opening_is_reported(tmp_path):
    clock = FakeClock()
    clock.now = _at("2026-03-10 12:00")
    p = _prefetcher(tmp_path, clock)
    p.store.gate.set_policy(DownloadPolicy(window=Window(cron="0 1 * * *", grace_s=3600)))
    p.want([_ref(V1)])
    assert not p.run_once()
    (status,) = p.statuses()
    assert status.state == "waiting" and status.opens_at is not None
    assert p.store.client.calls == []  # type: ignore[attr-defined]
    clock.now = _at("2026-03-11 01:00")
    assert p.run_once() and p.statuses()[0].state == "done"


def test_bytes_that_are_not_the_image_fail_the_prefetch_for_good(tmp_path: Path):
    p = _prefetcher(tmp_path, FakeClock())
    p.store.client.blobs[_ref(V1).url] = V2  # type: ignore[attr-defined]
    p.want([_ref(V1)])
    p.run_once()
    (status,) = p.statuses()
    assert status.state == "failed" and "does not match" in status.error
    assert not p.run_once()


def test_device_labels_come_from_inventory_bundle_and_file_the_file_winning(tmp_path: Path):
    gpu = PciDevice(address="0000:01:00.0", class_code="030000", vendor="10de", device="1eb8",
                    is_gpu=True)  # fmt: skip
    inventory = NodeInventory(machine="x86_64", pci=[gpu])
    labels_file = tmp_path / "labels.yaml"
    labels_file.write_text("site: shop-7\nrack: r2\nBad Key: x\nzone: 'not ok!'\n")
    labels = device_labels(inventory, {"labels": {"site": "shop-1", "tier": "edge"}}, labels_file)
    assert labels == {
        "arch": "amd64",
        "gpu": "present",
        "rack": "r2",
        "site": "shop-7",
        "tier": "edge",
    }


def test_device_labels_without_a_file_or_bundle_labels_are_the_inventorys(tmp_path: Path):
    labels = device_labels(NodeInventory(machine="aarch64"), {}, tmp_path / "missing.yaml")
    assert labels == {"arch": "arm64"}


def test_a_bundle_made_with_labels_gives_its_nodes_those_labels(tmp_path: Path):
    from controller.cli import main as controller_main
    from node_agent.client import load_bundle
    from tests.fixtures.controller_server import free_port, init_controller

    ctl = init_controller(tmp_path / "controller", free_port())
    args = ["--data-dir", str(ctl.data_dir), "bundle", "--out", str(tmp_path / "b"),
            "--label", "site=shop-12"]  # fmt: skip
    assert controller_main(args) == 0
    bundle = load_bundle(tmp_path / "b")
    assert device_labels(NodeInventory(), bundle, None) == {"site": "shop-12"}
    with pytest.raises(SystemExit, match="not a label"):
        controller_main([*args[:5], "--label", "Site=x y"])
