"""libvirt for the lab: the daemon the agents use, and the domains of the lab's nodes.

Process-node agents keep a VM runtime on ``qemu:///system`` even when only containers are
deployed (the agent lists both runtimes every pass), so ``up`` makes sure the system
daemons answer, starting ``virtlogd -d`` and ``libvirtd -d`` when they do not (there is no
systemd here).  The lab never stops them: other users of the host may rely on them.
Domains are matched by the node uuid in their Outpost metadata element, or by a file under
the lab dir in their XML (a node whose uuid the lab never learnt).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Collection
from pathlib import Path
from typing import Any

from lab.errors import LabError

__all__ = ["domains_of", "ensure_daemon", "remove_domains"]

SYSTEM_URI = "qemu:///system"
OUTPOST_NS = "https://outpost.dev/xmlns/app/1"  # the agent's <outpost:app> metadata element
_SOCKETS = (("virtlogd", Path("/run/libvirt/virtlogd-sock")),
            ("libvirtd", Path("/run/libvirt/libvirt-sock")))  # fmt: skip


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def ensure_daemon(uri: str) -> None:
    """Start the system virtlogd/libvirtd if ``uri`` is the system one and they are down."""
    if uri != SYSTEM_URI:
        return
    for binary, sock in _SOCKETS:
        if _answers(sock):
            continue
        path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
        if path is None:
            raise LabError(f"{binary} is not installed (Debian libvirt-daemon-system)")
        out = subprocess.run([path, "-d"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise LabError(f"{binary} -d failed: {out.stderr.strip()}")
        deadline = time.monotonic() + 60
        while not _answers(sock):
            if time.monotonic() > deadline:
                raise LabError(f"{binary} started but {sock} does not answer")
            time.sleep(0.1)


def _node_uuid(dom: Any) -> str:
    import libvirt

    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, OUTPOST_NS, 0)
    except libvirt.libvirtError:
        return ""
    with contextlib.suppress(ET.ParseError):
        return ET.fromstring(text).attrib.get("node-uuid", "")
    return ""


def _open(uri: str) -> Any:
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)  # errors are raised, not printed
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LabError(f"cannot connect to libvirt at {uri}: {exc}") from exc


def _belongs(dom: object, node_uuids: Collection[str], lab_dir: Path | None) -> bool:
    """The domain's Outpost metadata names a lab node, or its XML a file in the lab dir."""
    import libvirt

    if _node_uuid(dom) in node_uuids:
        return True
    if lab_dir is None:
        return False
    try:
        xml = dom.XMLDesc(0)  # type: ignore[attr-defined]
    except libvirt.libvirtError:
        return False
    root = str(lab_dir.resolve())
    return f"'{root}/" in xml or f'"{root}/' in xml or f">{root}/" in xml


def domains_of(uri: str, node_uuids: Collection[str], lab_dir: Path | None = None) -> list[str]:
    """Names of the domains (running or defined) belonging to ``node_uuids`` (or naming a
    file under ``lab_dir``)."""
    if not node_uuids and lab_dir is None:
        return []
    conn = _open(uri)
    try:
        return [d.name() for d in conn.listAllDomains(0) if _belongs(d, node_uuids, lab_dir)]
    finally:
        conn.close()


def remove_domains(uri: str, node_uuids: Collection[str], lab_dir: Path | None = None) -> list[str]:
    """Destroy and undefine the domains :func:`domains_of` finds; their names."""
    import libvirt

    if not node_uuids and lab_dir is None:
        return []
    conn = _open(uri)
    removed = []
    try:
        for dom in conn.listAllDomains(0):
            if not _belongs(dom, node_uuids, lab_dir):
                continue
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
                removed.append(dom.name())
    finally:
        conn.close()
    return removed
