"""Web UI onboarding: claim one serial or a CSV, approve/reject pending nodes, bundles."""

from __future__ import annotations

import io
import json
import stat
import tarfile

from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select

from attestation import pki
from controller.domain.onboarding import MAX_CSV_BYTES
from controller.store.models import AuditEvent, Node, PendingRegistration


def _db(app):  # type: ignore[no-untyped-def]
    return app.extensions["outpost"].db


def _serials(app) -> set[str]:  # type: ignore[no-untyped-def]
    with _db(app).transaction() as s:
        return set(s.scalars(select(Node.serial)))


def test_claiming_a_serial_is_audited_like_the_api(ui_client, ui_app, client, admin_headers):
    ui = ui_client("operator")
    resp = ui.post("/ui/onboarding/claim", {"serial": "sn-ui-1"})
    assert resp.status_code == 302
    assert "Serial sn-ui-1 claimed" in ui.get("/ui/onboarding").get_data(as_text=True)
    api = client.post("/api/v1/nodes/claim", json={"serial": "sn-api-1"}, headers=admin_headers)
    assert api.status_code == 201
    with _db(ui_app).transaction() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == "node.claim")).all()
        by_target = {r.target: r for r in rows}
        assert by_target["sn-ui-1"].actor == "user:operator1"
        assert by_target["sn-ui-1"].after == by_target["sn-api-1"].after | {"serial": "sn-ui-1"}
        assert s.scalar(select(Node).where(Node.serial == "sn-ui-1")).state == "claimed"


def test_an_invalid_serial_is_shown_next_to_the_field(ui_client, ui_app):
    resp = ui_client("operator").post("/ui/onboarding/claim", {"serial": "bad serial!"})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert 'id="serial-error"' in html and "Serial number: letters, digits and" in html
    assert "String should match pattern" not in html
    assert 'aria-invalid="true"' in html and 'aria-describedby="serial-hint serial-error"' in html
    assert _serials(ui_app) == set()


def _csv(client, text: bytes):  # type: ignore[no-untyped-def]
    return client.post(
        "/ui/onboarding/claim-csv",
        {"file": (io.BytesIO(text), "serials.csv")},
        content_type="multipart/form-data",
    )


def test_a_csv_claims_every_serial(ui_client, ui_app):
    resp = _csv(ui_client("operator"), b"serial,site\nsn-a,lab\nsn-b,lab\n\nsn-c\n")
    assert resp.status_code == 302
    assert _serials(ui_app) == {"sn-a", "sn-b", "sn-c"}


def test_a_csv_with_bad_rows_claims_nothing_and_names_each_row(ui_client, ui_app):
    resp = _csv(ui_client("operator"), b"sn-a\nbad serial\nsn-b\nsn-a\n" + b"x" * 200 + b"\n")
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "3 rows refused; nothing was claimed" in html
    assert "<td>2</td><td><code>bad serial</code></td>" in html
    assert "repeats row 1" in html
    assert "<td>5</td>" in html
    assert _serials(ui_app) == set()


def test_a_csv_larger_than_the_cap_is_refused(ui_client, ui_app):
    big = b"\n".join(b"sn-%05d" % i for i in range(MAX_CSV_BYTES // 8 + 10))
    resp = _csv(ui_client("operator"), big)
    assert resp.status_code == 422
    assert "larger than 64 KiB" in resp.get_data(as_text=True)
    assert _serials(ui_app) == set()
    not_text = _csv(ui_client("operator"), b"\xff\xfe\x00bad")
    assert "not UTF-8" in not_text.get_data(as_text=True)


def test_pending_nodes_are_approved_or_rejected(ui_client, ui_app):
    with _db(ui_app).transaction() as s:
        for serial in ("sn-p1", "sn-p2"):
            s.add(
                PendingRegistration(
                    serial=serial, device_cert_sha256="d" * 64, onboarding_cert_sha256="o" * 64
                )
            )
    ui = ui_client("operator")
    assert "sn-p1" in ui.get("/ui/onboarding").get_data(as_text=True)
    assert ui.post("/ui/onboarding/pending/sn-p1/approve").status_code == 302
    assert ui.post("/ui/onboarding/pending/sn-p2/reject").status_code == 302
    assert _serials(ui_app) == {"sn-p1"}
    with _db(ui_app).transaction() as s:
        assert s.scalars(select(PendingRegistration)).all() == []
        actions = set(s.scalars(select(AuditEvent.action)))
    assert {"node.approve", "node.reject"} <= actions
    gone = ui.post("/ui/onboarding/pending/sn-p2/approve")
    assert "no pending node" in ui.get(gone.headers["Location"]).get_data(as_text=True)


def test_an_admin_downloads_an_onboarding_bundle(ui_client, ui_app):
    resp = ui_client("admin").post("/ui/onboarding/bundle", {"batch": "lab-1"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/gzip"
    assert "outpost-onboarding-lab-1.tar.gz" in resp.headers["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(resp.data), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        top = "outpost-onboarding-lab-1"
        files = {n.removeprefix(top + "/") for n in members if n != top}
        assert files == {"controller.json", "root-ca.pem", "onboarding.pem", "onboarding.key"}
        assert stat.S_IMODE(members[f"{top}/onboarding.key"].mode) == 0o600
        assert members[f"{top}/onboarding.key"].uid == 0
        read = lambda n: tar.extractfile(f"{top}/{n}").read()  # noqa: E731
        services = ui_app.extensions["outpost"]
        assert json.loads(read("controller.json"))["url"] == services.settings.public_url
        assert read("root-ca.pem").decode() == services.pki.root.cert_pem()
        cert = pki.load_cert(read("onboarding.pem").decode())
    pki.verify_chain(cert, services.pki.onboarding_ca.cert, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    with _db(ui_app).transaction() as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "onboarding.bundle"))


def test_a_bad_batch_name_is_refused(ui_client):
    resp = ui_client("admin").post("/ui/onboarding/bundle", {"batch": "../etc"})
    assert resp.status_code == 422
    assert 'id="batch-error"' in resp.get_data(as_text=True)
