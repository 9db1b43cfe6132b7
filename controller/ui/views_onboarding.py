"""UI views: claim serials (one, or a CSV) pinned to the node's fingerprints,
approve/reject pending nodes (showing their fingerprints), download an onboarding bundle
(a tar.gz of what ``outpost-controller bundle`` writes), list and revoke batches."""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from pathlib import Path

from flask import flash, redirect, render_template, send_file, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from controller.domain import batches as batch_actions
from controller.domain import onboarding as onboarding_actions
from controller.domain.onboarding import MAX_CSV_BYTES
from controller.errors import ApiError
from controller.store.models import Node, PendingRegistration
from controller.ui.blueprint import apply_errors, services, ui
from controller.ui.forms import BundleForm, ClaimForm, CsvClaimForm, RevokeBatchForm
from controller.ui.security import requires
from controller.web.context import actor

BATCH_RE = re.compile(batch_actions.BATCH_PATTERN)
RECENT_CLAIMS = 20


def _page(
    claim: ClaimForm | None = None,
    csv_form: CsvClaimForm | None = None,
    bundle: BundleForm | None = None,
    csv_errors: list[tuple[int, str, str]] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    with services().db.transaction() as s:
        pending = list(s.scalars(select(PendingRegistration).order_by(PendingRegistration.serial)))
        claimed = list(
            s.scalars(
                select(Node)
                .where(Node.state == "claimed")
                .order_by(Node.claimed_at.desc())
                .limit(RECENT_CLAIMS)
            )
        )
        batches = batch_actions.list_batches(s)
    html = render_template(
        "onboarding.html",
        batches=batches,
        revoke_form=RevokeBatchForm(),
        allow_unpinned=services().settings.allow_unpinned_claims,
        claim_form=claim or ClaimForm(),
        csv_form=csv_form or CsvClaimForm(),
        bundle_form=bundle or BundleForm(),
        csv_errors=csv_errors or [],
        pending=pending,
        claimed=claimed,
        csv_cap_kib=MAX_CSV_BYTES // 1024,
    )
    return html, status


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Modes stay (the key is 0600); owner names and ids of this host do not travel."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


@ui.get("/onboarding")
@requires("viewer")
def onboarding() -> tuple[str, int]:
    return _page()


@ui.post("/onboarding/claim")
@requires("operator")
def claim() -> Response | tuple[str, int]:
    form = ClaimForm()
    if form.validate_on_submit():
        serial = (form.serial.data or "").strip()
        try:
            with services().db.transaction() as s:
                onboarding_actions.claim(
                    s,
                    actor(),
                    serial,
                    form.device_cert_sha256.data or None,
                    form.ek_sha256.data or None,
                    allow_unpinned=services().settings.allow_unpinned_claims,
                )
        except ApiError as exc:
            apply_errors(form, exc)
        else:
            flash(f"Serial {serial} claimed: the node carrying it may now onboard.", "info")
            return redirect(url_for("ui.onboarding"))
    return _page(claim=form, status=422)


@ui.post("/onboarding/claim-csv")
@requires("operator")
def claim_csv() -> Response | tuple[str, int]:
    form = CsvClaimForm()
    if form.validate_on_submit():
        data = form.file.data.stream.read(MAX_CSV_BYTES + 1)
        with services().db.transaction() as s:
            result = onboarding_actions.claim_csv(
                s, actor(), data, allow_unpinned=services().settings.allow_unpinned_claims
            )
        if not result.errors:
            flash(f"{len(result.serials)} serials claimed.", "info")
            return redirect(url_for("ui.onboarding"))
        form.file.errors = [
            *form.file.errors,
            f"{len(result.errors)} rows refused; nothing was claimed (see the table below).",
        ]
        return _page(csv_form=form, csv_errors=result.errors, status=422)
    return _page(csv_form=form, status=422)


@ui.post("/onboarding/pending/<serial>/<decision>")
@requires("operator")
def decide(serial: str, decision: str) -> Response:
    try:
        with services().db.transaction() as s:
            onboarding_actions.decide(s, actor(), serial, decision)
    except ApiError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Node {serial}: {decision}d.", "info")
    return redirect(url_for("ui.onboarding"))


@ui.post("/onboarding/bundle")
@requires("admin")
def bundle() -> Response | tuple[str, int]:
    """Issue an onboarding cert for a batch and send the bundle as a tar.gz (admin only)."""
    form = BundleForm()
    if not form.validate_on_submit():
        return _page(bundle=form, status=422)
    batch = (form.batch.data or "").strip()
    if not BATCH_RE.match(batch):
        form.batch.errors = [*form.batch.errors, "1-63 of A-Z a-z 0-9 . _ - (letter/digit first)"]
        return _page(bundle=form, status=422)
    svc = services()
    top = f"outpost-onboarding-{batch}"
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="outpost-bundle-") as tmp:
        out = Path(tmp) / top
        with svc.db.transaction() as s:
            batch_actions.issue_bundle(s, actor(), svc.pki, out, svc.settings.public_url, batch)
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(out, arcname=top, filter=_anonymous)
    buf.seek(0)
    resp = send_file(
        buf, mimetype="application/gzip", as_attachment=True, download_name=f"{top}.tar.gz"
    )
    resp.headers["Cache-Control"] = "no-store"  # it holds a private key
    return resp


@ui.post("/onboarding/batches/<name>/revoke")
@requires("admin")
def revoke_batch(name: str) -> Response:
    """Revoke an onboarding batch: its certificate registers no node any more."""
    form = RevokeBatchForm()
    if not form.validate_on_submit():
        flash("Give a reason to revoke the batch.", "error")
        return redirect(url_for("ui.onboarding"))
    try:
        with services().db.transaction() as s:
            batch_actions.revoke_batch(s, actor(), name, {"reason": form.reason.data})
    except ApiError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Onboarding batch {name} revoked: its certificate registers no node.", "info")
    return redirect(url_for("ui.onboarding"))
