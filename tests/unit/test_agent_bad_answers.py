"""The agent reads the controller's answers and its runtimes' output as untrusted input:
a malformed answer is an error naming the call and the problem, never a crash."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from node_agent import volumes
from node_agent.client import ControllerClient, ControllerError, MalformedAnswer
from node_agent.https import Answer
from node_agent.metrics import podman_stats
from node_agent.runtime.base import TemporaryError, Workload, WorkloadState
from node_agent.runtime.domain_xml.domain import Domain, DomainXmlError, OutpostMetadata
from node_agent.runtime.podman_cli import PodmanCLI

APP = "00000000-0000-4000-8000-000000000001"


def _client(monkeypatch: pytest.MonkeyPatch, status: int, content: bytes) -> ControllerClient:
    client = ControllerClient("https://127.0.0.1:1", Path("/nonexistent-ca.pem"))

    def answer(*_a: Any, **_kw: Any) -> Answer:
        return Answer(status, {}, content)

    monkeypatch.setattr(client._http, "request", answer)
    return client


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "nests"),
        (b'{"unchanged": NaN}', "NaN"),
        (b"\x00\xff", "not JSON"),
        (b"[]", "not an object"),
        (b'{"unchanged": "maybe"}', "unchanged"),
        (b'{"unchanged": false, "config": 7}', "config"),
    ],
)
def test_a_malformed_config_answer_is_an_error_naming_the_call(monkeypatch, content, problem):
    client = _client(monkeypatch, 200, content)
    with pytest.raises(MalformedAnswer, match=problem) as caught:
        client._call("POST", "config", {})
    assert "POST config" in str(caught.value) and isinstance(caught.value, ControllerError)


def test_a_register_answer_without_a_uuid_is_malformed(monkeypatch):
    client = _client(monkeypatch, 201, b'{"node_uuid": "not-a-uuid"}')
    with pytest.raises(MalformedAnswer, match="node_uuid"):
        client._call("POST", "register", {})


def test_a_certs_answer_of_the_wrong_shape_is_malformed(monkeypatch):
    client = _client(monkeypatch, 200, b'{"signing": "pem", "root": "pem"}')
    with pytest.raises(MalformedAnswer, match="signing"):
        client.certs()


def test_an_error_answer_that_is_not_json_keeps_its_status(monkeypatch):
    client = _client(monkeypatch, 502, b"<html>bad gateway</html>")
    with pytest.raises(ControllerError) as caught:
        client._call("POST", "info", {})
    assert caught.value.status == 502 and not isinstance(caught.value, MalformedAnswer)


def _fake_podman(tmp_path: Path, stdout: str) -> str:
    out = tmp_path / "out.txt"
    out.write_text(stdout)
    script = tmp_path / "podman"
    script.write_text(f"#!/bin/sh\ncat {out}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.parametrize("stdout", ["[" * 5000 + "]" * 5000, "{not json", '[{"x": NaN}]'])
def test_podman_json_that_is_unusable_is_a_temporary_error(tmp_path, stdout):
    cli = PodmanCLI(podman=_fake_podman(tmp_path, stdout))
    with pytest.raises(TemporaryError, match="unusable JSON"):
        cli.json(["ps", "--format", "json"], app_uuid=APP)


def test_podman_stats_rows_of_the_wrong_shape_are_skipped(tmp_path):
    rows = "\n".join(
        [
            '{"ContainerID": "c1", "CPUNano": -5, "MemUsage": 1}',
            '["not", "a", "row"]',
            '{"ContainerID": "c2", "CPUNano": "lots"}',
            '{"ContainerID": "c3", "CPUNano": 2000000000, "MemUsage": 4096}',
        ]
    )
    running = [
        Workload(APP[:-1] + str(i), WorkloadState.RUNNING, runtime_id=f"c{i}") for i in (1, 2, 3)
    ]
    got = podman_stats(_fake_podman(tmp_path, rows), [], running)
    assert [(m.uuid, m.cpu_seconds_total) for m in got] == [(APP[:-1] + "3", 2.0)]


@pytest.mark.parametrize(
    "out", ['{"virtual-size": "big"}', "[1]", '{"virtual-size": -1}', "{" * 100]
)
def test_qemu_img_info_of_the_wrong_shape_is_a_temporary_error(monkeypatch, out):
    monkeypatch.setattr(volumes, "_qemu_img", lambda *_a, **_kw: out)
    with pytest.raises(TemporaryError, match="qemu-img info"):
        volumes.image_info(Path("/x/root.qcow2"), "qcow2")


@pytest.mark.parametrize(
    "xml", ["<domain", "not xml at all", "<domain type='kvm'><name>x</name></domain>"]
)
def test_domain_xml_libvirt_should_never_give_is_a_value_error(xml):
    with pytest.raises(ValueError) as caught:
        Domain.from_xml(xml)
    assert "<domain" in xml or isinstance(caught.value, DomainXmlError)


def test_metadata_that_is_not_xml_is_a_value_error():
    with pytest.raises(ValueError, match="not XML"):
        OutpostMetadata.from_metadata_api("<app")
