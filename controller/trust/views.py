"""The JSON shapes of trust: a node's attestation state and the fleet policy."""

from __future__ import annotations

from typing import Any

from controller.store.models import Node, NodeTrust

__all__ = ["policy_json", "trust_json"]


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value else None


def trust_json(node: Node, trust: NodeTrust | None, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "serial": node.serial,
        "uuid": node.uuid,
        "state": "revoked"
        if trust and trust.revoked_at
        else (trust.state if trust else "unattested"),
        "result": trust.result if trust else "",
        "reason": (trust.revoked_reason if trust.revoked_at else trust.reason) if trust else "",
        "tpm": trust.tpm if trust else "",
        "device_key_in_tpm": bool(trust and trust.device_key_in_tpm),
        "ak_name": trust.ak_name if trust else None,
        "ak_activated": bool(trust and trust.ak_activated),
        "ek_sha256": trust.ek_sha256 if trust else None,
        "last_attempt_at": _iso(trust.last_attempt_at) if trust else None,
        "attested_at": _iso(trust.attested_at) if trust else None,
        "revoked_at": _iso(trust.revoked_at) if trust else None,
    }
    if full:
        out["baseline"] = trust.baseline if trust else {}
        out["evidence"] = trust.evidence if trust else {}
    return out


def policy_json(policy: Any) -> dict[str, Any]:
    return {
        "tpm_less": policy.tpm_less,
        "agent_allowlist": list(policy.agent_allowlist or []),
        "token_ttl_s": policy.token_ttl_s,
        "nonce_ttl_s": policy.nonce_ttl_s,
    }
