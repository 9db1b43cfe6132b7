"""Cross-check with an independent implementation (Debian's tpm2-tools): tpm2_checkquote
verifies Outpost's quotes, Outpost's verifier checks tpm2_quote's, and both refuse the
same tampered ones; tpm2_makecredential's credentials activate with Outpost's
ActivateCredential and Outpost's MakeCredential activates with tpm2_activatecredential,
for the RSA EK (behind its PolicySecret policy) and the ECC P-384 EK swtpm_setup certifies.

PCR values go to tpm2_checkquote in tpm2-tools' "serialized" file format (tpm2-tools
5.4 mis-hashes the plain "values" format with ``-l`` once more than 8 PCRs are quoted);
a test checks our writer produces byte for byte what tpm2_quote writes.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from attestation.credential import make_credential
from attestation.measurement import MEASUREMENT_PCR, QUOTED_PCRS
from attestation.quote import NonceMismatch, QuoteFailed, load_public, verify_quote
from attestation.tpm import AK_HANDLE, Tpm, TpmError, parse_tpm_setting

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tpm2_checkquote") is None, reason="tpm2-tools missing"),
]
NONCE = bytes.fromhex("5eed" * 16)
SECRET = bytes.fromhex("c0ffee" * 10 + "0b5e")
EK_HANDLES = {"EK-RSA2048": 0x81010001, "EK-HIGH-ECC384": 0x81010016}
"""Where swtpm_setup (0.7) persists the EKs it certifies."""
TOOLS_CREDENTIAL_MAGIC = struct.pack(">II", 0xBADCC0DE, 1)
PCR_LIST = "sha256:" + ",".join(map(str, QUOTED_PCRS))  # PCRs 0-7 and 14, as the agent quotes


@pytest.fixture
def tpm(swtpm):  # type: ignore[no-untyped-def]
    with Tpm(parse_tpm_setting(swtpm.tcti)) as t:
        t.ensure_keys()
        t.extend(MEASUREMENT_PCR, b"\x42" * 32)
        yield t


def _tools(swtpm, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "TPM2TOOLS_TCTI": swtpm.tcti}
    return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=60)


def _ak_pem(tpm: Tpm, path: Path) -> Path:
    key = load_public(tpm.public("ak")).key
    path.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def _checkquote(swtpm, tpm, tmp: Path, attest: bytes, sig: bytes, pcrs: bytes, nonce: bytes):  # type: ignore[no-untyped-def]
    """tpm2_checkquote's verdict: True when it accepts the quote."""
    (tmp / "m").write_bytes(attest)
    (tmp / "s").write_bytes(sig)
    (tmp / "p").write_bytes(pcrs)
    done = _tools(
        swtpm,
        "tpm2_checkquote",
        "-u", str(_ak_pem(tpm, tmp / "ak.pem")), "-m", str(tmp / "m"), "-s", str(tmp / "s"),
        "-f", str(tmp / "p"), "-g", "sha256", "-q", nonce.hex(),
    )  # fmt: skip
    return done.returncode == 0


def _ours(tpm, attest: bytes, sig: bytes, pcrs: dict[int, bytes], nonce: bytes):  # type: ignore[no-untyped-def]
    return verify_quote(attest, sig, load_public(tpm.public("ak")), nonce, pcrs)


