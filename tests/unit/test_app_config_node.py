"""An app's user-data and instance metadata on the node: the NoCloud seed disk (built,
verified, replaced atomically), the VM's read-only ``cidata`` disk, a container's files and
env, and the wire bounds of user-data and app reports."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from node_agent.metadata import instance_metadata, meta_data_json
from node_agent.metadata.seed import SEED_FILE, build_seed, read_seed
from node_agent.runtime.base import DiskAttachment, NetAttachment, WorkloadSpec
from node_agent.runtime.podman_args import run_argv
from node_agent.runtime.vm_policy import build_domain, prepare_seed
from protocol.app_config import MAX_USER_DATA_BYTES, AppReport
from protocol.desired_state import AppSpec

NODE = "0b7e4c11-0000-4000-8000-000000000002"
APP = {
    "uuid": "6a1c0d52-0000-4000-8000-000000000001",
    "name": "camera",
    "kind": "vm",
    "image": {"name": "img", "sha256": "ab" * 32, "size": 1, "url": "http://x/", "format": "qcow2"},
    "networks": [{"name": "lan", "ports": [{"host": 8080, "guest": 80}]}],
}
NET = NetAttachment("lan", "ob-1", "52:54:00:00:00:01", "10.9.0.2", 24, "10.9.0.1", "ov-1")


def _spec(tmp_path: Path, kind: str = "vm", **extra: object) -> WorkloadSpec:
    app = AppSpec.model_validate({**APP, **extra})
    meta = meta_data_json(instance_metadata(app, NODE, (NET,)))
    fmt = "qcow2" if kind == "vm" else "oci-archive"
    return WorkloadSpec(
        app_uuid=app.uuid,
        name=app.name,
        node_uuid=NODE,
        image_path=tmp_path / "img",
        image_sha256="ab" * 32,
        image_format=fmt,
        work_dir=tmp_path,
        meta_data=meta,
        user_data=app.user_data,
    )


def test_the_instance_metadata_names_the_instance_its_interfaces_and_ports():
    meta = json.loads(meta_data_json(instance_metadata(AppSpec.model_validate(APP), NODE, (NET,))))
    assert meta["instance-id"] == APP["uuid"] and meta["local-hostname"] == "camera"
    assert meta["interfaces"] == [
        {"network": "lan", "ip": "10.9.0.2", "mac": "52:54:00:00:00:01", "gateway": "10.9.0.1"}
    ]
    assert meta["ports"] == [{"network": "lan", "host": 8080, "guest": 80, "proto": "tcp"}]
    assert meta["metadata_url"] == "http://169.254.169.254"


def test_the_seed_is_a_cidata_fat_disk_with_meta_data_and_user_data(tmp_path):
    seed = build_seed(tmp_path / SEED_FILE, b'{"instance-id": "x"}\n', "héllo\r\n".encode())
    label, files = read_seed(seed)
    assert label == "cidata"
    assert files == {"meta-data": b'{"instance-id": "x"}\n', "user-data": "héllo\r\n".encode()}
    assert stat.S_IMODE(seed.stat().st_mode) == 0o600


def test_a_new_seed_replaces_the_old_one_and_leaves_no_temporary_file(tmp_path):
    build_seed(tmp_path / SEED_FILE, b"{}", b"mode: face\n")
    build_seed(tmp_path / SEED_FILE, b"{}", b"mode: eyes\n")
    assert read_seed(tmp_path / SEED_FILE)[1]["user-data"] == b"mode: eyes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [SEED_FILE]


def test_a_vm_with_user_data_gets_its_seed_as_a_read_only_disk_after_the_others(tmp_path):
    spec = _spec(tmp_path, user_data="mode: eyes\n")
    seed = prepare_seed(spec)
    assert seed == tmp_path / SEED_FILE
    root = DiskAttachment(tmp_path / "root.qcow2", backing=tmp_path / "img", backing_format="qcow2")
    disks = build_domain(replace(spec, root_disk=root), "tcg", None, seed=seed).devices.disks
    assert disks[0].source == str(root.path) and len(disks) == 2
    last = disks[-1]
    assert (last.source, last.readonly, last.serial, last.driver_type) == (
        str(seed), True, "cidata", "raw",
    )  # fmt: skip
    assert json.loads(read_seed(seed)[1]["meta-data"])["instance-id"] == APP["uuid"]


def test_a_vm_without_user_data_has_no_seed_and_a_stale_one_is_removed(tmp_path):
    (tmp_path / SEED_FILE).write_bytes(b"old")
    assert prepare_seed(_spec(tmp_path)) is None
    assert not (tmp_path / SEED_FILE).exists()


def test_a_container_gets_its_config_files_bound_and_named_in_env_not_the_text(tmp_path):
    spec = _spec(tmp_path, kind="container", user_data="token: s3cret\n", user_data_secret=True)
    argv = run_argv(replace(spec, networks=(NET,), netns_path="/run/netns/x"), NODE)
    assert f"{tmp_path}/outpost-config:/run/outpost:ro" in argv
    assert f"OUTPOST_INSTANCE_ID={APP['uuid']}" in argv and "OUTPOST_HOSTNAME=camera" in argv
    assert "OUTPOST_USER_DATA_FILE=/run/outpost/user-data" in argv
    assert not any("s3cret" in a for a in argv)


def test_a_container_without_user_data_gets_no_config_files(tmp_path):
    argv = run_argv(_spec(tmp_path, kind="container"), NODE)
    assert not any("/run/outpost" in a for a in argv)


@pytest.mark.parametrize(
    "user_data", ["x" * (MAX_USER_DATA_BYTES + 1), "nul\x00", "\ud800"], ids=str.__len__
)
def test_the_wire_refuses_user_data_too_large_with_nul_or_not_utf8(user_data):
    with pytest.raises(ValidationError, match="user_data"):
        AppSpec.model_validate({**APP, "user_data": user_data})


@pytest.mark.parametrize(
    "report",
    [
        {"values": {"fps": float("inf")}},
        {"values": {"Bad-Name": 1}},
        {"values": {f"v{i}": 1 for i in range(33)}},
        {"labels": {"device": "x" * 65}},
        {"labels": {"device": "tab\there"}},
        {"values": {"fps": 1e16}},
    ],
    ids=["inf", "name", "too-many", "long-label", "control-char", "too-big"],
)
def test_an_app_report_out_of_bounds_is_refused(report):
    with pytest.raises(ValidationError):
        AppReport.model_validate(report)
