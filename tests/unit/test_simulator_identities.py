"""Simulated node identities: made as the agent makes them, cached, and listed in a
bulk-enrolment manifest."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from attestation import pki
from benchmarks.simulator import identities as ids


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "CHUNK", 4)


def _spki(key) -> bytes:  # type: ignore[no-untyped-def]
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_each_identity_is_a_self_signed_device_cert_over_its_own_key(tmp_path: Path) -> None:
    got = ids.IdentityCache(tmp_path, "t").load(6)
    assert [i.serial for i in got] == [f"t-{n:06d}" for n in range(6)]
    for ident in got:
        pki.verify_self_signed(ident.device.cert)
        assert _spki(ident.device.cert.public_key()) == _spki(ident.device.key.public_key())
        assert ident.serial in ident.device.cert.subject.rfc4514_string()
    assert len({i.device.sha256 for i in got}) == 6


def test_a_second_load_reads_the_cache_instead_of_generating(tmp_path: Path) -> None:
    first = ids.IdentityCache(tmp_path, "t")
    a = first.load(7, start=0)
    assert first.generated == 8  # two chunks of 4
    again = ids.IdentityCache(tmp_path, "t")
    b = again.load(7)
    assert again.generated == 0
    assert [x.device.sha256 for x in a] == [x.device.sha256 for x in b]


def test_a_slice_across_chunks_returns_exactly_the_asked_identities(tmp_path: Path) -> None:
    got = ids.IdentityCache(tmp_path, "t").load(5, start=3)
    assert [i.serial for i in got] == [f"t-{n:06d}" for n in range(3, 8)]


def test_the_cache_keeps_private_keys_private(tmp_path: Path) -> None:
    cache = ids.IdentityCache(tmp_path, "t")
    cache.load(2)
    assert cache.dir.stat().st_mode & 0o777 == 0o700
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in cache.dir.iterdir())


def test_a_prefix_that_could_escape_the_cache_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ids.IdentityCache(tmp_path, "../x")


def test_the_csv_manifest_lists_serial_device_cert_and_an_empty_ek_cert(tmp_path: Path) -> None:
    got = ids.IdentityCache(tmp_path, "t").load(3)
    rows = list(csv.reader(io.StringIO(ids.manifest_bytes(got, "csv").decode())))
    assert rows[0] == ["serial", "device_cert_pem", "ek_cert_pem"]
    assert [r[0] for r in rows[1:]] == [i.serial for i in got]
    assert pki.cert_sha256(pki.load_cert(rows[2][1])) == got[1].device.sha256
    assert all(r[2] == "" for r in rows[1:])


def test_the_json_manifest_carries_the_same_devices(tmp_path: Path) -> None:
    got = ids.IdentityCache(tmp_path, "t").load(2)
    doc = json.loads(ids.manifest_bytes(got, "json", ek_certs=[None, "EK PEM"]))
    assert doc["version"] == 1
    assert [d["serial"] for d in doc["devices"]] == [i.serial for i in got]
    assert doc["devices"][0]["ek_cert_pem"] is None
    assert doc["devices"][1]["ek_cert_pem"] == "EK PEM"
    assert doc["devices"][0]["device_cert_pem"] == got[0].cert_pem
