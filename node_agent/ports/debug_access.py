"""Debug access: console logins and SSH keys, off unless the config turns them on.

:class:`ConsoleLogin` disables (or re-enables) the login prompts (gettys) on the serial and
virtual consoles, with whatever manages them under ``root``:

- systemd (``<root>/run/systemd/system`` exists): ``systemctl mask --now`` the getty units,
  ``unmask`` + ``start`` to enable;
- an inittab (``<root>/etc/inittab``, sysvinit or busybox init): getty and
  console-shell lines are commented out with a marker (and restored), then init is told to
  re-read it (``kill -HUP 1``);
- neither: nothing to manage, reported as such.

:class:`SshKeys` writes the configured authorized_keys file when debug SSH is on and removes
it when off (only when the node's settings name such a file). :class:`SshDaemon` starts the
SSH daemon's systemd unit while debug SSH is on and stops it otherwise (when the node's
settings name the unit: the node image ships sshd disabled). The SSH port itself is opened
or closed by the firewall.

Both act only when the wanted value changes, so calling them every pass is cheap.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from attestation.files import atomic_write

__all__ = ["ConsoleLogin", "SshDaemon", "SshKeys"]

log = logging.getLogger(__name__)

MARKER = "#outpost-disabled# "
_GETTY = re.compile(r"\b(a|min)?getty\b")
_SHELL = re.compile(r"^-?/bin/(ba|a)?sh\b")
_LOGIN_ACTIONS = {"respawn", "askfirst", "once", "wait"}
Runner = Callable[[Sequence[str]], None]


def _run(argv: Sequence[str]) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, timeout=60)


def _hup_init() -> None:
    os.kill(1, signal.SIGHUP)


def _is_login(line: str) -> bool:
    """An inittab entry that gives a login prompt or a shell (``id:runlevels:action:process``)."""
    fields = line.split(":", 3)
    if line.startswith("#") or len(fields) != 4 or fields[2] not in _LOGIN_ACTIONS:
        return False
    process = fields[3].strip()
    return bool(_GETTY.search(process) or _SHELL.match(process))


class ConsoleLogin:
    """Console login prompts on or off (see the module docstring)."""

    def __init__(
        self,
        root: Path = Path("/"),
        ttys: Sequence[str] = ("ttyS0", "ttyS1", "hvc0", "tty1"),
        run: Runner = _run,
        reload_init: Callable[[], None] = _hup_init,
    ) -> None:
        self.root = Path(root)
        self.ttys = tuple(ttys)
        self._run = run
        self._reload_init = reload_init
        self._applied: bool | None = None
        self.method = self._detect()
        self.error = ""

    def _detect(self) -> str:
        if (self.root / "run" / "systemd" / "system").is_dir():
            return "systemd"
        if (self.root / "etc" / "inittab").is_file():
            return "inittab"
        return "none"

    def _units(self) -> list[str]:
        return [
            f"getty@{t}.service"
            if t.startswith("tty") and t[3:].isdigit()
            else f"serial-getty@{t}.service"
            for t in self.ttys
        ]

    def apply(self, enabled: bool) -> None:
        """Enable or disable console logins (no-op when already in that state)."""
        if self._applied == enabled:
            return
        try:
            if self.method == "systemd":
                self._systemd(enabled)
            elif self.method == "inittab":
                self._inittab(enabled)
        except (OSError, subprocess.SubprocessError) as exc:
            self.error = f"console login {'enable' if enabled else 'disable'} failed: {exc}"
            log.error("%s", self.error)
            return
        self.error = ""
        self._applied = enabled
        log.info("console login %s (%s)", "enabled" if enabled else "disabled", self.method)

    def _systemd(self, enabled: bool) -> None:
        units = self._units()
        if enabled:
            self._run(["systemctl", "unmask", *units])
            self._run(["systemctl", "start", *units])
        else:
            self._run(["systemctl", "mask", "--now", *units])

    def _inittab(self, enabled: bool) -> None:
        path = self.root / "etc" / "inittab"
        lines = path.read_text().splitlines(keepends=True)
        out = []
        for line in lines:
            if enabled and line.startswith(MARKER):
                out.append(line[len(MARKER) :])
            elif not enabled and _is_login(line):
                out.append(MARKER + line)
            else:
                out.append(line)
        if out != lines:
            atomic_write(path, "".join(out).encode(), 0o644)
            self._reload_init()

    @property
    def enabled(self) -> bool:
        return bool(self._applied)


class SshKeys:
    """The debug authorized_keys file: written when SSH is on, removed when off."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.count = 0
        self.error = ""

    def apply(self, enabled: bool, keys: Sequence[str]) -> None:
        self.count = len(keys) if enabled else 0
        if self.path is None:
            return
        try:
            if enabled and keys:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                text = "".join(k.strip() + "\n" for k in keys)
                if not self.path.exists() or self.path.read_text() != text:
                    atomic_write(self.path, text.encode(), 0o600)
            else:
                self.path.unlink(missing_ok=True)
            self.error = ""
        except OSError as exc:
            self.error = f"{self.path}: {exc}"
            log.error("ssh keys: %s", self.error)


class SshDaemon:
    """The SSH daemon's systemd unit: started while debug SSH is on, stopped otherwise."""

    def __init__(self, unit: str | None = None, run: Runner = _run) -> None:
        self.unit = unit
        self._run = run
        self._applied: bool | None = None
        self.error = ""

    def apply(self, enabled: bool) -> None:
        """Start or stop the unit (no-op without a unit or when already in that state)."""
        if self.unit is None or self._applied == enabled:
            return
        try:
            self._run(["systemctl", "start" if enabled else "stop", self.unit])
        except (OSError, subprocess.SubprocessError) as exc:
            self.error = f"{self.unit} {'start' if enabled else 'stop'} failed: {exc}"
            log.error("%s", self.error)
            return
        self.error = ""
        self._applied = enabled
        log.info("%s %s", self.unit, "started (debug SSH)" if enabled else "stopped")

    @property
    def running(self) -> bool:
        return bool(self._applied)
