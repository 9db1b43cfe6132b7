"""The HAProxy config rendered from deploy/haproxy.cfg.template is one HAProxy accepts,
with TLS or plain HTTP to the replicas as asked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.render_haproxy import HaproxyConfig, render
from tests.fixtures.haproxy import issue_lb_cert


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    from controller.store.pki import create_pki

    create_pki(tmp_path / "pki", ("localhost", "127.0.0.1"))
    return tmp_path / "pki"


def _cfg(tmp_path: Path, pki_dir: Path, scheme: str) -> HaproxyConfig:
    return HaproxyConfig(
        bind="127.0.0.1:8443",
        cert=issue_lb_cert(pki_dir, tmp_path / "lb.pem"),
        servers=["127.0.0.1:8081", "127.0.0.1:8082"],
        stats_socket=tmp_path / "admin.sock",
        backend_scheme=scheme,  # type: ignore[arg-type]
        ca_file=pki_dir / "root-ca.pem",
        log_target="stdout format raw",
    )


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_haproxy_accepts_the_rendered_config(tmp_path: Path, pki_dir: Path, scheme: str) -> None:
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is missing: run scripts/setup.sh")
    path = tmp_path / "haproxy.cfg"
    path.write_text(render(_cfg(tmp_path, pki_dir, scheme)))
    check = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_https_backends_are_verified_against_the_controller_root(
    tmp_path: Path, pki_dir: Path
) -> None:
    text = render(_cfg(tmp_path, pki_dir, "https"))
    assert "server controller1 127.0.0.1:8081" in text
    assert "server controller2 127.0.0.1:8082" in text
    assert "ssl check-ssl verify required" in text
    assert f"ca-file {pki_dir / 'root-ca.pem'}" in text


def test_http_backends_get_no_tls_options(tmp_path: Path, pki_dir: Path) -> None:
    backend = render(_cfg(tmp_path, pki_dir, "http")).split("backend outpost_controllers")[1]
    assert "ssl" not in backend


def test_long_polls_outlast_the_timeouts_that_could_cut_them(tmp_path: Path, pki_dir: Path) -> None:
    text = render(_cfg(tmp_path, pki_dir, "https"))
    assert "timeout server 130s" in text and "timeout client 130s" in text  # wait_s <= 120


def test_https_backends_without_the_root_are_refused(tmp_path: Path) -> None:
    cfg = HaproxyConfig(bind=":443", cert=tmp_path / "c.pem", servers=["a:1"], ca_file=None)
    with pytest.raises(ValueError):
        render(cfg)
    with pytest.raises(ValueError):
        render(HaproxyConfig(bind=":443", cert=tmp_path / "c.pem", servers=[]))
