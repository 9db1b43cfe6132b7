"""busybox-oci.tar loads into podman (a private vfs store) and runs a command."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from images.manifest import ImageArtifact
from tests.fixtures.images import BUSYBOX_REF

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("podman") is None or shutil.which("runc") is None,
        reason="podman/runc missing (Debian packages podman, runc)",
    ),
]

RUN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@pytest.fixture
def store() -> Iterator[Path]:
    """A private podman store; short path: podman rejects a runroot longer than 50 chars."""
    with tempfile.TemporaryDirectory(prefix="outpost-podman-") as directory:
        yield Path(directory)


def _podman(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["podman", "--root", str(store / "root"), "--runroot", str(store / "run")]
    command += ["--storage-driver", "vfs", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_busybox_image_loads_and_runs_echo(busybox_image: ImageArtifact, store: Path) -> None:
    loaded = _podman(store, "load", "-i", str(busybox_image.path))
    assert loaded.returncode == 0, loaded.stderr
    assert BUSYBOX_REF in loaded.stdout
    run = _podman(store, "run", "--rm", *RUN_FLAGS, "--network", "none", BUSYBOX_REF, "echo", "hi")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "hi\n"
