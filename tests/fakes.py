"""Small in-memory fakes for unit tests (the real runtimes have integration tests)."""

from __future__ import annotations

from node_agent.runtime.base import PermanentError, Workload, WorkloadSpec, WorkloadState


class FakeRuntime:
    kind = "container"

    def __init__(self) -> None:
        self.workloads: dict[str, Workload] = {}
        self.started: list[str] = []
        self.fail: set[str] = set()

    def list(self) -> dict[str, Workload]:
        return dict(self.workloads)

    def start(self, spec: WorkloadSpec) -> Workload:
        if spec.name in self.fail:
            raise PermanentError(f"cannot start {spec.name}")
        self.started.append(spec.name)
        w = Workload(spec.app_uuid, WorkloadState.RUNNING, image_sha256=spec.image_sha256)
        self.workloads[spec.app_uuid] = w
        return w

    def stop(self, app_uuid: str, timeout_s: float = 10.0) -> None:
        w = self.workloads[app_uuid]
        self.workloads[app_uuid] = Workload(
            w.app_uuid, WorkloadState.STOPPED, image_sha256=w.image_sha256
        )

    def remove(self, app_uuid: str) -> None:
        self.workloads.pop(app_uuid, None)
