"""Small in-memory fakes for unit tests (the real runtimes have integration tests).

:class:`FakeRuntime` keeps the :class:`~node_agent.runtime.base.Runtime` contract (see
``tests/unit/test_runtime_contract.py``): workloads keyed by app, a start that is
idempotent for the same spec and recreates for another, stop and remove that do not fail
for a missing app.  :meth:`FakeRuntime.crash` makes a workload stop on its own.
:class:`FakeClock` is a :class:`~node_agent.clock.Clock` that moves only when told.
"""

from __future__ import annotations

import dataclasses

from node_agent.runtime.base import (
    PermanentError,
    Workload,
    WorkloadSpec,
    WorkloadState,
    same_spec,
)


class FakeClock:
    """Monotonic and wall time that only :meth:`advance` moves."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
        found = self.workloads.get(spec.app_uuid)
        if (
            found is not None
            and found.state is WorkloadState.RUNNING
            and same_spec(found.spec_digest, spec.digest)
        ):
            return found
        self.started.append(spec.name)
        w = Workload(
            spec.app_uuid,
            WorkloadState.RUNNING,
            runtime_id=f"fake-{spec.app_uuid[:8]}",
            image_sha256=spec.image_sha256,
            spec_digest=spec.digest,
        )
        self.workloads[spec.app_uuid] = w
        return w

    def stop(self, app_uuid: str, timeout_s: float = 10.0) -> None:
        w = self.workloads.get(app_uuid)
        if w is not None:
            self.workloads[app_uuid] = dataclasses.replace(
                w, state=WorkloadState.STOPPED, detail="stopped"
            )

    def crash(self, app_uuid: str, exit_code: int = 3) -> None:
        """The workload stops on its own, as a process exiting with ``exit_code``."""
        w = self.workloads[app_uuid]
        self.workloads[app_uuid] = dataclasses.replace(
            w, state=WorkloadState.STOPPED, detail=f"exited (code {exit_code})", exit_code=exit_code
        )

    def remove(self, app_uuid: str) -> None:
        self.workloads.pop(app_uuid, None)
