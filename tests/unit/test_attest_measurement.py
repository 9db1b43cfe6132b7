"""Measurements: PCR extend and replay, the agent code digest, checkpoint digests, and the
TPM-less event log (the TPM-backed log has integration tests on swtpm)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from attestation.measurement import ZERO_PCR, code_digest, extend, pcr_digest, replay
from attestation.tpm_setting import parse_tpm_setting
from node_agent.measure import Measurements, checkpoint_digest
from protocol.attest import MeasurementType

A, B = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()


def test_replay_of_nothing_is_a_reset_pcr():
    assert replay([]) == ZERO_PCR


def test_replay_extends_in_order_as_a_tpm_does():
    expected = hashlib.sha256(
        hashlib.sha256(ZERO_PCR + bytes.fromhex(A)).digest() + bytes.fromhex(B)
    )
    assert replay([A, B]) == expected.digest()
    assert replay([B, A]) != replay([A, B])


def test_extend_refuses_digests_of_the_wrong_size():
    with pytest.raises(ValueError):
        extend(ZERO_PCR, b"short")


def test_pcr_digest_is_the_hash_of_the_values_in_order():
    assert pcr_digest([b"\1" * 32, b"\2" * 32]) == hashlib.sha256(b"\1" * 32 + b"\2" * 32).digest()


@pytest.fixture
def code(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "a.py").write_text("x = 1\n")
    (root / "sub" / "b.py").write_text("y = 2\n")
    return root


def test_the_code_digest_is_stable(code: Path):
    assert code_digest([code]) == code_digest([code])


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "a.py").write_text("x = 2\n"),
        lambda root: (root / "c.py").write_text(""),
        lambda root: (root / "sub" / "b.py").unlink(),
        lambda root: (root / "a.py").rename(root / "z.py"),
    ],
    ids=["edited", "added", "removed", "renamed"],
)
def test_the_code_digest_changes_with_any_code_change(code: Path, change):  # type: ignore[no-untyped-def]
    before = code_digest([code])
    change(code)
    assert code_digest([code]) != before


def test_the_code_digest_ignores_bytecode_caches(code: Path):
    before = code_digest([code])
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "a.cpython-311.py").write_text("cached")
    assert code_digest([code]) == before


def test_the_code_digest_of_a_copy_equals_the_original(code: Path, tmp_path: Path):
    copy = tmp_path / "copy" / "pkg"
    shutil.copytree(code, copy)
    assert code_digest([copy]) == code_digest([code])


def test_a_checkpoint_is_measured_by_its_signed_payload(tmp_path: Path):
    payload = b'{"body":{},"request_id":"r","timestamp":1}'
    path = tmp_path / "checkpoint.json"
    envelope = {"payload": base64.b64encode(payload).decode(), "signature": "x"}
    path.write_text(json.dumps({"envelope": envelope}))
    assert checkpoint_digest(path) == (hashlib.sha256(payload).hexdigest(), "config checkpoint")


def test_an_unreadable_checkpoint_is_measured_as_raw_bytes(tmp_path: Path):
    path = tmp_path / "checkpoint.json"
    path.write_bytes(b"garbage")
    digest, description = checkpoint_digest(path)  # type: ignore[misc]
    assert digest == hashlib.sha256(b"garbage").hexdigest() and "unreadable" in description


def test_no_checkpoint_means_no_measurement(tmp_path: Path):
    assert checkpoint_digest(tmp_path / "absent.json") is None


def test_without_a_tpm_the_log_replays_to_the_software_pcr(tmp_path: Path):
    log = Measurements(tmp_path / "m.json", None)
    log.measure(MeasurementType.AGENT, A, "agent")
    log.measure(MeasurementType.IMAGE, B, "image")
    assert log.software_pcr() == replay([A, B])


def test_the_same_thing_is_measured_once(tmp_path: Path):
    log = Measurements(tmp_path / "m.json", None)
    assert log.measure(MeasurementType.IMAGE, A, "image x") is True
    assert log.measure(MeasurementType.IMAGE, A, "image x again") is False
    assert len(log.events) == 1


def test_without_a_tpm_every_start_begins_a_new_log(tmp_path: Path):
    Measurements(tmp_path / "m.json", None).measure(MeasurementType.AGENT, A, "agent")
    assert Measurements(tmp_path / "m.json", None).events == []


@pytest.mark.parametrize(
    "value,kind",
    [
        ("none", "none"),
        ("swtpm:host=127.0.0.1,port=2321", "swtpm"),
        ("device:/dev/tpmrm0", "device"),
    ],
)
def test_tpm_settings_are_parsed(value: str, kind: str):
    assert parse_tpm_setting(value).kind == kind


@pytest.mark.parametrize("value", ["tpm", "swtpm:port=abc", "device:tpmrm0", "mssim:"])
def test_a_bad_tpm_setting_is_refused_with_the_accepted_forms(value: str):
    with pytest.raises(ValueError, match="expected none, auto"):
        parse_tpm_setting(value)
