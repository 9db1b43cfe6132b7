"""The lab's view of its controller: the operator API over HTTPS with the admin token.

The same interface an operator uses (``outpost`` CLI, web UI): claim serials, upload
images, define and assign apps, read node, app and trust states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from lab.errors import LabError
from lab.state import ControllerRecord

__all__ = ["Operator"]


class Operator:
    def __init__(self, controller: ControllerRecord, timeout_s: float = 60.0) -> None:
        self.url = controller.url
        self.ca = str(controller.root_ca)
        self.token_file = controller.token_file
        self.timeout_s = timeout_s
        self._token = ""

    @property
    def token(self) -> str:
        if not self._token:
            try:
                self._token = Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise LabError(f"cannot read the lab's admin token: {exc}") from exc
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return requests.request(
                method,
                f"{self.url}/api/v1{path}",
                headers={"Authorization": f"Bearer {self.token}"},
                verify=self.ca,  # per call: REQUESTS_CA_BUNDLE would override a session's
                timeout=self.timeout_s,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise LabError(f"cannot reach the lab controller at {self.url}: {exc}") from exc

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        resp = self.request(method, path, **kw)
        if resp.status_code not in ok:
            raise LabError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else {}

    def healthy(self) -> bool:
        try:
            requests.get(f"{self.url}/healthz", verify=self.ca, timeout=2)
        except requests.RequestException:
            return False
        return True

    # -- what the lab asks ------------------------------------------------------------------
    def claim(self, serial: str) -> None:
        resp = self.request("POST", "/nodes/claim", json={"serial": serial})
        if resp.status_code not in (200, 201, 409):  # 200: already claimed (a restarted up)
            raise LabError(f"claiming {serial} failed: {resp.status_code} {resp.text[:300]}")

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Every node by serial (state, uuid, assigned apps, reported app states)."""
        return {n["serial"]: n for n in self.call("GET", "/nodes")["nodes"]}

    def trust(self) -> dict[str, dict[str, Any]]:
        """Attestation state of every registered node by serial."""
        return {n["serial"]: n for n in self.call("GET", "/trust/nodes")["nodes"]}
