"""swtpm with EK certificates from a local test CA, and that CA as the controller's bundle.

A real TPM leaves the factory with an EK certificate from its maker; the controller
trusts makers through an EK CA bundle. For swtpm, ``swtpm_setup --create-ek-cert
--create-platform-cert`` plays the factory and ``swtpm_localca`` the maker, here with
its configuration in a private directory (never ``/etc`` or ``/var/lib/swtpm-localca``)::

    ca = LocalEkCa(lab_dir / "ek-ca")     # config files; the CA itself is made on first use
    ca.manufacture(node_dir / "swtpm")    # before the first `swtpm socket` on that state
    ca.bundle_path()                      # PEM (root + signing CA): the controller's bundle

``manufacture`` leaves an existing TPM state as it is (same EK across restarts). swtpm
0.7 makes an RSA 2048 EK (certificate in NV 0x01c00002, key persisted at 0x81010001) and
an ECC P-384 EK (0x01c00016, 0x81010016), plus a platform certificate (0x01c08000).

Who uses it: the test fixtures (``tests/fixtures/swtpm.py``), ``scripts/demo.py`` and the
lab (process and QEMU nodes); a lab keeps one CA in ``<lab dir>/ek-ca`` (see
:func:`lab_ek_ca`), so one bundle covers all its nodes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from attestation.files import atomic_write

__all__ = ["EkCaError", "LocalEkCa", "lab_ek_ca"]

TPM_MANUFACTURER = "id:00001014"  # IBM: swtpm's own manufacturer id
SETUP_TIMEOUT_S = 120.0
BUNDLE_FILE = "ek-ca-bundle.pem"
ROOT_CERT = "swtpm-localca-rootca-cert.pem"
ISSUER_CERT = "issuercert.pem"


class EkCaError(Exception):
    """swtpm_setup or swtpm_localca failed (the message carries their output)."""


def lab_ek_ca(lab_dir: Path) -> LocalEkCa:
    """The lab's one local EK CA (``<lab dir>/ek-ca``)."""
    return LocalEkCa(Path(lab_dir) / "ek-ca")


class LocalEkCa:
    """A private swtpm_localca: its config files, CA keys and certs live in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory).absolute()
        self.state = self.dir / "ca"
        self.setup_conf = self.dir / "swtpm_setup.conf"
        self.localca_conf = self.dir / "swtpm-localca.conf"
        self.localca_options = self.dir / "swtpm-localca.options"
        self._write_config()

    def _write_config(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state.mkdir(mode=0o700, exist_ok=True)
        localca = shutil.which("swtpm_localca") or "/usr/bin/swtpm_localca"
        files = {
            self.localca_conf: (
                f"statedir = {self.state}\n"
                f"signingkey = {self.state / 'signkey.pem'}\n"
                f"issuercert = {self.state / ISSUER_CERT}\n"
                f"certserial = {self.state / 'certserial'}\n"
            ),
            self.localca_options: (
                "--platform-manufacturer Outpost\n--platform-version 1.0\n--platform-model swtpm\n"
            ),
            self.setup_conf: (
                f"create_certs_tool = {localca}\n"
                f"create_certs_tool_config = {self.localca_conf}\n"
                f"create_certs_tool_options = {self.localca_options}\n"
                "active_pcr_banks = sha256\n"
            ),
        }
        for path, text in files.items():
            if not path.exists() or path.read_text() != text:
                atomic_write(path, text.encode(), mode=0o600)

    def _run(self, argv: list[str], what: str) -> None:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EkCaError(f"{what}: {exc}") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-2000:]
            raise EkCaError(f"{what} failed (exit {done.returncode}): {output}")

    def ensure_ca(self) -> Path:
        """Make the CA now (swtpm_localca makes it on first use) and write the bundle."""
        if not (self.state / ISSUER_CERT).exists():
            numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
            with tempfile.TemporaryDirectory(prefix="ek-ca-", dir=self.dir) as scratch:
                self._run(
                    [
                        "swtpm_localca", "--type", "ek", "--tpm2",
                        "--ek", f"x={numbers.x:064x},y={numbers.y:064x}",
                        "--dir", scratch,
                        "--configfile", str(self.localca_conf),
                        "--optsfile", str(self.localca_options),
                        "--tpm-manufacturer", TPM_MANUFACTURER,
                        "--tpm-model", "swtpm", "--tpm-version", "id:20191023",
                        "--tpm-spec-family", "2.0", "--tpm-spec-level", "0",
                        "--tpm-spec-revision", "164",
                    ],
                    "swtpm_localca (creating the local EK CA)",
                )  # fmt: skip
        return self.bundle_path()

    def manufacture(self, state_dir: Path, *, platform_cert: bool = True) -> None:
        """Give a new TPM state in ``state_dir`` EK certificates from this CA (an existing
        state is left untouched)."""
        state_dir = Path(state_dir)
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.ensure_ca()
        argv = [
            "swtpm_setup", "--tpm2", "--tpmstate", str(state_dir),
            "--create-ek-cert", "--config", str(self.setup_conf),
            "--not-overwrite", "--pcr-banks", "sha256",
            "--logfile", str(state_dir.parent / f"{state_dir.name}-setup.log"),
        ]  # fmt: skip
        if platform_cert:
            argv.append("--create-platform-cert")
        self._run(argv, f"swtpm_setup {state_dir}")

    def bundle_path(self) -> Path:
        """The CA's certificates (root, then signing CA) as one PEM file."""
        root, issuer = self.state / ROOT_CERT, self.state / ISSUER_CERT
        if not root.exists() or not issuer.exists():
            raise EkCaError(f"the local EK CA in {self.dir} has not been made yet")
        path = self.dir / BUNDLE_FILE
        pem = root.read_bytes().strip() + b"\n" + issuer.read_bytes().strip() + b"\n"
        if not path.exists() or path.read_bytes() != pem:
            atomic_write(path, pem, mode=0o644)
        return path
