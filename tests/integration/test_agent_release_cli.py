"""`outpost agent-release build|upload|list|set` against a real HTTPS controller."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from outpost_cli.main import main
from protocol.agent_bundle import PACKAGES

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]


@pytest.fixture
def outpost(controller_server, capsys):  # type: ignore[no-untyped-def]
    def run(*args: str) -> tuple[int, str, str]:
        code = main(
            [
                "--url",
                controller_server.url,
                "--token",
                controller_server.token,
                "--ca",
                str(controller_server.root_ca),
                *args,
            ]
        )
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_a_release_is_built_uploaded_listed_and_assigned_from_the_cli(
    outpost, controller_server, tmp_path: Path, capsys
):  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    tarball = tmp_path / "agent.tgz"
    assert (
        main(["agent-release", "build", "4.0.0", "--out", str(tarball), "--source", str(source)])
        == 0
    )
    built = capsys.readouterr().out
    assert "version 4.0.0" in built and tarball.is_file()
    code, out, err = outpost("agent-release", "upload", str(tarball), "--version", "4.0.0")
    assert code == 0, err
    assert built.split("code digest ")[1].strip() in out  # the controller computed the same
    assert controller_server.api("POST", "/nodes/claim", json={"serial": "c1"}).ok
    code, out, err = outpost("agent-release", "set", "c1", "4.0.0")
    assert (code, out.strip()) == (0, "c1: agent release 4.0.0"), err
    code, out, _ = outpost("-o", "json", "agent-release", "list")
    assert [(r["version"], r["nodes"]) for r in json.loads(out)] == [("4.0.0", ["c1"])]


def test_uploading_a_release_twice_is_a_conflict_with_exit_code_1(outpost, tmp_path: Path):  # type: ignore[no-untyped-def]
    tarball = tmp_path / "agent.tgz"
    assert main(["agent-release", "build", "4.0.1", "--out", str(tarball)]) == 0
    assert outpost("agent-release", "upload", str(tarball), "--version", "4.0.1")[0] == 0
    code, _, err = outpost("agent-release", "upload", str(tarball), "--version", "4.0.1")
    assert code == 1 and "409" in err


def test_building_with_a_bad_version_is_a_usage_error(tmp_path: Path, capsys):  # type: ignore[no-untyped-def]
    assert main(["agent-release", "build", "4", "--out", str(tmp_path / "x.tgz")]) == 2
    assert "MAJOR.MINOR.PATCH" in capsys.readouterr().err
