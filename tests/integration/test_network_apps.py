"""A VM and containers on app networks, through the real reconciler, libvirt and podman.

One node namespace (with its own libvirtd, so VM taps land on its bridges) and one outside
namespace; the reconciler with ``NodePorts`` as its network hook runs:

- ``vm-a`` (testvm-net: DHCP, httpd with ping/fetch CGIs) on ``site-a``, port 8081 → 80;
- ``web-a`` (busybox httpd container) on ``site-a``, port 8080 → 80;
- ``web-b`` (busybox httpd container) on ``site-b``, no port.

``vm-a`` and ``web-a`` have user-data (the VM gets a NoCloud seed disk, the container
``/run/outpost`` files); every app reaches the metadata service (169.254.169.254) of its
own network only.

Built once for the module (a VM boot under TCG takes seconds); the tests then look at it,
the last one changes the config.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from images.testvm_net import HTTP_MARKER, NET_MARKER
from node_agent.image_store import ImageStore
from node_agent.metadata.seed import SEED_FILE, read_seed
from node_agent.network import NetworkSettings
from node_agent.ports import NodePorts, PortsSettings
from node_agent.reconciler import Reconciler
from node_agent.runtime.podman_args import container_name
from node_agent.runtime.vm import LibvirtRuntime
from node_agent.runtime.vm_policy import domain_name
from protocol.desired_state import DesiredState
from protocol.messages import AppState
from tests.fixtures.netns import (
    NodeSite,
    app_doc,
    desired_doc,
    http_get,
    libvirtd_in,
    make_site,
    namespaces,
    tcp_scan,
    wait_for,
)
from tests.fixtures.podman_engine import PodmanEngine

USER_DATA = {"vm-a": "#cloud-config\ngreeting: hello-vm-a\n", "web-a": "mode: face\n"}
MD = "http://169.254.169.254"
HTTPD = "mkdir -p /www && echo {text} >/www/index.html && exec httpd -f -p 80 -h /www"


@dataclass
class Site:
    ns: NodeSite
    node_uuid: str
    reconciler: Reconciler
    ports: NodePorts
    engine: PodmanEngine
    work: Path
    vm_sha: str
    box_sha: str
    box_size: int
    vm_size: int
    libvirt_uri: str

    def doc(self, generation: int, ports: bool = True) -> DesiredState:
        def mapped(host: int) -> list[dict[str, int]]:
            return [{"host": host, "guest": 80}] if ports else []

        vm = {"sha256": self.vm_sha, "size": self.vm_size}
        box = {"sha256": self.box_sha, "size": self.box_size}
        return DesiredState.model_validate(
            desired_doc(
                self.node_uuid,
                generation,
                networks=[
                    {"name": "site-a", "subnet": "10.71.0.0/24"},
                    {"name": "site-b", "subnet": "10.72.0.0/24"},
                ],
                apps=[
                    app_doc(
                        "vm-a",
                        "vm",
                        [{"name": "site-a", "ports": mapped(8081)}],
                        user_data=USER_DATA["vm-a"],
                        **vm,
                    ),
                    app_doc(
                        "web-a",
                        networks=[{"name": "site-a", "ports": mapped(8080)}],
                        command=["sh", "-c", HTTPD.format(text="CONTAINER-A")],
                        user_data=USER_DATA["web-a"],
                        user_data_secret=True,
                        **box,
                    ),
                    app_doc(
                        "web-b",
                        networks=[{"name": "site-b"}],
                        command=["sh", "-c", HTTPD.format(text="CONTAINER-B")],
                        **box,
                    ),
                ],
            )
        )

    def app(self, name: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.outpost.test"))

    def ip(self, name: str) -> str:
        return self.ports.workload_networks(self.app(name)).attachments[0].ip

    def in_container(self, name: str, *argv: str) -> str:
        cname = container_name(self.node_uuid, self.app(name))
        proc = self.engine.run("exec", cname, "timeout", "10", *argv, check=False)
        return proc.stdout + proc.stderr

    def console(self) -> str:
        path = self.work / "apps" / self.app("vm-a") / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _seed(store: ImageStore, path: Path, sha: str) -> None:
    shutil.copyfile(path, store.path(sha))


@pytest.fixture(scope="module")
def site(
    podman_engine: PodmanEngine,
    hypervisor_accel: str,
    libvirt_cache_dir: Path,
    built_images,  # type: ignore[no-untyped-def]
) -> Iterator[Site]:
    vm_image = built_images.get("testvm-net")
    box_image = built_images.get("busybox")
    with namespaces() as make:
        ns = make_site(make)
        with libvirtd_in(ns.node, libvirt_cache_dir) as daemon:
            node_uuid = str(uuid.uuid4())
            work = Path(tempfile.mkdtemp(prefix="outpost-netapps-", dir="/tmp"))
            work.chmod(0o755)
            store = ImageStore(work / "images", client=None, max_bytes=1 << 30)  # type: ignore[arg-type]
            _seed(store, vm_image.path, vm_image.sha256)
            _seed(store, box_image.path, box_image.sha256)
            ports = NodePorts(
                PortsSettings(
                    network=NetworkSettings(state_dir=work / "net", netns=ns.node),
                    usb_sysfs_root=None,
                    console_root=None,
                ),
                node_uuid,
            )
            runtimes = {
                "vm": LibvirtRuntime(daemon.uri, node_uuid, hypervisor_accel, remove_timeout_s=5),
                "container": podman_engine.runtime(node_uuid),
            }
            rec = Reconciler(node_uuid, store, runtimes, work / "apps", network=ports)  # type: ignore[arg-type]
            s = Site(
                ns,
                node_uuid,
                rec,
                ports,
                podman_engine,
                work,
                vm_image.sha256,
                box_image.sha256,
                box_image.size,
                vm_image.size,
                daemon.uri,
            )
            try:
                statuses = rec.reconcile(s.doc(1))
                assert {st.name: st.state for st in statuses} == dict.fromkeys(
                    ("vm-a", "web-a", "web-b"), AppState.RUNNING
                ), statuses
                wait_for(lambda: NET_MARKER in s.console(), 120, "the VM's DHCP lease")
                wait_for(
                    lambda: HTTP_MARKER in http_get(ns.node, f"http://{s.ip('vm-a')}/", 3),
                    60,
                    "the VM's httpd",
                )
                yield s
            finally:
                rec.reconcile(DesiredState(node_uuid=node_uuid, generation=99))
                ports.teardown()
                podman_engine.remove_node(node_uuid)
                shutil.rmtree(work, ignore_errors=True)


def test_the_vm_gets_its_planned_address_by_dhcp(site):
    assert f"{NET_MARKER} ip={site.ip('vm-a')}/24" in site.console()


def test_a_container_reaches_the_vm_on_their_network(site):
    assert HTTP_MARKER in site.in_container(
        "web-a", "wget", "-q", "-O", "-", f"http://{site.ip('vm-a')}/"
    )


def test_the_vm_pings_the_container_on_their_network(site):
    url = f"http://{site.ip('vm-a')}/cgi-bin/ping?{site.ip('web-a')}"
    assert f"PING-OK {site.ip('web-a')}" in site.in_container("web-a", "wget", "-q", "-O", "-", url)


def test_the_vm_fetches_from_the_container_over_tcp(site):
    url = f"http://{site.ip('vm-a')}/cgi-bin/fetch?{site.ip('web-a')}:80"
    assert "CONTAINER-A" in http_get(site.ns.node, url, 15)


def test_a_container_on_the_second_network_cannot_reach_the_first(site):
    out = site.in_container("web-b", "wget", "-q", "-O", "-", f"http://{site.ip('vm-a')}/")
    assert HTTP_MARKER not in out
    assert "CONTAINER-A" not in site.in_container(
        "web-b", "wget", "-q", "-O", "-", f"http://{site.ip('web-a')}/"
    )


def test_the_vm_cannot_reach_the_second_network(site):
    url = f"http://{site.ip('vm-a')}/cgi-bin/ping?{site.ip('web-b')}"
    assert f"PING-FAIL {site.ip('web-b')}" in http_get(site.ns.node, url, 15)


def test_a_port_map_reaches_the_container_from_outside(site):
    assert "CONTAINER-A" in http_get(site.ns.outside, f"http://{site.ns.node_ip}:8080/")


def test_a_port_map_reaches_the_vm_from_outside(site):
    assert HTTP_MARKER in http_get(site.ns.outside, f"http://{site.ns.node_ip}:8081/")


def test_an_outside_scan_finds_only_the_mapped_ports_open(site):
    ports = [*range(1, 1025), 8080, 8081, 8443, 9090]
    scan = tcp_scan(site.ns.outside, site.ns.node_ip, ports)
    opened = sorted(p for p, state in scan.items() if state == "open")
    print(f"\nscan of {len(ports)} ports: open={opened}", end=" ")
    assert opened == [8080, 8081]


def test_the_port_state_lists_the_open_ports_and_networks(site):
    state = site.ports.state()
    assert state.firewall.enforced and state.firewall.generation == 1
    assert [(p.port, p.purpose) for p in state.open_ports] == [
        (8080, "app web-a"),
        (8081, "app vm-a"),
    ]
    assert {n.name: n.apps for n in state.networks} == {
        "site-a": ["vm-a", "web-a"],
        "site-b": ["web-b"],
    }


def test_the_vm_boots_with_its_nocloud_seed_disk(site):
    seed = site.work / "apps" / site.app("vm-a") / SEED_FILE
    label, files = read_seed(seed)
    assert label == "cidata"
    assert files["user-data"] == USER_DATA["vm-a"].encode()
    meta = json.loads(files["meta-data"])
    assert (meta["instance-id"], meta["local-hostname"]) == (site.app("vm-a"), "vm-a")
    assert meta["interfaces"][0]["ip"] == site.ip("vm-a")
    assert meta["ports"] == [{"network": "site-a", "host": 8081, "guest": 80, "proto": "tcp"}]
    xml = subprocess.run(
        ["virsh", "-c", site.libvirt_uri, "dumpxml", domain_name(site.node_uuid, site.app("vm-a"))],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert str(seed) in xml and "<serial>cidata</serial>" in xml and "<readonly/>" in xml


def test_a_container_gets_its_user_data_and_metadata_as_files_and_env(site):
    assert site.in_container("web-a", "cat", "/run/outpost/user-data") == USER_DATA["web-a"]
    env = site.in_container("web-a", "env")
    assert f"OUTPOST_INSTANCE_ID={site.app('web-a')}" in env
    assert "OUTPOST_HOSTNAME=web-a" in env and f"OUTPOST_METADATA_URL={MD}" in env
    meta = json.loads(site.in_container("web-a", "cat", "/run/outpost/meta-data.json"))
    assert meta["instance-id"] == site.app("web-a")


def test_an_app_reads_its_own_metadata_and_user_data_from_the_metadata_service(site):
    meta = json.loads(site.in_container("web-a", "wget", "-q", "-O", "-", f"{MD}/meta-data"))
    assert (meta["instance-id"], meta["hostname"]) == (site.app("web-a"), "web-a")
    got = site.in_container("web-a", "wget", "-q", "-O", "-", f"{MD}/latest/user-data")
    assert got == USER_DATA["web-a"]
    name = site.in_container("web-a", "wget", "-q", "-O", "-", f"{MD}/latest/meta-data/hostname")
    assert name == "web-a"


def test_the_metadata_service_of_another_network_answers_only_for_its_own_apps(site):
    meta = json.loads(site.in_container("web-b", "wget", "-q", "-O", "-", f"{MD}/meta-data"))
    assert meta["instance-id"] == site.app("web-b")  # its own network's listener, its own data
    assert "404" in site.in_container("web-b", "wget", "-q", "-O", "-", f"{MD}/user-data")
    # site-a's listener is not reachable from site-b, not even through site-a's gateway
    gateway_a = site.ports.workload_networks(site.app("web-a")).attachments[0].gateway
    out = site.in_container("web-b", "wget", "-q", "-O", "-", f"http://{gateway_a}/")
    assert "meta-data" not in out


def test_the_vm_reaches_the_metadata_service_of_its_network(site):
    url = f"http://{site.ip('vm-a')}/cgi-bin/fetch?169.254.169.254:80"
    assert "meta-data\nuser-data\nreport" in http_get(site.ns.node, url, 20)


def test_the_metadata_service_is_refused_from_outside(site):
    subprocess.run(
        ["ip", "-n", site.ns.outside, "route", "replace", "169.254.169.254/32", "via",
         site.ns.node_ip],
        check=True, capture_output=True,
    )  # fmt: skip
    assert tcp_scan(site.ns.outside, "169.254.169.254", [80]) == {80: "filtered"}
    assert http_get(site.ns.outside, f"{MD}/meta-data", 3).startswith("ERROR")


def test_an_app_report_posted_to_the_metadata_service_reaches_the_agent(site):
    body = '{"values": {"fps": 12.5, "detections": 3}, "labels": {"device": "CPU"}}'
    out = site.in_container(
        "web-a", "wget", "-q", "-O", "-", "--header", "Content-Type: application/json",
        "--post-data", body, f"{MD}/report",
    )  # fmt: skip
    assert "error" not in out.lower(), out
    report = site.ports.network.metadata.reports()[site.app("web-a")]
    assert report.values == {"fps": 12.5, "detections": 3.0}
    assert report.labels == {"device": "CPU"} and report.at is not None
    bad = '{"values": {"fps": "x"}}'
    out = site.in_container("web-a", "wget", "-q", "-O", "-", "--post-data", bad, f"{MD}/report")
    assert "422" in out
    assert site.ports.network.metadata.reports()[site.app("web-a")].values["fps"] == 12.5


def test_removing_the_port_maps_closes_them(site):
    statuses = site.reconciler.reconcile(site.doc(2, ports=False))
    assert all(st.state is AppState.RUNNING for st in statuses), statuses
    assert tcp_scan(site.ns.outside, site.ns.node_ip, [8080, 8081]) == {
        8080: "filtered",
        8081: "filtered",
    }
