"""The operator's side of a simulation, through the operator API with a bearer token:
claim serials (or import them in bulk), set the trust policy, send a change (a reboot
command) to a node, and read back what the controller holds for the fleet."""

from __future__ import annotations

from typing import Any

from benchmarks.simulator.transport import Transport

__all__ = ["Operator"]


class Operator:
    """Operator API calls, recorded in the stats as ``op-<action>``."""

    def __init__(self, transport: Transport, token: str) -> None:
        self.t = transport
        self.auth = {"Authorization": f"Bearer {token}"}

    async def call(self, kind: str, method: str, path: str, body: Any = None) -> Any:
        return (await self.t.request(kind, method, f"/api/v1{path}", body, headers=self.auth))[1]

    async def claim(self, serial: str, device_cert_sha256: str) -> None:
        """A claim pinned to the node's device certificate (as an operator pastes it)."""
        body = {"serial": serial, "device_cert_sha256": device_cert_sha256}
        await self.call("op-claim", "POST", "/nodes/claim", body)

    async def import_manifest(self, csv: bytes) -> dict[str, str]:
        """Bulk enrolment (``outpost import-nodes``); returns serial → node uuid."""
        _, answer = await self.t.request(
            "op-import",
            "POST",
            "/api/v1/nodes/import",
            headers=self.auth,
            timeout_s=600.0,
            raw=(csv, "text/csv"),
        )
        return {n["serial"]: n["uuid"] for n in answer["nodes"]}

    async def allow_tpm_less(self) -> dict[str, Any]:
        """What ``outpost trust-policy --tpm-less allow`` does: simulated nodes have no TPM."""
        return await self.call("op-policy", "PATCH", "/trust/policy", {"tpm_less": "allow"})

    async def reboot(self, serial: str) -> int:
        """A change that reaches one node: its reboot counter; returns the new counter."""
        answer = await self.call(
            "op-change", "POST", f"/nodes/{serial}/commands", {"command": "reboot"}
        )
        return int(answer["counter"])

    async def nodes(self) -> list[dict[str, Any]]:
        return (await self.call("op-list", "GET", "/nodes"))["nodes"]
