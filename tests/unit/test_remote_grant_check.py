"""The agent's check of a session's signed grant, with real signatures (one signer the node
trusts, one it does not)."""

from __future__ import annotations

import time
import uuid

import pytest

from attestation import envelope, pki
from node_agent.remote.grant_check import GrantRefused, check_grant
from protocol.desired_state import DesiredState
from protocol.remote import GrantClaims, SessionOffer
from tests.fixtures.netns import app_doc, desired_doc

NODE_A, NODE_B = str(uuid.uuid4()), str(uuid.uuid4())
SIGNER = pki.make_ca("controller config signing")
STRANGER = pki.make_ca("someone else")
WEB = app_doc("web")
VM = app_doc("vm1", kind="vm")


def _desired(node: str, **settings: object) -> DesiredState:
    return DesiredState.model_validate(desired_doc(node, 1, apps=[WEB, VM], **settings))


def _offer(
    signer: pki.Identity = SIGNER,
    kind: str = "exec",
    app: dict | None = WEB,  # type: ignore[type-arg]
    node: str = NODE_A,
    expires_in: float = 600,
    **offer: object,
) -> SessionOffer:
    now = time.time()
    claims = GrantClaims(
        grant_id=str(uuid.uuid4()),
        node_uuid=node,
        kind=kind,  # type: ignore[arg-type]
        app_uuid=str(app["uuid"]) if app else None,
        app_name=str(app["name"]) if app else "",
        grantee="user:ops",
        issued_at=now - 1,
        expires_at=now + expires_in,
        forward_port=offer.pop("forward_port", None),  # type: ignore[arg-type]
    )
    wire = envelope.seal(claims.model_dump(mode="json"), signer)
    return SessionOffer(session_id=str(uuid.uuid4()), grant=wire, kind=kind, **offer)  # type: ignore[arg-type]


def _check(offer: SessionOffer, node: str = NODE_A, desired: DesiredState | None = None):  # type: ignore[no-untyped-def]
    return check_grant(offer, [SIGNER.cert], node, desired or _desired(node))


def test_a_signed_grant_for_this_node_and_a_running_app_is_taken():
    claims, app = _check(_offer())
    assert (claims.kind, app.name if app else None) == ("exec", "web")


def test_a_grant_for_node_a_is_refused_by_node_b():
    with pytest.raises(GrantRefused, match="not this node"):
        _check(_offer(node=NODE_A), node=NODE_B)


def test_a_grant_signed_by_another_key_is_refused():
    with pytest.raises(GrantRefused, match="not signed by this node's controller"):
        _check(_offer(signer=STRANGER))


def test_an_expired_grant_is_refused():
    with pytest.raises(GrantRefused, match="expired"):
        _check(_offer(expires_in=-1))


def test_a_tampered_grant_is_refused():
    offer = _offer()
    wire = dict(offer.grant)
    wire["payload"] = wire["payload"][:-4] + (
        "AAAA" if not wire["payload"].endswith("AAAA") else "BBBB"
    )
    with pytest.raises(GrantRefused):
        _check(offer.model_copy(update={"grant": wire}))


def test_a_console_grant_needs_a_vm_app():
    with pytest.raises(GrantRefused, match="needs a vm app"):
        _check(_offer(kind="console", app=WEB))
    assert _check(_offer(kind="console", app=VM))[1] is not None


def test_a_node_shell_needs_debug_access_in_the_nodes_settings():
    with pytest.raises(GrantRefused, match="no debug access"):
        _check(_offer(kind="shell", app=None))
    claims, app = _check(_offer(kind="shell", app=None), desired=_desired(NODE_A, debug_ssh=True))
    assert (claims.kind, app) == ("shell", None)


def test_a_forward_reaches_only_the_granted_port():
    with pytest.raises(GrantRefused, match="port 80 only"):
        _check(_offer(kind="forward", forward_port=80, port=8080))
    assert _check(_offer(kind="forward", forward_port=80, port=80))[0].forward_port == 80


def test_an_app_not_in_the_desired_state_is_refused():
    gone = app_doc("gone")
    with pytest.raises(GrantRefused, match="does not run on this node"):
        _check(_offer(app=gone))
