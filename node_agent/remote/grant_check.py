"""The agent's check of a session's grant, before it opens anything.

A grant is an envelope signed by the controller's config-signing key (the same signers,
chained to the pinned root, that the agent accepts configs from).  Refused: an unknown or
bad signature; a grant for another node (a grant for node A used against node B); one that
expired or is not yet valid; a kind or port other than the offer's; an app that is not in
the node's desired state (or of the wrong kind); a node shell while the node's settings
allow no debug access (``debug_ssh`` / ``debug_console``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from cryptography import x509
from pydantic import ValidationError

from attestation import envelope, pki
from protocol.desired_state import AppSpec, DesiredState
from protocol.remote import GrantClaims, SessionOffer

__all__ = ["CLOCK_SKEW_S", "GrantRefused", "check_grant"]

CLOCK_SKEW_S = 300.0
"""A grant issued this far in the future (clock skew) is still taken."""
_APP_KIND = {"console": "vm", "exec": "container"}


class GrantRefused(Exception):
    """The offer's grant does not allow the session; the reason is sent back."""


def _claims(offer: SessionOffer, signers: Iterable[x509.Certificate]) -> GrantClaims:
    known = {pki.cert_sha256(cert): cert for cert in signers}
    try:
        opened = envelope.open_envelope(offer.grant, known.get, max_skew_s=None)
    except envelope.EnvelopeError as exc:
        raise GrantRefused(f"the grant is not signed by this node's controller: {exc}") from exc
    try:
        return GrantClaims.model_validate(opened.body)
    except ValidationError as exc:
        raise GrantRefused(f"the grant is malformed: {exc.errors()[0]['msg']}") from exc


def check_grant(
    offer: SessionOffer,
    signers: Iterable[x509.Certificate],
    node_uuid: str,
    desired: DesiredState | None,
    now: float | None = None,
) -> tuple[GrantClaims, AppSpec | None]:
    """The grant's claims and the app it reaches, or GrantRefused."""
    claims = _claims(offer, signers)
    now = time.time() if now is None else now
    if claims.node_uuid != node_uuid:
        raise GrantRefused(f"the grant is for node {claims.node_uuid}, not this node ({node_uuid})")
    if claims.expires_at <= now:
        raise GrantRefused("the grant has expired")
    if claims.issued_at > now + CLOCK_SKEW_S:
        raise GrantRefused("the grant is not valid yet (check the node's clock)")
    if claims.kind != offer.kind:
        raise GrantRefused(f"the grant is for {claims.kind}, the session is {offer.kind}")
    if claims.kind == "forward" and offer.port != claims.forward_port:
        raise GrantRefused(f"the grant reaches port {claims.forward_port} only")
    if offer.command and claims.kind != "exec":
        raise GrantRefused("only exec sessions run a command")
    if claims.kind == "shell":
        settings = desired.settings if desired is not None else None
        if settings is None or not (settings.debug_ssh or settings.debug_console):
            raise GrantRefused("this node's settings allow no debug access (debug_ssh/console)")
        return claims, None
    app = next((a for a in (desired.apps if desired else []) if a.uuid == claims.app_uuid), None)
    if app is None:
        raise GrantRefused(f"app {claims.app_name or claims.app_uuid} does not run on this node")
    wanted = _APP_KIND.get(claims.kind)
    if wanted is not None and app.kind != wanted:
        raise GrantRefused(f"{claims.kind} needs a {wanted} app; {app.name} is a {app.kind}")
    return claims, app