def _values(pcrs: dict[int, bytes]) -> bytes:
    """tpm2-tools' serialized PCR file: the raw little-endian TPML_PCR_SELECTION (16
    slots of 8 bytes), a count, then that many TPML_DIGEST of 8 TPM2B_DIGEST (66 bytes)."""
    bitmap = bytearray(4)
    for i in pcrs:
        bitmap[i // 8] |= 1 << (i % 8)
    out = struct.pack("<I", 1) + struct.pack("<HB4sx", 0x000B, 3, bytes(bitmap)) + bytes(8 * 15)
    values = [pcrs[i] for i in sorted(pcrs)]
    groups = [values[k : k + 8] for k in range(0, len(values), 8)]
    out += struct.pack("<I", len(groups))
    for group in groups:
        out += struct.pack("<I", len(group))
        out += b"".join(struct.pack("<H", 32) + v + bytes(32) for v in group)
        out += bytes(66 * (8 - len(group)))
    return out


def test_tpm2_checkquote_accepts_an_outpost_quote(swtpm, tpm, tmp_path):  # type: ignore[no-untyped-def]
    ev = tpm.quote(NONCE, list(QUOTED_PCRS))
    assert _checkquote(swtpm, tpm, tmp_path, ev.attest, ev.signature, _values(ev.pcrs), NONCE)
    _ours(tpm, ev.attest, ev.signature, ev.pcrs, NONCE)


def test_outpost_verifies_a_quote_made_by_tpm2_quote(swtpm, tpm, tmp_path):  # type: ignore[no-untyped-def]
    done = _tools(
        swtpm,
        "tpm2_quote",
        "-c", hex(AK_HANDLE), "-l", PCR_LIST, "-q", NONCE.hex(), "-g", "sha256",
        "-m", str(tmp_path / "m"), "-s", str(tmp_path / "s"),
        "-o", str(tmp_path / "p"), "-F", "values",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    raw = (tmp_path / "p").read_bytes()
    pcrs = {i: raw[32 * n : 32 * (n + 1)] for n, i in enumerate(QUOTED_PCRS)}
    attest, sig = (tmp_path / "m").read_bytes(), (tmp_path / "s").read_bytes()
    assert _ours(tpm, attest, sig, pcrs, NONCE).pcrs == QUOTED_PCRS
    assert pcrs == tpm.read_pcrs(list(QUOTED_PCRS))
    assert _checkquote(swtpm, tpm, tmp_path, attest, sig, _values(pcrs), NONCE)


def test_our_pcr_file_is_what_tpm2_quote_writes(swtpm, tpm, tmp_path):  # type: ignore[no-untyped-def]
    for fmt in ("values", "serialized"):
        done = _tools(
            swtpm,
            "tpm2_quote",
            "-c", hex(AK_HANDLE), "-l", PCR_LIST, "-q", NONCE.hex(), "-g", "sha256",
            "-m", str(tmp_path / "m"), "-s", str(tmp_path / "s"),
            "-o", str(tmp_path / fmt), "-F", fmt,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    raw = (tmp_path / "values").read_bytes()
    pcrs = {i: raw[32 * n : 32 * (n + 1)] for n, i in enumerate(QUOTED_PCRS)}
    assert _values(pcrs) == (tmp_path / "serialized").read_bytes()


def test_both_refuse_a_quote_checked_against_another_nonce(swtpm, tpm, tmp_path):  # type: ignore[no-untyped-def]
    ev, other = tpm.quote(NONCE, list(QUOTED_PCRS)), bytes(32)
    assert not _checkquote(swtpm, tpm, tmp_path, ev.attest, ev.signature, _values(ev.pcrs), other)
    with pytest.raises(NonceMismatch):
        _ours(tpm, ev.attest, ev.signature, ev.pcrs, other)


def test_both_refuse_a_quote_whose_pcr_values_were_altered(swtpm, tpm, tmp_path):  # type: ignore[no-untyped-def]
    ev = tpm.quote(NONCE, list(QUOTED_PCRS))
    altered = dict(ev.pcrs) | {MEASUREMENT_PCR: bytes(32)}
    assert not _checkquote(swtpm, tpm, tmp_path, ev.attest, ev.signature, _values(altered), NONCE)
    with pytest.raises(QuoteFailed):
        _ours(tpm, ev.attest, ev.signature, altered, NONCE)


def test_both_refuse_a_quote_with_a_flipped_bit(swtpm, tpm, tmp_path):  # type: ignore[no-untyped-def]
    ev = tpm.quote(NONCE, list(QUOTED_PCRS))
    tampered = bytearray(ev.attest)
    tampered[-1] ^= 1  # the last byte of the quoted PCR digest
    assert not _checkquote(
        swtpm, tpm, tmp_path, bytes(tampered), ev.signature, _values(ev.pcrs), NONCE
    )
    with pytest.raises(QuoteFailed):
        _ours(tpm, bytes(tampered), ev.signature, ev.pcrs, NONCE)


@pytest.fixture(params=sorted(EK_HANDLES))
def ek_tpm(request, swtpm_with_ek):  # type: ignore[no-untyped-def]
    """A TPM with EK certificates, using the certified EK of the parameter's type."""
    with Tpm(parse_tpm_setting(swtpm_with_ek.tcti), ek_types=(request.param,)) as t:
        t.ensure_keys()
        yield t, EK_HANDLES[request.param]


def _tpm2b(data: bytes) -> tuple[bytes, bytes]:
    """The whole marshalled TPM2B at the start of ``data`` and the rest."""
    (size,) = struct.unpack(">H", data[:2])
    return data[: 2 + size], data[2 + size :]


def test_a_tpm2_makecredential_credential_activates_with_outpost(swtpm_with_ek, ek_tpm, tmp_path):  # type: ignore[no-untyped-def]
    tpm, _handle = ek_tpm
    (tmp_path / "ek.pub").write_bytes(tpm.certified_ek_public())
    (tmp_path / "secret").write_bytes(SECRET)
    done = _tools(
        swtpm_with_ek,
        "tpm2_makecredential", "-T", "none",
        "-u", str(tmp_path / "ek.pub"), "-n", tpm.ak_name().hex(),
        "-s", str(tmp_path / "secret"), "-o", str(tmp_path / "cred"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    raw = (tmp_path / "cred").read_bytes()
    assert raw[:8] == TOOLS_CREDENTIAL_MAGIC
    id_object, rest = _tpm2b(raw[8:])
    encrypted_secret, rest = _tpm2b(rest)
    assert rest == b""

    assert tpm.activate_credential(id_object, encrypted_secret) == SECRET


def _tools_activate(swtpm, ek_handle: int, cred: bytes, tmp: Path) -> bytes | None:  # type: ignore[no-untyped-def]
    """tpm2_activatecredential of the AK under the EK at ``ek_handle`` (the RSA EK through
    a PolicySecret session); the secret, or None when it refuses."""
    (tmp / "cred").write_bytes(TOOLS_CREDENTIAL_MAGIC + cred)
    ek_auth: list[str] = []
    session = str(tmp / "session.ctx")
    if ek_handle == EK_HANDLES["EK-RSA2048"]:  # the low-range EK: userWithAuth is clear
        for argv in (
            ("tpm2_startauthsession", "--policy-session", "-S", session),
            ("tpm2_policysecret", "-S", session, "-c", "e"),
        ):
            done = _tools(swtpm, *argv)
            assert done.returncode == 0, done.stderr
        ek_auth = ["-P", f"session:{session}"]
    (tmp / "out").unlink(missing_ok=True)
    done = _tools(
        swtpm,
        "tpm2_activatecredential", "-c", hex(AK_HANDLE), "-C", hex(ek_handle), *ek_auth,
        "-i", str(tmp / "cred"), "-o", str(tmp / "out"),
    )  # fmt: skip
    if ek_auth:
        _tools(swtpm, "tpm2_flushcontext", session)
    return (tmp / "out").read_bytes() if done.returncode == 0 else None


def test_an_outpost_credential_activates_with_tpm2_activatecredential(
    swtpm_with_ek, ek_tpm, tmp_path
):  # type: ignore[no-untyped-def]
    tpm, ek_handle = ek_tpm
    made = make_credential(tpm.certified_ek_public(), tpm.ak_name(), SECRET)
    cred = made.id_object + made.encrypted_secret
    assert _tools_activate(swtpm_with_ek, ek_handle, cred, tmp_path) == SECRET


def test_both_refuse_a_credential_made_for_another_ak_name(swtpm_with_ek, ek_tpm, tmp_path):  # type: ignore[no-untyped-def]
    tpm, ek_handle = ek_tpm
    other_name = tpm.ak_name()[:2] + bytes(32)
    made = make_credential(tpm.certified_ek_public(), other_name, SECRET)
    with pytest.raises(TpmError, match="activation failed"):
        tpm.activate_credential(made.id_object, made.encrypted_secret)
    cred = made.id_object + made.encrypted_secret
    assert _tools_activate(swtpm_with_ek, ek_handle, cred, tmp_path) is None
