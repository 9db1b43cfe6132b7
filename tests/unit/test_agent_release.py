"""Agent releases: version strings, reproducible bundles, the signed manifest the node
checks (tampered, wrong key, another bundle), the sha256 and code digest checks of the
installer, unsafe tarballs, and the operator API that publishes and targets releases.

Downloads use a small in-memory client; the real HTTPS path is in
tests/integration/test_agent_self_update.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import TypeAdapter, ValidationError

from attestation import envelope, pki
from attestation.measurement import code_digest
from controller.domain.agent_releases import inspect_bundle
from node_agent.image_store import ImageError, ImageStore
from node_agent.self_update.installer import install
from node_agent.self_update.manifest import ManifestRefused, verify_manifest
from node_agent.self_update.state import Paths
from protocol.agent_bundle import PACKAGES, BundleError, unpack
from protocol.agent_bundle import build as build_bundle
from protocol.desired_state import AgentManifest, AgentTarget, AgentVersion, NodeSettings

URL = "https://ctl/datastore/sha256/"
REPO = Path(__file__).parents[2]


@dataclass
class FakeResponse:
    data: bytes
    status_code: int = 200

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def iter_content(self, size: int):  # type: ignore[no-untyped-def]
        yield self.data


@dataclass
class FakeClient:
    blobs: dict[str, bytes]

    def download(self, url: str, dest: Path, offset: int) -> FakeResponse:
        return FakeResponse(self.blobs[url][offset:], 206 if offset else 200)


@pytest.fixture(scope="module")
def root() -> pki.Identity:
    return pki.make_ca("test root")


@pytest.fixture(scope="module")
def signer(root: pki.Identity) -> pki.Identity:
    return pki.issue_cert(root, "config signing", usage=ExtendedKeyUsageOID.CODE_SIGNING)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of the packages (the working tree may change while tests run)."""
    out = tmp_path_factory.mktemp("src")
    for package in PACKAGES:
        shutil.copytree(REPO / package, out / package, ignore=shutil.ignore_patterns("__pycache__"))
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Path:
    return build_bundle("1.2.3", tmp_path_factory.mktemp("rel") / "agent-1.2.3.tgz", source)


def _target(tarball: Path, signer: pki.Identity, **manifest_changes: object) -> AgentTarget:
    data = tarball.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    version, digest = inspect_bundle(tarball)
    body = AgentManifest(
        version=version, sha256=sha, size=len(data), code_digest=digest, created=1.0
    ).model_dump(mode="json")
    body.update(manifest_changes)
    return AgentTarget(
        version=version,
        image={"sha256": sha, "size": len(data), "url": URL + sha},
        manifest=envelope.seal(body, signer),
    )


# -- versions and bundles --------------------------------------------------------
@pytest.mark.parametrize("good", ["0.1.0", "10.20.30", "1.2.3-rc.1", "1.2.3-hotfix2"])
def test_release_versions_are_major_minor_patch_with_an_optional_tag(good: str):
    assert TypeAdapter(AgentVersion).validate_python(good) == good


@pytest.mark.parametrize(
    "bad", ["", "1.2", "v1.2.3", "1.2.3-", "1.2.3-RC", "1.2.3/../x", "1.2.3\n", "1" * 7 + ".0.0"]
)
def test_a_malformed_version_is_refused_by_the_schema_and_the_builder(bad: str, tmp_path: Path):
    with pytest.raises(ValidationError):
        TypeAdapter(AgentVersion).validate_python(bad)
    with pytest.raises(BundleError, match=r"MAJOR\.MINOR\.PATCH"):
        build_bundle(bad, tmp_path / "x.tgz")
    assert not (tmp_path / "x.tgz").exists()


def test_a_bundle_is_reproducible_and_declares_its_version(
    bundle: Path, source: Path, tmp_path: Path
):
    again = build_bundle("1.2.3", tmp_path / "again.tgz", source)
    assert again.read_bytes() == bundle.read_bytes()
    version, digest = inspect_bundle(bundle)
    assert version == "1.2.3"
    unpack(bundle, tmp_path / "u")
    assert digest == code_digest(tmp_path / "u" / p for p in PACKAGES)


def test_a_bundle_built_for_another_version_has_another_code_digest(
    bundle: Path, source: Path, tmp_path: Path
):
    other = build_bundle("1.2.4", tmp_path / "other.tgz", source)
    assert inspect_bundle(other)[1] != inspect_bundle(bundle)[1]


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil.py", "other/x.py", "node_agent/../../x"])
def test_a_tarball_with_a_path_outside_the_packages_is_refused(name: str, tmp_path: Path):
    evil = _tarball(tmp_path / "evil.tgz", {"node_agent/__init__.py": b"", name: b"x = 1\n"})
    with pytest.raises(BundleError):
        unpack(evil, tmp_path / "out")
    with pytest.raises(BundleError):
        inspect_bundle(evil)
    assert not (tmp_path / "evil.py").exists()


