"""The operator CLI is light: installing and running it needs no part of the server."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("flask", "werkzeug", "sqlalchemy", "alembic", "libvirt", "tpm2_pytss", "psycopg")
OURS = ("controller", "node_agent")

# Runs the CLI's entry point as the console script does, then lists every module loaded.
PROBE = """
import json, sys
from outpost_cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_loaded(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_help_loads_nothing_of_the_server() -> None:
    loaded = _top(_modules_loaded("--help"))
    assert not loaded & {*HEAVY, *OURS}


def test_every_command_help_loads_nothing_of_the_server() -> None:
    loaded: set[str] = set()
    for command in ("get", "apply", "rollout", "agent-release", "trust", "git"):
        loaded |= _top(_modules_loaded(command, "--help"))
    assert not loaded & {*HEAVY, *OURS}


def test_the_base_install_is_only_what_the_cli_needs() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {
        dep.split(">")[0].split("<")[0].split("[")[0].strip() for dep in project["dependencies"]
    }
    # websockets: the remote sessions' client (console, exec, port-forward); pure Python
    assert names == {"pyyaml", "pydantic", "websockets"}  # HTTP: the standard library
    assert project["scripts"]["outpost"] == "outpost_cli.main:main"
