"""Which OpenVINO device the app runs on, and why: the operator's preference against the
devices OpenVINO can see here (pure, so it is tested without a GPU).

``GPU`` (or ``GPU.0``…) is used only when OpenVINO lists a GPU (Intel graphics driver,
firmware and ``intel-opencl-icd`` in the image, and the GPU passed through to the VM);
otherwise the app falls back to the CPU and says why.  ``AUTO`` is kept when a GPU is there
(OpenVINO then prefers it) and becomes ``CPU`` without one, so the device in use is always
named plainly.  Any other device runs where asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DeviceChoice", "choose_device"]


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    """What to compile for."""
    reason: str
    """Why, in a short sentence (logged at start and reported as a label)."""
    fallback: bool = False
    """The preference could not be met: running on the CPU instead."""


def choose_device(wanted: str, available: Sequence[str]) -> DeviceChoice:
    """``wanted`` (the config's device) against OpenVINO's ``available_devices``."""
    gpus = [d for d in available if d.split(".")[0] == "GPU"]
    seen = ", ".join(available) or "none"
    if wanted.split(".")[0] == "GPU":
        if wanted in gpus or (wanted == "GPU" and gpus):
            return DeviceChoice(wanted, f"{wanted} as asked (OpenVINO sees {seen})")
        return DeviceChoice("CPU", f"no {wanted} (OpenVINO sees {seen}): falling back to CPU", True)
    if wanted == "AUTO":
        if gpus:
            return DeviceChoice("AUTO", f"AUTO with {', '.join(gpus)} present (prefers the GPU)")
        return DeviceChoice("CPU", f"AUTO without a GPU (OpenVINO sees {seen}): CPU")
    return DeviceChoice(wanted, f"{wanted} as asked")
