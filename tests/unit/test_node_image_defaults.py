"""The node image's defaults, as built by images/node_rootfs.py and node_image.py: no way in
unless the config opens one (the image build itself is in tests/integration)."""

from __future__ import annotations

import pytest

from images import node_rootfs
from images.common import ImageBuildError
from images.node_image import agent_settings
from node_agent.settings import AgentSettings


def test_the_node_image_agent_config_turns_the_port_lockdown_on():
    settings = AgentSettings.model_validate(agent_settings("sn-1"))
    assert settings.ports is not None
    assert settings.ports.usb_sysfs_root is not None and settings.ports.console_root is not None
    assert settings.ports.ssh_service == node_rootfs.SSH_UNIT  # sshd only for debug SSH


def test_a_lab_may_turn_the_lockdown_off_explicitly():
    assert AgentSettings.model_validate(agent_settings("sn-1", ports=None)).ports is None


def test_sshd_is_not_enabled_at_boot_and_no_console_login_is_offered():
    assert node_rootfs.SSH_UNIT not in node_rootfs.ENABLED
    assert {"getty.target", "serial-getty@ttyS0.service"} <= set(node_rootfs.MASKED)


def test_the_agent_unit_prints_the_identity_on_the_console_before_the_agent_runs():
    unit = node_rootfs.AGENT_UNIT
    pre = unit.index("identity\n")
    assert "ExecStartPre=-/usr/local/bin/outpost-agent" in unit and pre < unit.index("ExecStart=")
    assert "StandardOutput=journal+console" in unit


def test_an_unknown_variant_is_refused(tmp_path):
    with pytest.raises(ImageBuildError, match="unknown node image variant"):
        node_rootfs.configure(tmp_path, "debug")
