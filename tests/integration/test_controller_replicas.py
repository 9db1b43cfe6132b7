"""Two controller processes on one PostgreSQL serve one fleet consistently."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import requests

from controller.cli import main as controller_main
from tests.device_sim import SimDevice
from tests.fixtures.controller_server import free_port, start_controller

pytestmark = pytest.mark.integration


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    data = tmp_path / "controller"
    token_file = tmp_path / "token"
    assert (
        controller_main(
            [
                "--data-dir",
                str(data),
                "init",
                "--db-url",
                postgres_url,
                "--token-file",
                str(token_file),
                "--tpm-less",
                "allow",  # the simulated node has no TPM
            ]
        )
        == 0
    )
    ports = [free_port(), free_port()]
    procs = [start_controller(data, p, tmp_path / f"c{i}.log") for i, p in enumerate(ports)]
    try:
        yield data, token_file.read_text().strip(), [f"https://127.0.0.1:{p}" for p in ports]
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _doc(url: str, ca: str, dev: SimDevice) -> dict:  # type: ignore[type-arg]
    r = requests.post(
        f"{url}/api/v1/device/config",
        json=dev.signed({"config_hash": ""}),
        headers=dev.attest_over_https(url, ca),
        verify=ca,
        timeout=30,
    )
    r.raise_for_status()
    return json.loads(base64.b64decode(r.json()["config"]["payload"]))["body"]


def test_nodes_polling_either_replica_get_the_same_config(replicas, tmp_path):
    data, token, (a, b) = replicas
    ca = str(data / "pki" / "root-ca.pem")
    auth = {"Authorization": f"Bearer {token}"}
    bundle = tmp_path / "bundle"
    controller_main(["--data-dir", str(data), "bundle", "--out", str(bundle)])
    dev = SimDevice.from_bundle(bundle, "sn-r")
    claim = {"serial": "sn-r", "device_cert_sha256": dev.device.sha256}
    requests.post(
        f"{a}/api/v1/nodes/claim", json=claim, headers=auth, verify=ca, timeout=30
    ).raise_for_status()
    r = requests.post(
        f"{b}/api/v1/device/register", json=dev.register_body(), verify=ca, timeout=30
    )
    assert r.status_code == 201
    requests.post(
        f"{b}/api/v1/images/register",
        headers=auth,
        verify=ca,
        timeout=30,
        json={
            "name": "img",
            "format": "oci-archive",
            "sha256": "d" * 64,
            "size": 1,
            "url": "https://mirror.invalid/i",
        },
    ).raise_for_status()
    requests.post(
        f"{a}/api/v1/apps",
        headers=auth,
        verify=ca,
        timeout=30,
        json={"name": "web", "kind": "container", "image": "img"},
    ).raise_for_status()
    requests.post(
        f"{b}/api/v1/nodes/sn-r/apps", headers=auth, verify=ca, timeout=30, json={"app": "web"}
    ).raise_for_status()

    from_a, from_b = _doc(a, ca, dev), _doc(b, ca, dev)
    assert from_a == from_b
    assert [x["name"] for x in from_a["apps"]] == ["web"]
