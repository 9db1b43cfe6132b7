"""The agent's HTTPS client for the device API: pinned root, signed envelopes.

``signed(..., token=…)`` adds the integrity token header that ``config`` requires.

Answers are read like any untrusted input: bounded strict JSON
(:func:`protocol.bounded_json.load_json`), a JSON object, and for ``register``,
``config`` and ``certs`` the shape the protocol gives them.  Anything else is
:class:`MalformedAnswer` (a :class:`ControllerError`, so every caller's handling of a
refused call applies) naming the call and what was wrong — never a crash.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urljoin

from pydantic import BaseModel, Field, StringConstraints, ValidationError

from attestation import envelope
from attestation.pki import Identity
from node_agent.https import HttpsClient, Stream, TransportError
from protocol.attest import TOKEN_HEADER
from protocol.bounded_json import JsonRefused, load_json
from protocol.messages import ConfigResponse, RegisterResponse

__all__ = [
    "MAX_ANSWER_BYTES",
    "ControllerClient",
    "ControllerError",
    "MalformedAnswer",
    "Unreachable",
]

MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""Largest answer read (a config with 64 apps is far below)."""
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)

log = logging.getLogger(__name__)


class ControllerError(Exception):
    """The controller answered with an error status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Unreachable(Exception):
    """No answer from the controller (network, TLS, timeout)."""


class MalformedAnswer(ControllerError):
    """The controller answered, but not with what the call returns (not JSON, too deep,
    a non-finite number, not an object, a field of the wrong type …)."""


class CertsAnswer(BaseModel):
    """``GET certs``: the signing chain and the root (PEM)."""

    signing: list[Annotated[str, StringConstraints(max_length=16384)]] = Field(max_length=16)
    root: Annotated[str, StringConstraints(max_length=16384)]


_ANSWERS: dict[str, type[BaseModel]] = {"config": ConfigResponse, "register": RegisterResponse}


@dataclass
class ControllerClient:
    url: str
    root_ca: Path
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self._http = HttpsClient(self.timeout_s)

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        try:
            resp = self._http.request(
                method,
                f"{self.url}/api/v1/device/{path}",
                json_body=body,
                headers=headers,
                ca_file=str(self.root_ca),
                timeout_s=timeout_s or self.timeout_s,
                max_bytes=MAX_ANSWER_BYTES,
            )
        except TransportError as exc:
            raise Unreachable(str(exc)) from exc
        what = f"{method} {path}"
        if resp.truncated:
            raise MalformedAnswer(
                resp.status_code, "malformed_answer", f"{what}: over {MAX_ANSWER_BYTES} bytes"
            )
        try:
            data: Any = load_json(resp.content, max_bytes=MAX_ANSWER_BYTES)
        except JsonRefused as exc:
            if resp.status_code >= 400:
                raise ControllerError(resp.status_code, "error", resp.text[:200]) from exc
            raise MalformedAnswer(resp.status_code, "malformed_answer", f"{what}: {exc}") from exc
        if resp.status_code >= 400:
            err = data.get("error") if isinstance(data, dict) else None
            err = err if isinstance(err, dict) else {}
            raise ControllerError(
                resp.status_code,
                str(err.get("code", "error"))[:64],
                str(err.get("message", resp.text[:200]))[:2000],
            )
        if not isinstance(data, dict):
            raise MalformedAnswer(
                resp.status_code,
                "malformed_answer",
                f"{what}: a {type(data).__name__}, not an object",
            )
        return resp.status_code, _checked(what, path, resp.status_code, data)

    def certs(self) -> dict[str, Any]:
        return self._call("GET", "certs")[1]

    def register(self, onboarding: Identity, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._call("POST", "register", envelope.seal(body, onboarding))

    def signed(
        self,
        device: Identity,
        path: str,
        body: dict[str, Any],
        token: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        headers = {TOKEN_HEADER: token} if token else None
        return self._call("POST", path, envelope.seal(body, device), headers, timeout_s)[1]

    def download(self, url: str, dest: Path, offset: int) -> Stream:
        """Start a (possibly resumed) download; the caller streams the answer (and closes
        it).  Redirects are followed (at most 5); the controller's own URLs are checked
        against the pinned root, others against the system's CAs."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        for _hop in range(MAX_REDIRECTS + 1):
            ca_file = str(self.root_ca) if url.startswith(self.url) else None
            try:
                resp = self._http.stream(
                    "GET", url, headers=headers, ca_file=ca_file, timeout_s=self.timeout_s
                )
            except TransportError as exc:
                raise Unreachable(str(exc)) from exc
            location = resp.headers.get("location")
            if resp.status_code in REDIRECTS and location:
                resp.close()
                url = urljoin(url, location)
                continue
            if resp.status_code not in (200, 206):
                resp.close()
                raise ControllerError(resp.status_code, "download_failed", f"GET {url}")
            return resp
        raise ControllerError(
            310, "download_failed", f"GET {url}: more than {MAX_REDIRECTS} redirects"
        )


def _checked(what: str, path: str, status: int, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` checked against the call's answer model (when it has one)."""
    model = CertsAnswer if path == "certs" else _ANSWERS.get(path)
    if model is None:
        return data
    try:
        model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(answer)"
        raise MalformedAnswer(
            status, "malformed_answer", f"{what}: {where}: {first['msg']}"
        ) from exc
    return data


def load_bundle(bundle_dir: Path) -> dict[str, Any]:
    """controller.json from an onboarding bundle, with a clear error if it is missing."""
    path = bundle_dir / "controller.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"onboarding bundle {bundle_dir} is unusable: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise ValueError(f"{path}: needs a 'url'")
    return data
