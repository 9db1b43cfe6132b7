"""The inference app's typed configuration (inference_vm.config)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from inference_vm.config import load_config


def test_file_values_are_overridden_by_dotted_keys(tmp_path: Path) -> None:
    path = tmp_path / "inference.yaml"
    path.write_text("detector: {kind: haar, mode: face}\nserver: {port: 9000}\n")
    config = load_config(path, {"detector.mode": "eyes", "server.host": None})
    assert (config.detector.kind, config.detector.mode, config.server.port) == (
        "haar",
        "eyes",
        9000,
    )
    assert config.server.host == "127.0.0.1"


def test_unknown_fields_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "inference.json"
    path.write_text('{"detector": {"knd": "haar"}}')
    with pytest.raises(ValidationError, match="knd"):
        load_config(path)


def test_reconnect_max_below_initial_is_refused() -> None:
    with pytest.raises(ValidationError, match="reconnect_max_s"):
        load_config(None, {"source.reconnect_initial_s": 5, "source.reconnect_max_s": 1})
