"""Integration tests of PodmanRuntime: real podman (private store), the built busybox image."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from images.manifest import ImageArtifact
from node_agent.runtime.base import PermanentError, WorkloadSpec, WorkloadState
from node_agent.runtime.container import PodmanRuntime
from tests.fixtures.podman_engine import PodmanEngine

pytestmark = pytest.mark.integration

HELLO = ("sh", "-c", "echo hello-outpost; sleep 3600")


def make_spec(
    runtime: PodmanRuntime, image: ImageArtifact, work: Path, **changes: Any
) -> WorkloadSpec:
    app_uuid = str(uuid.uuid4())
    spec = WorkloadSpec(
        app_uuid=app_uuid,
        name="hello",
        node_uuid=runtime.node_uuid,
        image_path=image.path,
        image_sha256=image.sha256,
        image_format=image.format,
        work_dir=work / app_uuid,
        command=HELLO,
        env=(("GREETING", "hi"),),
    )
    return dataclasses.replace(spec, **changes)


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def inspect(engine: PodmanEngine, container_id: str) -> dict[str, Any]:
    return json.loads(engine.run("container", "inspect", container_id).stdout)[0]


def test_start_runs_a_labelled_container_with_console_log(
    container_runtime: PodmanRuntime,
    podman_engine: PodmanEngine,
    busybox_image: ImageArtifact,
    tmp_path: Path,
) -> None:
    spec = make_spec(container_runtime, busybox_image, tmp_path)
    workload = container_runtime.start(spec)
    assert workload.state is WorkloadState.RUNNING
    assert workload.image_sha256 == busybox_image.sha256

    [entry] = podman_engine.ps(container_runtime.node_uuid)
    assert entry["State"] == "running"
    assert entry["Id"] == workload.runtime_id
    assert entry["Names"] == [f"outpost-{container_runtime.node_uuid[:8]}-{spec.app_uuid[:8]}"]
    labels = entry["Labels"]
    assert labels["outpost.node"] == container_runtime.node_uuid
    assert labels["outpost.app"] == spec.app_uuid
    assert labels["outpost.image-sha256"] == busybox_image.sha256
    assert labels["outpost.name"] == "hello"

    console = spec.work_dir / "console.log"
    wait_until(lambda: console.is_file() and "hello-outpost" in console.read_text(), "console")

    config = inspect(podman_engine, workload.runtime_id)
    assert config["OCIRuntime"] == "runc"
    assert config["HostConfig"]["NetworkMode"] == "none"
    assert config["HostConfig"]["Init"] is True
    assert config["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")
    assert not config["HostConfig"].get("PortBindings")
    assert "GREETING=hi" in config["Config"]["Env"]
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in config["HostConfig"]["Ulimits"]}
    assert ulimits["RLIMIT_NOFILE"] == (1024, 1024)
    assert ulimits["RLIMIT_NPROC"] == (1024, 1024)


def test_memory_and_cpu_limits_reach_the_container(
    container_runtime: PodmanRuntime,
    podman_engine: PodmanEngine,
    busybox_image: ImageArtifact,
    tmp_path: Path,
) -> None:
    info = json.loads(podman_engine.run("info", "--format", "json").stdout)
    if not {"memory", "cpu"} <= set(info["host"].get("cgroupControllers") or ()):
        pytest.skip("podman has no cgroup memory/cpu controllers here")
    spec = make_spec(container_runtime, busybox_image, tmp_path, memory_mib=48, vcpus=1)
    host = inspect(podman_engine, container_runtime.start(spec).runtime_id)["HostConfig"]
    assert host["Memory"] == 48 * 2**20
    assert host["NanoCpus"] == 10**9


def test_agent_restart_finds_the_container_again(
    container_runtime: PodmanRuntime,
    podman_engine: PodmanEngine,
    busybox_image: ImageArtifact,
    tmp_path: Path,
) -> None:
    spec = make_spec(container_runtime, busybox_image, tmp_path)
    first = container_runtime.start(spec)

    restarted = podman_engine.runtime(container_runtime.node_uuid)
    listed = restarted.list()
    assert list(listed) == [spec.app_uuid]
    assert listed[spec.app_uuid].runtime_id == first.runtime_id
    assert listed[spec.app_uuid].state is WorkloadState.RUNNING

    again = restarted.start(spec)
    assert again.runtime_id == first.runtime_id
    assert len(podman_engine.ps(container_runtime.node_uuid)) == 1
    assert podman_engine.runtime(str(uuid.uuid4())).list() == {}  # other nodes see nothing


def test_start_is_idempotent_and_restarts_a_stopped_container(
    container_runtime: PodmanRuntime,
    podman_engine: PodmanEngine,
    busybox_image: ImageArtifact,
    tmp_path: Path,
) -> None:
    spec = make_spec(container_runtime, busybox_image, tmp_path)
    first = container_runtime.start(spec)
    assert container_runtime.start(spec).runtime_id == first.runtime_id

    container_runtime.stop(spec.app_uuid, timeout_s=5)
    stopped = container_runtime.list()[spec.app_uuid]
    assert stopped.state is WorkloadState.STOPPED
    assert stopped.runtime_id == first.runtime_id
    container_runtime.stop(spec.app_uuid)  # already stopped: no error

    restarted = container_runtime.start(spec)
    assert restarted.state is WorkloadState.RUNNING
    assert restarted.runtime_id == first.runtime_id


def test_changed_image_or_env_recreates_the_container(
    container_runtime: PodmanRuntime,
    podman_engine: PodmanEngine,
    busybox_image: ImageArtifact,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = make_spec(container_runtime, busybox_image, tmp_path)
    first = container_runtime.start(spec)

    changed_env = container_runtime.start(dataclasses.replace(spec, env=(("GREETING", "yo"),)))
    assert changed_env.runtime_id != first.runtime_id

    # Same layers, different archive bytes (tar ignores trailing zero blocks): a new sha256.
    other = tmp_path / "busybox-other.tar"
    shutil.copyfile(busybox_image.path, other)
    with other.open("ab") as handle:
        handle.write(bytes(10240))
    other_sha = hashlib.sha256(other.read_bytes()).hexdigest()
    caplog.set_level(logging.INFO, logger="node_agent.runtime.container")
    recreated = container_runtime.start(
        dataclasses.replace(spec, image_path=other, image_sha256=other_sha)
    )
    assert recreated.runtime_id != changed_env.runtime_id
    assert recreated.image_sha256 == other_sha
    [entry] = podman_engine.ps(container_runtime.node_uuid)
    assert entry["Labels"]["outpost.image-sha256"] == other_sha
    assert "loaded busybox-other.tar" in caplog.text


def test_image_is_loaded_once_per_digest(
    podman_engine: PodmanEngine,
    busybox_image: ImageArtifact,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ref = f"localhost/outpost/img:{busybox_image.sha256}"
    first, second = (podman_engine.runtime(str(uuid.uuid4())) for _ in range(2))
    assert first.ensure_image(make_spec(first, busybox_image, tmp_path)) == ref
    image_id = json.loads(podman_engine.run("image", "inspect", ref).stdout)[0]["Id"]

    caplog.set_level(logging.INFO, logger="node_agent.runtime.container")
    assert second.ensure_image(make_spec(second, busybox_image, tmp_path)) == ref  # "agent restart"
    assert "loaded" not in caplog.text
    assert json.loads(podman_engine.run("image", "inspect", ref).stdout)[0]["Id"] == image_id


def test_remove_makes_it_disappear(
    container_runtime: PodmanRuntime,
    podman_engine: PodmanEngine,
    busybox_image: ImageArtifact,
    tmp_path: Path,
) -> None:
    spec = make_spec(container_runtime, busybox_image, tmp_path)
    container_runtime.start(spec)
    container_runtime.remove(spec.app_uuid)
    assert podman_engine.ps(container_runtime.node_uuid) == []
    assert container_runtime.list() == {}
    container_runtime.remove(spec.app_uuid)  # missing: no error
    container_runtime.stop(spec.app_uuid)


def test_non_oci_archive_format_is_permanent(
    container_runtime: PodmanRuntime,
    podman_engine: PodmanEngine,
    busybox_image: ImageArtifact,
    tmp_path: Path,
) -> None:
    spec = make_spec(container_runtime, busybox_image, tmp_path, image_format="qcow2")
    with pytest.raises(PermanentError, match=r"qcow2") as excinfo:
        container_runtime.start(spec)
    assert spec.app_uuid in str(excinfo.value)
    assert podman_engine.ps(container_runtime.node_uuid) == []


def test_unreadable_archive_is_permanent_with_podman_stderr(
    container_runtime: PodmanRuntime,
    podman_engine: PodmanEngine,
    busybox_image: ImageArtifact,
    tmp_path: Path,
) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not an image archive\n" * 100)
    spec = make_spec(
        container_runtime,
        busybox_image,
        tmp_path,
        image_path=junk,
        image_sha256=hashlib.sha256(junk.read_bytes()).hexdigest(),
    )
    with pytest.raises(PermanentError, match=r"podman load failed.*Error:") as excinfo:
        container_runtime.start(spec)
    assert spec.app_uuid in str(excinfo.value)
    assert podman_engine.ps(container_runtime.node_uuid) == []


def test_command_missing_in_image_shows_as_stopped(
    container_runtime: PodmanRuntime, busybox_image: ImageArtifact, tmp_path: Path
) -> None:
    spec = make_spec(container_runtime, busybox_image, tmp_path, command=("/no/such/program",))
    container_runtime.start(spec)
    wait_until(
        lambda: container_runtime.list()[spec.app_uuid].state is WorkloadState.STOPPED,
        "the container to exit",
    )
    workload = container_runtime.list()[spec.app_uuid]
    assert workload.detail.startswith("exited (code "), workload


def test_an_exec_health_probe_runs_inside_the_container(
    container_runtime: PodmanRuntime, busybox_image: ImageArtifact, tmp_path: Path
) -> None:
    from node_agent.health import run_probe
    from node_agent.runtime.base import TemporaryError
    from protocol.health import HealthProbe

    spec = make_spec(container_runtime, busybox_image, tmp_path)
    container_runtime.start(spec)
    probe = HealthProbe(kind="exec", command=["sh", "-c", "test $GREETING = hi"], interval_s=5,
                        timeout_s=5)  # fmt: skip
    ok = run_probe(probe, spec.app_uuid, None, container_runtime.exec)
    missing = probe.model_copy(update={"command": ["test", "-e", "/no/such/file"]})
    failed = run_probe(missing, spec.app_uuid, None, container_runtime.exec)
    assert ok.ok and not failed.ok and "exited 1" in failed.detail
    container_runtime.stop(spec.app_uuid)
    with pytest.raises(TemporaryError, match="no running container"):
        container_runtime.exec(spec.app_uuid, ["true"], 5)
