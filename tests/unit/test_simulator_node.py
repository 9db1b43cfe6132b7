"""What a simulated node sends is what the protocol accepts, and it checks configs as
the agent does."""

from __future__ import annotations

import base64
import json
import math
import uuid

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from attestation import envelope, pki
from benchmarks.simulator.identities import make_identity
from benchmarks.simulator.node import ConfigCheck, SimNode, metrics_body, quote_body
from benchmarks.simulator.stats import Stats, percentile
from node_agent.config_verifier import ConfigRejected, ConfigVerifier
from protocol.attest import QuoteRequest
from protocol.desired_state import DesiredState
from protocol.messages import InfoMessage, MetricsMessage

ROOT = pki.make_ca("sim test root")
SIGNING = pki.issue_cert(ROOT, "signing", usage=ExtendedKeyUsageOID.CODE_SIGNING)


def _node() -> SimNode:
    return SimNode(make_identity("n-1"), node_uuid=str(uuid.uuid4()))


def _config(node: SimNode, generation: int, reboot: int = 0, signer: pki.Identity = SIGNING):  # type: ignore[no-untyped-def]
    doc = DesiredState(node_uuid=node.node_uuid, generation=generation, reboot_counter=reboot)
    return envelope.seal(doc.model_dump(mode="json"), signer), doc


def _full() -> ConfigCheck:
    return ConfigCheck("full", ConfigVerifier(ROOT.cert, [SIGNING.cert]))


def test_report_bodies_match_the_protocol_models() -> None:
    node = _node()
    node.queue_info()
    InfoMessage.model_validate(node.info_pending)
    MetricsMessage.model_validate(metrics_body(12.5))
    QuoteRequest.model_validate(quote_body("ab" * 32))


@pytest.mark.parametrize("mode", ["full", "hash"])
def test_a_new_config_gives_the_hash_the_agent_would_send(mode: str) -> None:
    node = _node()
    wire, doc = _config(node, 3)
    node.accept(wire, _full() if mode == "full" else ConfigCheck("hash"))
    assert (node.config_hash, node.generation) == (doc.content_hash(), 3)
    assert node.info_pending is not None and node.info_pending["config_generation"] == 3


@pytest.mark.parametrize("mode", ["full", "hash"])
def test_a_config_for_another_node_or_an_older_generation_is_refused(mode: str) -> None:
    node = _node()
    check = _full() if mode == "full" else ConfigCheck("hash")
    node.accept(_config(node, 5)[0], check)
    with pytest.raises(ConfigRejected):
        node.accept(_config(node, 4)[0], check)
    other = _node()
    with pytest.raises(ConfigRejected):
        node.accept(_config(other, 6)[0], check)
    assert node.generation == 5


def test_full_mode_refuses_a_config_signed_by_a_key_the_root_did_not_certify() -> None:
    node = _node()
    rogue = pki.issue_cert(pki.make_ca("rogue"), "s", usage=ExtendedKeyUsageOID.CODE_SIGNING)
    with pytest.raises(ConfigRejected):
        node.accept(_config(node, 1, signer=rogue)[0], _full())


def test_hash_mode_reads_the_payload_without_checking_the_signature() -> None:
    node = _node()
    wire, _ = _config(node, 2)
    wire = {**wire, "signature": base64.b64encode(b"not a signature").decode()}
    node.accept(wire, ConfigCheck("hash"))  # the cheap mode trusts TLS: documented
    assert node.generation == 2
    body = json.loads(base64.b64decode(wire["payload"]))["body"]
    assert body["generation"] == 2


def test_a_reboot_command_is_acted_on_once_and_its_delay_measured() -> None:
    node = _node()
    check = ConfigCheck("hash")
    node.accept(_config(node, 1)[0], check)
    node.expected.append((1, 100.0))
    node.accept(_config(node, 2, reboot=1)[0], check)
    node.counter_at = 101.5
    assert node.reached() == [1.5] and node.expected == []
    node.accept(_config(node, 3, reboot=1)[0], check)  # same counter: no second reboot
    assert node.reboots_acted == 1


def test_percentiles_are_nearest_rank_and_nan_when_empty() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert math.isnan(percentile([], 0.5))


def test_stats_count_requests_and_errors_by_kind() -> None:
    stats = Stats()
    stats.ok("config", 3.0)
    stats.ok("config", 5.0)
    stats.error("config", "timeout")
    stats.error("info", "503 error")
    s = stats.summary("config")
    assert (s.ok, s.errors, s.max_ms) == (2, 1, 5.0)
    assert stats.error_count() == 2
    assert "timeout" in stats.error_table()
