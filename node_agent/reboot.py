"""The operator's reboot command: act once per increase of the config's reboot counter.

The counter acted on is recorded (atomically) BEFORE the reboot command runs, so the
node does not reboot again after coming back.  A counter seen for the first time is
the baseline.  Without a configured ``reboot_command`` the request is only logged.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

from attestation.files import atomic_write

__all__ = ["RebootCounter"]

log = logging.getLogger(__name__)


class RebootCounter:
    def __init__(self, state_dir: Path, command: Sequence[str]) -> None:
        self.path = state_dir / "reboot-counter.json"
        self.command = list(command)

    def _acted(self) -> int | None:
        try:
            return int(json.loads(self.path.read_text())["acted"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def check(self, counter: int) -> bool:
        """Reboot if ``counter`` rose since the last one acted on; True when it did."""
        acted = self._acted()
        if acted is not None and counter <= acted:
            return False
        atomic_write(self.path, json.dumps({"acted": counter}).encode(), mode=0o600)
        if acted is None:
            return False  # baseline
        if not self.command:
            log.warning(
                "reboot requested (counter %d); no reboot_command set: not rebooting", counter
            )
            return True
        log.warning("reboot requested (counter %d): running %s", counter, self.command)
        subprocess.run(self.command, check=False, timeout=60)
        return True
