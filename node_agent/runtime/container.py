"""The container runtime: runs app instances as podman containers.

:class:`PodmanRuntime` implements :class:`node_agent.runtime.base.Runtime` by
driving the podman CLI (``podman_cli.py``) with argv built by the pure functions
in ``podman_args.py``.  Images arrive as verified ``oci-archive`` files; each is
loaded once and tagged ``localhost/outpost/img:<sha256>`` so later starts find
it by digest.  Containers are owned through labels (``outpost.node``,
``outpost.app``, ...), so an agent restart, or a second agent on the same host,
sees exactly its own containers.  stdout/stderr go to ``<work_dir>/console.log``
in the CRI (k8s-file) format: ``<timestamp> stdout F <line>``.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from node_agent.metadata.content import write_config_dir
from node_agent.runtime.base import (
    PermanentError,
    TemporaryError,
    Workload,
    WorkloadSpec,
    same_spec,
)
from node_agent.runtime.base import WorkloadState as State
from node_agent.runtime.podman_args import (
    CONFIG_DIR,
    DEFAULT_ULIMITS,
    IMAGE_FORMAT,
    LABEL_APP,
    LABEL_IMAGE,
    LABEL_NAME,
    LABEL_NODE,
    LABEL_SPEC,
    RunOptions,
    image_ref,
    normalize_sha256,
    run_argv,
)
from node_agent.runtime.podman_cli import PodmanCLI, failure, is_no_such_container

__all__ = ["PodmanRuntime"]

log = logging.getLogger(__name__)


class PodmanRuntime:
    """Containers of one node, driven through the podman CLI.

    ``global_args`` go before every subcommand (e.g. a private store:
    ``--root R --runroot RR --storage-driver overlay``); ``env`` is added to
    podman's environment (e.g. ``CONTAINERS_CONF``).  With ``resource_limits``
    the first start asks ``podman info`` for the cgroup controllers and drops
    ``--memory``/``--cpus`` (with a warning) if they are not available.
    """

    kind = "container"

    def __init__(
        self,
        node_uuid: str,
        podman: str = "podman",
        global_args: Sequence[str] = (),
        runtime: str = "runc",
        ulimits: Sequence[str] = DEFAULT_ULIMITS,
        *,
        env: Mapping[str, str] | None = None,
        init: bool = True,
        resource_limits: bool = True,
        console_log: bool = True,
        timeout_s: float = 60.0,
        load_timeout_s: float = 300.0,
    ) -> None:
        self.node_uuid = node_uuid
        self.cli = PodmanCLI(podman, global_args, env=env, timeout_s=timeout_s)
        self.load_timeout_s = load_timeout_s
        self._options = RunOptions(
            runtime=runtime,
            ulimits=tuple(ulimits),
            init=init,
            memory_limit=resource_limits,
            cpu_limit=resource_limits,
            console_log=console_log,
        )
        self._probed = not resource_limits
        self._lock = threading.Lock()

    # -- Runtime protocol -------------------------------------------------------------

    def list(self) -> dict[str, Workload]:
        """This node's containers keyed by app uuid (a running one wins duplicates)."""
        result: dict[str, Workload] = {}
        for workload in self._ps():
            if not workload.app_uuid:
                log.warning("container %s has no %s label; ignored", workload.runtime_id, LABEL_APP)
                continue
            seen = result.get(workload.app_uuid)
            if seen is not None:
                log.warning("app %s: duplicate containers %s", workload.app_uuid, seen.runtime_id)
                if seen.state is State.RUNNING:
                    continue
            result[workload.app_uuid] = workload
        return result

    def start(self, spec: WorkloadSpec) -> Workload:
        """Create (if needed) and start the container for ``spec``; idempotent.

        Same image and configuration: no-op if running, ``podman start`` if
        stopped.  Changed image or configuration: remove and recreate.
        """
        app = spec.app_uuid
        if spec.image_format != IMAGE_FORMAT:
            raise PermanentError(
                f"app {app}: image format {spec.image_format!r} is not supported by the "
                f"container runtime (need {IMAGE_FORMAT!r})"
            )
        if spec.node_uuid != self.node_uuid:
            log.warning("app %s: spec names node %s, using %s", app, spec.node_uuid, self.node_uuid)
        argv = run_argv(spec, self.node_uuid, self._run_options())
        if spec.networks and not Path(spec.netns_path).exists():
            raise TemporaryError(f"app {app}: network namespace {spec.netns_path} is not ready")
        existing = self._find(app)
        if existing is not None:
            if same_spec(existing.spec_digest, spec.digest):
                return self._resume(existing)
            log.info("app %s: image or configuration changed, recreating", app)
        self.ensure_image(spec)  # before removing the old container: a bad image keeps it
        if existing is not None:
            self.remove(app)
        Path(spec.work_dir).mkdir(parents=True, exist_ok=True)
        write_config_dir(spec.work_dir / CONFIG_DIR, spec.meta_data, spec.user_data)
        proc = self.cli.run(argv, app_uuid=app, check=False)
        if proc.returncode != 0:
            error = failure(argv, proc, app)
            self._discard(app)  # `run` may leave a container in state "created"
            raise error
        container_id = proc.stdout.strip()
        log.info("app %s: started container %s", app, container_id[:12])
        sha = normalize_sha256(spec.image_sha256)
        return self._find(app) or Workload(app, State.RUNNING, container_id, sha)

    def stop(self, app_uuid: str, timeout_s: float = 10.0) -> None:
        """``podman stop -t N``: SIGTERM to the init, SIGKILL after N s; no error if missing."""
        secs = max(0, math.ceil(timeout_s))
        args = ["stop", "--ignore", "--time", str(secs), *self._app_filter(app_uuid)]
        self.cli.run(args, app_uuid=app_uuid, timeout_s=self.cli.timeout_s + secs)
        log.info("app %s: stopped", app_uuid)

    def exec(self, app_uuid: str, argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
        """Run ``argv`` inside the app's running container (``podman exec``): exit code and
        the output's tail. Health probes use it; TemporaryError when it is not running or
        the command outlives ``timeout_s``."""
        found = self._find(app_uuid)
        if found is None or found.state is not State.RUNNING:
            raise TemporaryError(f"app {app_uuid}: no running container to exec in")
        args = ["exec", found.runtime_id, *argv]
        proc = self.cli.run(args, app_uuid=app_uuid, timeout_s=timeout_s, check=False)
        return proc.returncode, (proc.stdout + proc.stderr)[-1000:]

    def remove(self, app_uuid: str) -> None:
        """``podman rm -f`` every container of this app; no error if missing."""
        args = ["rm", "--force", "--volumes", "--time", "10", *self._app_filter(app_uuid)]
        proc = self.cli.run(args, app_uuid=app_uuid, timeout_s=self.cli.timeout_s + 10, check=False)
        if proc.returncode != 0 and not is_no_such_container(proc.stderr):
            raise failure(args, proc, app_uuid)
        log.info("app %s: removed", app_uuid)

    # -- images -----------------------------------------------------------------------

    def ensure_image(self, spec: WorkloadSpec) -> str:
        """Load ``spec.image_path`` unless its digest tag exists; return that tag."""
        app = spec.app_uuid
        ref = image_ref(normalize_sha256(spec.image_sha256, app))
        with self._lock:
            if self._image_exists(ref, app):
                return ref
            path = Path(spec.image_path)
            if not path.is_file():
                raise PermanentError(f"app {app}: image file {path} does not exist")
            out = self.cli.run(
                ["load", "--input", str(path)],
                app_uuid=app,
                timeout_s=self.load_timeout_s,
                permanent_by_default=True,  # a verified archive podman cannot read stays bad
            )
            loaded = _loaded_names(out.stdout)
            if len(loaded) != 1:
                raise PermanentError(f"app {app}: {path} must hold one image, loaded {loaded}")
            self.cli.run(["tag", loaded[0], ref], app_uuid=app)
            log.info("app %s: loaded %s as %s", app, path.name, ref)
            return ref

    def _image_exists(self, ref: str, app: str) -> bool:
        args = ["image", "exists", ref]
        proc = self.cli.run(args, app_uuid=app, check=False)
        if proc.returncode not in (0, 1):
            raise failure(args, proc, app)
        return proc.returncode == 0

    # -- helpers ----------------------------------------------------------------------

    def _app_filter(self, app_uuid: str) -> builtins.list[str]:
        node, app = f"label={LABEL_NODE}={self.node_uuid}", f"label={LABEL_APP}={app_uuid}"
        return ["--filter", node, "--filter", app]

    def _ps(self, app_uuid: str = "") -> builtins.list[Workload]:
        args = ["ps", "--all", "--no-trunc", "--format", "json"]
        if app_uuid:
            args += self._app_filter(app_uuid)
        else:
            args += ["--filter", f"label={LABEL_NODE}={self.node_uuid}"]
        data = self.cli.json(args, app_uuid=app_uuid)
        return [_workload(entry) for entry in data if isinstance(entry, dict)]

    def _find(self, app_uuid: str) -> Workload | None:
        found = sorted(self._ps(app_uuid), key=lambda w: w.state is State.RUNNING)
        return found[-1] if found else None

    def _resume(self, existing: Workload) -> Workload:
        app, status = existing.app_uuid, existing.extra.get("podman_state", "")
        if existing.state is State.RUNNING:
            return existing
        if status in ("stopping", "removing"):
            raise TemporaryError(f"app {app}: container is {status}; retry later")
        args = ["unpause" if status == "paused" else "start", existing.runtime_id]
        proc = self.cli.run(args, app_uuid=app, check=False)
        if proc.returncode != 0:
            raise failure(args, proc, app)
        log.info("app %s: %s of existing container %s", app, args[0], existing.runtime_id[:12])
        return self._find(app) or existing

    def _discard(self, app_uuid: str) -> None:
        try:
            self.remove(app_uuid)
        except (TemporaryError, PermanentError) as exc:
            log.warning("app %s: cleanup after a failed run: %s", app_uuid, exc)

    def _run_options(self) -> RunOptions:
        """Drop --memory/--cpus (once, with a warning) without their cgroup controllers."""
        if self._probed:
            return self._options
        info = self.cli.json(["info", "--format", "json"])
        host = info.get("host", {}) if isinstance(info, dict) else {}
        controllers = set(host.get("cgroupControllers") or ())
        memory, cpu = "memory" in controllers, "cpu" in controllers
        for ok, flag in ((memory, "--memory"), (cpu, "--cpus")):
            if not ok:
                log.warning(
                    "podman reports cgroup %s controllers %s: containers run without %s",
                    host.get("cgroupVersion", "?"),
                    sorted(controllers),
                    flag,
                )
        self._options = dataclasses.replace(self._options, memory_limit=memory, cpu_limit=cpu)
        self._probed = True
        return self._options


def _loaded_names(stdout: str) -> list[str]:
    """Names from ``podman load`` output ("Loaded image: X" or "Loaded image(s): X,Y")."""
    names: list[str] = []
    for line in stdout.splitlines():
        head, sep, rest = line.partition(":")
        if sep and head.strip().startswith("Loaded image"):
            names += [n.strip() for n in rest.split(",") if n.strip()]
    return names


def _workload(entry: Mapping[str, Any]) -> Workload:
    """A Workload from one ``podman ps --format json`` entry."""
    labels = entry.get("Labels") or {}
    status = str(entry.get("State", ""))
    names = entry.get("Names") or [""]
    # "stopped": the process has exited and podman has not cleaned up yet ("exited" after)
    ended = status in ("exited", "stopped")
    exit_code = _exit_code(entry) if ended else None
    detail = f"exited (code {exit_code if exit_code is not None else '?'})" if ended else status
    return Workload(
        app_uuid=labels.get(LABEL_APP, ""),
        state=_STATES.get(status, State.STOPPED),
        runtime_id=str(entry.get("Id", "")),
        image_sha256=labels.get(LABEL_IMAGE, ""),
        detail=detail,
        extra={
            "container_name": str(names[0]),
            "podman_state": status,
            "name": labels.get(LABEL_NAME, ""),
        },
        spec_digest=labels.get(LABEL_SPEC, ""),
        exit_code=exit_code,
    )


_STATES = {"running": State.RUNNING, "initialized": State.STARTING}
"""podman states other than these (created, exited, stopped, paused, …) are STOPPED:
``start`` takes them up again."""


def _exit_code(entry: Mapping[str, Any]) -> int | None:
    code = entry.get("ExitCode")
    return code if isinstance(code, int) and not isinstance(code, bool) else None
