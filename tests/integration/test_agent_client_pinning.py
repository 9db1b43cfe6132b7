"""The agent trusts only the controller root it pinned, whatever the environment says."""

from __future__ import annotations

import pytest

from attestation import pki
from node_agent.client import ControllerClient, Unreachable

pytestmark = pytest.mark.integration


def test_the_pinned_root_is_used_even_when_an_env_ca_bundle_is_set(controller_server, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    client = ControllerClient(controller_server.url, controller_server.root_ca)
    assert "BEGIN CERTIFICATE" in client.certs()["root"]


def test_a_controller_whose_cert_is_not_under_the_pinned_root_is_refused(
    controller_server, tmp_path
):
    other_root = tmp_path / "other-root.pem"
    other_root.write_text(pki.make_ca("someone else").cert_pem())
    with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
        ControllerClient(controller_server.url, other_root).certs()
