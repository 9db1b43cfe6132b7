"""Console logins and SSH keys: off unless the config enables debug access."""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

from node_agent.ports.debug_access import MARKER, ConsoleLogin, SshKeys

INITTAB = """\
::sysinit:/etc/init.d/rcS
ttyS0::respawn:/sbin/getty -L ttyS0 115200 vt100
tty1::askfirst:-/bin/sh
T1:23:respawn:/sbin/agetty -L ttyS1 9600 vt100
::shutdown:/bin/umount -a -r
"""


def _inittab_root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "inittab").write_text(INITTAB)
    return tmp_path


def test_inittab_gettys_and_console_shells_are_commented_out(tmp_path):
    reloads: list[int] = []
    console = ConsoleLogin(_inittab_root(tmp_path), reload_init=lambda: reloads.append(1))
    console.apply(False)
    text = (tmp_path / "etc" / "inittab").read_text()
    assert [ln for ln in text.splitlines() if ln.startswith(MARKER)] == [
        MARKER + "ttyS0::respawn:/sbin/getty -L ttyS0 115200 vt100",
        MARKER + "tty1::askfirst:-/bin/sh",
        MARKER + "T1:23:respawn:/sbin/agetty -L ttyS1 9600 vt100",
    ]
    assert "::sysinit:/etc/init.d/rcS\n" in text and reloads == [1]


def test_inittab_is_restored_when_debug_console_is_enabled(tmp_path):
    console = ConsoleLogin(_inittab_root(tmp_path), reload_init=lambda: None)
    console.apply(False)
    console.apply(True)
    assert (tmp_path / "etc" / "inittab").read_text() == INITTAB
    assert console.enabled


def test_the_same_setting_twice_does_nothing_the_second_time(tmp_path):
    reloads: list[int] = []
    console = ConsoleLogin(_inittab_root(tmp_path), reload_init=lambda: reloads.append(1))
    console.apply(False)
    console.apply(False)
    assert reloads == [1]


def test_systemd_getty_units_are_masked_and_stopped(tmp_path):
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)
    calls: list[Sequence[str]] = []
    console = ConsoleLogin(tmp_path, ttys=("ttyS0", "tty1"), run=calls.append)
    console.apply(False)
    assert console.method == "systemd"
    assert calls == [
        ["systemctl", "mask", "--now", "serial-getty@ttyS0.service", "getty@tty1.service"]
    ]


def test_systemd_getty_units_are_unmasked_and_started_for_debug(tmp_path):
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)
    calls: list[Sequence[str]] = []
    ConsoleLogin(tmp_path, ttys=("ttyS0",), run=calls.append).apply(True)
    assert calls == [
        ["systemctl", "unmask", "serial-getty@ttyS0.service"],
        ["systemctl", "start", "serial-getty@ttyS0.service"],
    ]


def test_a_failing_systemctl_is_reported_and_retried(tmp_path):
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)

    def fail(argv: Sequence[str]) -> None:
        raise OSError("systemctl: not found")

    console = ConsoleLogin(tmp_path, run=fail)
    console.apply(False)
    assert "systemctl: not found" in console.error and not console.enabled
    calls: list[Sequence[str]] = []
    console._run = calls.append
    console.apply(False)
    assert calls and console.error == ""


def test_no_getty_manager_is_reported_as_none(tmp_path):
    console = ConsoleLogin(tmp_path)
    console.apply(False)
    assert console.method == "none"


def test_ssh_keys_are_written_0600_only_while_debug_ssh_is_on(tmp_path):
    path = tmp_path / "ssh" / "authorized_keys"
    keys = SshKeys(path)
    keys.apply(True, ["ssh-ed25519 AAAA one", "ssh-ed25519 BBBB two"])
    assert path.read_text() == "ssh-ed25519 AAAA one\nssh-ed25519 BBBB two\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and keys.count == 2
    keys.apply(False, [])
    assert not path.exists() and keys.count == 0
