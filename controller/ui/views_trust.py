"""UI views: a node's trust actions — accept its last verified measurements as its baseline
(operator), revoke it (admin, with a reason) — each after a confirmation page, through the
same trust actions as the operator API (which check, refuse and audit).

    /ui/nodes/<serial>/accept-baseline   operator   POST /api/v1/trust/nodes/<key>/accept-baseline
    /ui/nodes/<serial>/revoke            admin      POST /api/v1/trust/nodes/<key>/revoke
"""

from __future__ import annotations

from flask import url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from controller.domain.common import parse
from controller.store.lookup import find_node
from controller.store.models import NodeTrust
from controller.trust import actions as trust_actions
from controller.trust.actions import RevokeBody
from controller.ui.blueprint import ui
from controller.ui.confirm import Ask, ask_then_act
from controller.ui.forms import ConfirmForm, RevokeNodeForm
from controller.ui.security import requires
from controller.web.context import actor


@ui.route("/nodes/<serial>/accept-baseline", methods=["GET", "POST"])
@requires("operator")
def node_accept_baseline(serial: str) -> Response | tuple[str, int]:
    def ask(s: Session) -> Ask:
        node = find_node(s, serial)
        trust = s.get(NodeTrust, node.id)
        evidence = (trust.evidence if trust else None) or {}
        events = len(evidence.get("event_log") or [])
        warning = (
            ""
            if events
            else f"Node {serial} has no verified evidence yet, so the controller will refuse."
        )
        return Ask(
            f"Accept the measurements of node {serial} as its baseline",
            "Yes, accept the baseline",
            [
                f"The measurements node {serial} last proved ({events} boot events"
                f"{' and its PCR values' if trust and trust.tpm != 'none' else ''}) become its"
                " baseline: its later attestations are compared with them.",
                "Accept only a change you expect, such as an update of its boot chain.",
            ],
            warning,
            danger=False,
        )

    return ask_then_act(
        ConfirmForm(),
        ask,
        lambda s: trust_actions.accept_baseline(s, actor(), serial),
        done=f"Node {serial}: its last verified measurements are its baseline now.",
        refused=f"The baseline of node {serial} was not changed",
        back=url_for("ui.node", serial=serial),
        after=url_for("ui.node", serial=serial),
    )


@ui.route("/nodes/<serial>/revoke", methods=["GET", "POST"])
@requires("admin")
def node_revoke(serial: str) -> Response | tuple[str, int]:
    form = RevokeNodeForm()

    def ask(s: Session) -> Ask:
        node = find_node(s, serial)
        trust = s.get(NodeTrust, node.id)
        if node.uuid is None:
            warning = (
                f"Node {serial} never registered, so the controller will refuse;"
                " forget its claim instead."
            )
        elif trust is not None and trust.revoked_at is not None:
            warning = f"Node {serial} is revoked already ({trust.revoked_reason})."
        else:
            warning = ""
        return Ask(
            f"Revoke node {serial}",
            f"Yes, revoke node {serial}",
            [
                f"Node {serial} gets no config any more: every request it makes (config,"
                " reports, downloads, registering again) is refused and its tokens are"
                " dropped.",
                "There is no undo: the serial stays revoked; to use this machine again,"
                " give it a new serial and claim that.",
            ],
            warning,
        )

    def act(s: Session) -> object:
        body = parse(RevokeBody, {"reason": (form.reason.data or "").strip()})
        return trust_actions.revoke(s, actor(), serial, body.reason)

    return ask_then_act(
        form,
        ask,
        act,
        done=f"Node {serial} revoked: every request it makes is refused.",
        refused=f"Node {serial} was not revoked",
        back=url_for("ui.node", serial=serial),
        after=url_for("ui.node", serial=serial),
    )
