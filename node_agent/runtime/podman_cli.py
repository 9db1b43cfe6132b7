"""A thin, typed wrapper around the ``podman`` command line.

Every call is an argument list (never a shell) with a timeout; failures become
:class:`TemporaryError` or :class:`PermanentError` carrying the app uuid and
podman's trimmed stderr.  The container runtime (``container.py``) builds on it.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from node_agent.runtime.base import PermanentError, RuntimeError_, TemporaryError
from protocol.bounded_json import JsonRefused, load_json

MAX_OUTPUT_BYTES = 64 * 1024 * 1024
"""Largest JSON podman may print for one call (``ps``/``inspect`` of every container)."""

__all__ = ["PodmanCLI", "classify_failure", "failure", "is_no_such_container", "trim_stderr"]

log = logging.getLogger(__name__)

# podman's own exit codes for `run`/`start`/`exec`: 125 = podman failed,
# 126 = the container command cannot be invoked, 127 = it was not found.
_EXIT_CANNOT_INVOKE = 126
_EXIT_NOT_FOUND = 127

_TRANSIENT_MARKERS = (
    "locked",
    "timeout",
    "timed out",
    "temporarily unavailable",
    "resource busy",
    "no space left",
    "try again",
    "already in use",
    "is being removed",
    "stopping state",
)
_PERMANENT_MARKERS = (
    "invalid",
    "unsupported",
    "not supported",
    "payload does not match",
    "no such image",
    "image not known",
    "executable file not found",
    "permission denied",
)


def trim_stderr(stderr: str, limit: int = 500) -> str:
    """The useful part of podman's stderr: from its first ``Error:`` line on, else the tail."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    first = next((i for i, ln in enumerate(lines) if ln.startswith("Error:")), None)
    text = " ".join(lines[first:] if first is not None else lines[-3:])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_no_such_container(stderr: str) -> bool:
    low = stderr.lower()
    return "no such container" in low or "no container with name or id" in low


def classify_failure(
    returncode: int, stderr: str, *, permanent_by_default: bool = False
) -> type[RuntimeError_]:
    """Decide whether retrying the same podman call could help."""
    low = stderr.lower()
    if returncode in (_EXIT_CANNOT_INVOKE, _EXIT_NOT_FOUND):
        return PermanentError
    if any(m in low for m in _TRANSIENT_MARKERS):
        return TemporaryError
    if any(m in low for m in _PERMANENT_MARKERS):
        return PermanentError
    return PermanentError if permanent_by_default else TemporaryError


class PodmanCLI:
    """Runs ``podman <global_args> <args>`` with a timeout and error mapping."""

    def __init__(
        self,
        podman: str = "podman",
        global_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.podman = podman
        self.global_args = tuple(global_args)
        self.env = dict(env or {})
        self.timeout_s = timeout_s

    def argv(self, args: Sequence[str]) -> list[str]:
        return [self.podman, *self.global_args, *args]

    def run(
        self,
        args: Sequence[str],
        *,
        app_uuid: str = "",
        timeout_s: float | None = None,
        check: bool = True,
        permanent_by_default: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run podman; with ``check`` a non-zero exit raises a mapped error."""
        argv = self.argv(args)
        what = _what(args, app_uuid)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        log.debug("%s: %s", what, argv)
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                env={**os.environ, **self.env} if self.env else None,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TemporaryError(f"{what} timed out after {timeout:g} s") from exc
        except FileNotFoundError as exc:
            raise PermanentError(f"{what}: podman binary {self.podman!r} not found") from exc
        except (OSError, ValueError) as exc:  # e.g. a NUL byte in an argument
            raise PermanentError(f"{what}: cannot run podman: {exc}") from exc
        if check and proc.returncode != 0:
            raise failure(args, proc, app_uuid, permanent_by_default=permanent_by_default)
        return proc

    def json(self, args: Sequence[str], *, app_uuid: str = "", **kw: Any) -> Any:
        """Run podman and parse its stdout as JSON (empty output → ``[]``)."""
        proc = self.run(args, app_uuid=app_uuid, **kw)
        out = proc.stdout.strip()
        if not out:
            return []
        try:
            return load_json(out, max_bytes=MAX_OUTPUT_BYTES)
        except JsonRefused as exc:
            raise TemporaryError(
                f"{_what(args, app_uuid)} printed unusable JSON ({exc}): {out[:200]!r}"
            ) from exc


def _what(args: Sequence[str], app_uuid: str) -> str:
    sub = " ".join(args[:2]) if args[0] in ("image", "container") else args[0]
    return f"app {app_uuid}: podman {sub}" if app_uuid else f"podman {sub}"


def failure(
    args: Sequence[str],
    proc: subprocess.CompletedProcess[str],
    app_uuid: str = "",
    *,
    permanent_by_default: bool = False,
) -> RuntimeError_:
    """The mapped (not yet raised) error for a failed ``podman <args>`` call."""
    cls = classify_failure(proc.returncode, proc.stderr, permanent_by_default=permanent_by_default)
    msg = f"{_what(args, app_uuid)} failed (exit {proc.returncode}): {trim_stderr(proc.stderr)}"
    log.warning("%s", msg)
    return cls(msg)
