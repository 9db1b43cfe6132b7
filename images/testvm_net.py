"""Recipe of ``testvm-net``: the test VM with a virtio NIC, DHCP and a small HTTP server.

Same kernel and busybox as :mod:`images.testvm`, plus the virtio PCI/net modules. Its /init
loads them, asks for an address with ``udhcpc`` on ``eth0`` (prints :data:`NET_MARKER`
``ip=A/P router=R`` on the console when it has one), and serves ``/www`` with busybox
``httpd`` on port 80:

- ``GET /`` → :data:`HTTP_MARKER` and the hostname;
- ``GET /cgi-bin/ping?IP`` → ``PING-OK IP`` or ``PING-FAIL IP`` (the VM pings IP);
- ``GET /cgi-bin/fetch?IP:PORT`` → the body of ``http://IP:PORT/`` or ``FETCH-FAIL``.

So a test on the host can check both directions between the VM and a peer over HTTP alone.
Like testvm it idles with a heartbeat and powers off on the ACPI power button.

Built apart from ``build_all`` (which owns ``manifest.json`` and ``stamp.json``): call
:func:`build_testvm_net`, which caches by its own stamp file next to the output.
"""

from __future__ import annotations

from pathlib import Path

from images import busybox, debian, fstree, initramfs, kernel_bundle, testvm
from images.common import gzip_deterministic

__all__ = ["FILE", "HTTP_MARKER", "NAME", "NET_MARKER", "build_bundle", "kernel_files"]


NAME = "testvm-net"
FILE = "testvm-net.tar"
NET_MARKER = "OUTPOST-TESTVM-NET"
HTTP_MARKER = "OUTPOST-TESTVM-HTTP"
# Load order: each module after those it depends on (read from their modinfo).
# (busybox 1.35's `wget -T` segfaults: the CGI uses `timeout 5 wget` instead.)
NET_MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
)
SOURCES = ("testvm_net.py", *testvm.SOURCES)

INIT = f"""#!/bin/sh
# Outpost networked test VM init: NIC up by DHCP, httpd on :80, heartbeat.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
exec </dev/console >/dev/console 2>&1
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
hostname outpost-testvm-net
echo "{testvm.MARKER}"
case " $(cat /proc/cmdline) " in
*" {testvm.POWEROFF_ARG} "*) poweroff -f ;;
esac
for name in {" ".join(Path(m).stem for m in NET_MODULES)} button evdev; do
    insmod "/lib/modules/outpost/$name.ko" 2>/dev/null
done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /etc/udhcpc.script -b -t 30 -T 1 -A 1 -x hostname:outpost-testvm-net
httpd -p 80 -h /www
mkdir -p /var/run
acpid -f -l /dev/null &
beat=0
while :; do
    sleep 30
    beat=$((beat + 1))
    echo "{testvm.HEARTBEAT} $beat uptime=$(cut -d' ' -f1 /proc/uptime)"
done
"""

UDHCPC_SCRIPT = f"""#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface" ;;
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${{router%% *}}" dev "$interface"
    : >/etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
    echo "{NET_MARKER} ip=$ip/$mask router=$router" >/dev/console
    ;;
esac
"""

CGI_PING = """#!/bin/sh
echo "Content-Type: text/plain"
echo
case "$QUERY_STRING" in ""|*[!0-9.]*) echo "BAD-TARGET"; exit 0 ;; esac
if ping -c 1 -W 2 "$QUERY_STRING" >/dev/null 2>&1; then
    echo "PING-OK $QUERY_STRING"
else
    echo "PING-FAIL $QUERY_STRING"
fi
"""

CGI_FETCH = """#!/bin/sh
echo "Content-Type: text/plain"
echo
case "$QUERY_STRING" in ""|*[!0-9.:]*) echo "BAD-TARGET"; exit 0 ;; esac
timeout 5 wget -q -O - "http://$QUERY_STRING/" 2>/dev/null || echo "FETCH-FAIL $QUERY_STRING"
"""


def _initramfs(box: bytes, modules: dict[str, bytes]) -> bytes:
    entries = [
        e for e in testvm.initramfs_tree(box, modules) if e.path not in ("init", "etc/udhcpc")
    ]
    entries += [
        fstree.file("init", INIT.encode(), 0o755),
        fstree.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755),
        fstree.directory("www"),
        fstree.directory("www/cgi-bin"),
        fstree.file("www/index.html", f"{HTTP_MARKER} outpost-testvm-net\n".encode()),
        fstree.file("www/cgi-bin/ping", CGI_PING.encode(), 0o755),
        fstree.file("www/cgi-bin/fetch", CGI_FETCH.encode(), 0o755),
    ]
    return gzip_deterministic(initramfs.write_newc(entries))


def kernel_files(package: debian.DebPackage, cache_dir: Path) -> testvm.KernelFiles:
    """testvm's kernel files plus :data:`NET_MODULES`."""
    return testvm.kernel_files(package, cache_dir, NET_MODULES)


def build_bundle(kernel: testvm.KernelFiles, box: busybox.Busybox) -> bytes:
    """The testvm-net kernel-bundle tar (deterministic)."""
    initrd = _initramfs(box.data, kernel.modules)
    bundle = kernel_bundle.KernelBundle(
        kernel=kernel.vmlinuz, initrd=initrd, cmdline=testvm.CMDLINE
    )
    return kernel_bundle.pack(bundle)
