"""The node page lists the node's PCI adapters: IOMMU group, assignable or why not."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

from controller.store.models import Node
from node_agent.inventory import collect_inventory

SYSFS = Path(__file__).resolve().parents[1] / "data" / "sysfs"


def _node(ui_app, serial: str, tree: str) -> None:  # type: ignore[no-untyped-def]
    with ui_app.extensions["outpost"].db.transaction() as s:
        s.add(
            Node(
                serial=serial,
                uuid=str(uuidlib.uuid4()),
                state="registered",
                inventory=collect_inventory(SYSFS / tree),
            )
        )


def test_the_node_page_lists_a_gpu_with_the_functions_that_go_with_it(ui_client, ui_app):
    _node(ui_app, "gpu-1", "nvidia")
    html = ui_client("viewer").get("/ui/nodes/gpu-1").get_data(as_text=True)
    assert "PCI adapters" in html and "IOMMU on" in html
    assert "<td>0000:01:00.0</td><td>gpu</td><td>10de:1eb8</td><td>nvidia</td>" in html
    assert "yes (with 0000:01:00.1)" in html
    assert "0000:00:01.0" not in html  # the root port is not an adapter


def test_the_node_page_says_why_a_gpu_in_a_shared_group_cannot_be_assigned(ui_client, ui_app):
    _node(ui_app, "gpu-2", "nvidia-shared-group")
    html = ui_client("viewer").get("/ui/nodes/gpu-2").get_data(as_text=True)
    assert "also holds 0000:02:00.0" in html


def test_with_the_iommu_off_the_fix_is_said_once_not_on_every_row(ui_client, ui_app):
    _node(ui_app, "no-iommu", "iommu-off")
    html = ui_client("viewer").get("/ui/nodes/no-iommu").get_data(as_text=True)
    section = html.split('id="adapters-h"')[1].split("</section>")[0]
    assert section.count("intel_iommu=on") == 1 + section.count('title="')
    assert "IOMMU off: no adapter can be passed through" in section
    assert "(IOMMU off)" in section
