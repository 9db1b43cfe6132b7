"""Operators give VM apps blank data disks and a vTPM through the API; both reach the node."""

from __future__ import annotations

import hashlib
import uuid as uuidlib

import pytest

from controller.domain.desired import current_desired_state
from controller.store.models import Node

API = "/api/v1"


@pytest.fixture
def api(api):  # type: ignore[no-untyped-def]
    call = api
    for name, fmt, data in (("vm", "qcow2", b"QFI\xfb"), ("box", "oci-archive", b"oci")):
        sha = hashlib.sha256(data).hexdigest()
        r = call("POST", f"/images?name={name}&format={fmt}&sha256={sha}", data=data)
        assert r.status_code < 300, r.json
    return call


def _node(controller_app, serial: str) -> None:  # type: ignore[no-untyped-def]
    with controller_app.extensions["outpost"].db.transaction() as s:
        s.add(Node(serial=serial, uuid=str(uuidlib.uuid4()), state="registered"))


def test_a_vm_apps_data_disks_and_vtpm_reach_the_nodes_desired_state(api, controller_app):
    _node(controller_app, "n1")
    body = {
        "name": "db",
        "kind": "vm",
        "image": "vm",
        "disks": [{"name": "data", "size_mib": 512}],
        "vtpm": True,
    }
    assert api("POST", "/apps", json=body).status_code == 201
    assert api("POST", "/nodes/n1/apps", json={"app": "db"}).status_code < 300
    with controller_app.extensions["outpost"].db.transaction() as s:
        node = s.query(Node).filter_by(serial="n1").one()
        (app,) = current_desired_state(s, node, "https://c").apps
    assert [(d.name, d.size_mib) for d in app.disks] == [("data", 512)]
    assert app.vtpm is True


def test_a_container_asking_for_a_data_disk_is_refused_and_not_created(api):
    body = {
        "name": "web",
        "kind": "container",
        "image": "box",
        "disks": [{"name": "d", "size_mib": 1}],
    }
    r = api("POST", "/apps", json=body)
    assert r.status_code == 422 and "VMs only" in str(r.json)
    assert api("GET", "/apps/web").status_code == 404


def test_a_data_disk_above_the_size_limit_is_refused(api):
    body = {"name": "big", "kind": "vm", "image": "vm", "disks": [{"name": "d", "size_mib": 2**21}]}
    r = api("POST", "/apps", json=body)
    assert r.status_code == 422 and "size_mib" in str(r.json)