def test_a_tarball_with_a_symlink_is_refused(tmp_path: Path):
    path = tmp_path / "link.tgz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("node_agent/cli.py")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(BundleError, match="not a regular file"):
        unpack(path, tmp_path / "out")


# -- the manifest --------------------------------------------------------------
def test_a_manifest_signed_by_the_trusted_signer_is_accepted(bundle: Path, signer):  # type: ignore[no-untyped-def]
    target = _target(bundle, signer)
    manifest = verify_manifest(target, [signer.cert])
    assert (manifest.version, manifest.sha256) == ("1.2.3", target.image.sha256)


def test_a_tampered_manifest_is_refused(bundle: Path, signer):  # type: ignore[no-untyped-def]
    target = _target(bundle, signer)
    wire = target.manifest.model_dump()
    body = json.loads(base64.b64decode(wire["payload"]))
    body["body"]["code_digest"] = "0" * 64
    wire["payload"] = base64.b64encode(json.dumps(body).encode()).decode()
    forged = target.model_copy(update={"manifest": target.manifest.model_validate(wire)})
    with pytest.raises(ManifestRefused, match="signature"):
        verify_manifest(forged, [signer.cert])


def test_a_manifest_signed_by_another_key_is_refused(bundle: Path, signer):  # type: ignore[no-untyped-def]
    stranger = pki.issue_cert(
        pki.make_ca("another root"), "signing", usage=ExtendedKeyUsageOID.CODE_SIGNING
    )
    target = _target(bundle, stranger)
    with pytest.raises(ManifestRefused, match="unknown signer"):
        verify_manifest(target, [signer.cert])


def test_a_manifest_describing_another_bundle_is_refused(bundle: Path, signer):  # type: ignore[no-untyped-def]
    target = _target(bundle, signer, sha256="ab" * 32)
    with pytest.raises(ManifestRefused, match="sha256"):
        verify_manifest(target, [signer.cert])


def test_node_settings_refuse_an_agent_target_with_unknown_fields(bundle: Path, signer):  # type: ignore[no-untyped-def]
    target = _target(bundle, signer).model_dump(mode="json")
    target["image"]["format"] = "raw"
    with pytest.raises(ValidationError, match="format"):
        NodeSettings.model_validate({"agent": target})


# -- the installer ---------------------------------------------------------------
def _store(tmp_path: Path, blobs: dict[str, bytes]) -> ImageStore:
    return ImageStore(tmp_path / "downloads", FakeClient(blobs), 64 * 1024**2)  # type: ignore[arg-type]


def test_a_verified_release_is_installed_beside_the_running_one(
    bundle: Path, signer, tmp_path: Path
):  # type: ignore[no-untyped-def]
    target = _target(bundle, signer)
    paths = Paths(tmp_path / "agent")
    store = _store(tmp_path, {target.image.url: bundle.read_bytes()})
    installed = install(target, store, [signer.cert], paths)
    assert installed == paths.version_dir("1.2.3")
    assert (installed / "node_agent" / "cli.py").is_file()
    assert json.loads((installed / "manifest.json").read_text())["manifest"]["version"] == "1.2.3"
    assert [p.name for p in paths.versions.iterdir()] == ["1.2.3"]  # no temp dir left


def test_a_download_whose_sha256_differs_is_not_installed(bundle: Path, signer, tmp_path: Path):  # type: ignore[no-untyped-def]
    target = _target(bundle, signer)
    served = bytearray(bundle.read_bytes())
    served[-1] ^= 0xFF  # same size, other bytes
    paths = Paths(tmp_path / "agent")
    store = _store(tmp_path, {target.image.url: bytes(served)})
    with pytest.raises(ImageError, match="sha256"):
        install(target, store, [signer.cert], paths)
    assert not paths.version_dir("1.2.3").exists()


def test_a_bundle_whose_code_is_not_the_manifests_is_not_installed(
    bundle: Path, signer, tmp_path: Path
):  # type: ignore[no-untyped-def]
    target = _target(bundle, signer, code_digest="cd" * 32)
    paths = Paths(tmp_path / "agent")
    store = _store(tmp_path, {target.image.url: bundle.read_bytes()})
    with pytest.raises(BundleError, match="code digest"):
        install(target, store, [signer.cert], paths)
    assert not paths.version_dir("1.2.3").exists()
    assert [p.name for p in paths.versions.iterdir()] == []


def test_a_forged_manifest_downloads_nothing(bundle: Path, signer, tmp_path: Path):  # type: ignore[no-untyped-def]
    stranger = pki.issue_cert(pki.make_ca("x"), "s", usage=ExtendedKeyUsageOID.CODE_SIGNING)
    target = _target(bundle, stranger)
    store = _store(tmp_path, {})  # any download would raise KeyError
    with pytest.raises(ManifestRefused):
        install(target, store, [signer.cert], Paths(tmp_path / "agent"))
