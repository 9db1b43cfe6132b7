"""The agent's ``tpm`` setting, parsed (pure: no TSS needed to validate settings).

"none"                              no TPM: file device key, software measurements
"auto"                              /dev/tpmrm0 when present, else none
"device:/dev/tpmrm0"                the kernel's resource-managed TPM
"swtpm:host=127.0.0.1,port=P"       swtpm (its control port MUST be P+1)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["DEFAULT_DEVICE", "TpmSetting", "parse_tpm_setting"]

DEFAULT_DEVICE = "/dev/tpmrm0"


@dataclass(frozen=True)
class TpmSetting:
    """A parsed ``tpm`` setting: ``kind`` is none | swtpm | device; ``tcti`` for the TSS."""

    kind: str
    tcti: str = ""


def parse_tpm_setting(value: str) -> TpmSetting:
    """Parse the agent's ``tpm`` setting; raises ValueError with the accepted forms."""
    value = value.strip()
    if value == "none":
        return TpmSetting("none")
    if value == "auto":
        exists = os.path.exists(DEFAULT_DEVICE)
        return TpmSetting("device", f"device:{DEFAULT_DEVICE}") if exists else TpmSetting("none")
    if value.startswith("device:") and value[len("device:") :].startswith("/dev/"):
        return TpmSetting("device", value)
    if value.startswith("swtpm:"):
        conf = dict(p.split("=", 1) for p in value[len("swtpm:") :].split(",") if "=" in p)
        if set(conf) <= {"host", "port"} and conf.get("port", "2321").isdigit():
            return TpmSetting("swtpm", value)
    raise ValueError(
        f"tpm setting {value!r}: expected none, auto, device:/dev/tpmrmN or swtpm:host=H,port=P"
    )
