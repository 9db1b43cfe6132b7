"""The inference app definitions (inference_vm/apps/*.yaml) are valid operator API bodies."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.api.operator.apps import AppBody

APPS = Path(__file__).resolve().parents[2] / "inference_vm" / "apps"


@pytest.mark.parametrize("name", ["inference-vm-gpu", "inference-vm-cpu", "inference-container"])
def test_app_definition_is_a_valid_app_body(name: str) -> None:
    body = AppBody.model_validate(yaml.safe_load((APPS / f"{name}.yaml").read_text()))
    assert body.name == name


def test_gpu_variant_asks_for_a_gpu_adapter_and_the_cpu_variant_for_none() -> None:
    gpu = AppBody.model_validate(yaml.safe_load((APPS / "inference-vm-gpu.yaml").read_text()))
    cpu = AppBody.model_validate(yaml.safe_load((APPS / "inference-vm-cpu.yaml").read_text()))
    assert [a.kind for a in gpu.adapters] == ["gpu"] and cpu.adapters == []
    assert (gpu.image, cpu.image) == ("inference-vm-gpu", "inference-vm")
    assert gpu.kind == cpu.kind == "vm"
    assert gpu.user_data is not None and "device: GPU" in gpu.user_data


def test_the_gpu_variant_falls_back_to_cpu_on_nodes_without_that_gpu() -> None:
    gpu = AppBody.model_validate(yaml.safe_load((APPS / "inference-vm-gpu.yaml").read_text()))
    assert all(a.optional for a in gpu.adapters)
