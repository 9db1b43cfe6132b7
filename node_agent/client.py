"""The agent's HTTPS client for the device API: pinned root, signed envelopes.

``signed(..., token=…)`` adds the integrity token header that ``config`` requires.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from attestation import envelope
from attestation.pki import Identity
from protocol.attest import TOKEN_HEADER

__all__ = ["ControllerClient", "ControllerError", "Unreachable"]

log = logging.getLogger(__name__)


class ControllerError(Exception):
    """The controller answered with an error status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Unreachable(Exception):
    """No answer from the controller (network, TLS, timeout)."""


@dataclass
class ControllerClient:
    url: str
    root_ca: Path
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self._session = requests.Session()

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        try:
            # verify= on each call: a Session's own verify loses to REQUESTS_CA_BUNDLE
            resp = self._session.request(
                method,
                f"{self.url}/api/v1/device/{path}",
                json=body,
                headers=headers,
                timeout=timeout_s or self.timeout_s,
                verify=str(self.root_ca),
            )
        except requests.RequestException as exc:
            raise Unreachable(f"{self.url}: {exc}") from exc
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if resp.status_code >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            raise ControllerError(
                resp.status_code, err.get("code", "error"), err.get("message", resp.text[:200])
            )
        if not isinstance(data, dict):
            raise ControllerError(
                resp.status_code, "bad_response", f"not a JSON object: {resp.text[:200]!r}"
            )
        return resp.status_code, data

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

    def download(self, url: str, dest: Path, offset: int) -> requests.Response:
        """Start a (possibly resumed) download; the caller streams the response."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        verify: str | bool = str(self.root_ca) if url.startswith(self.url) else True
        try:
            resp = requests.get(
                url, headers=headers, stream=True, timeout=self.timeout_s, verify=verify
            )
        except requests.RequestException as exc:
            raise Unreachable(f"{url}: {exc}") from exc
        if resp.status_code not in (200, 206):
            resp.close()
            raise ControllerError(resp.status_code, "download_failed", f"GET {url}")
        return resp


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
