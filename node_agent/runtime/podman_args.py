"""Pure functions that turn a :class:`WorkloadSpec` into podman names and argv.

No I/O here, so unit tests can check exactly what ``podman run`` receives.
Containers never publish ports themselves (port maps are the node firewall's DNAT) and
always run with an init process, explicit ulimits and ``--restart no``.  An app without
networks gets ``--network none``; one on app networks joins the network namespace the
node network prepared for it (``--network ns:<path>``, interfaces with static IPs already
inside) and uses its first network's gateway as DNS server.

An app with user-data gets its instance metadata and user-data as files in ``/run/outpost``
(read-only bind of ``<work_dir>/outpost-config``: ``meta-data.json``, ``user-data``) and as
env: ``OUTPOST_INSTANCE_ID``, ``OUTPOST_HOSTNAME``, ``OUTPOST_META_DATA_FILE``,
``OUTPOST_USER_DATA_FILE`` and ``OUTPOST_METADATA_URL`` (the user-data itself stays out of
the argv and env: they are logged and inspectable).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from node_agent.runtime.base import PermanentError, WorkloadSpec

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_ULIMITS",
    "GUEST_CONFIG_DIR",
    "IMAGE_FORMAT",
    "IMAGE_REPO",
    "LABEL_APP",
    "LABEL_IMAGE",
    "LABEL_NAME",
    "LABEL_NODE",
    "LABEL_SPEC",
    "RunOptions",
    "container_name",
    "image_ref",
    "normalize_sha256",
    "run_argv",
]

IMAGE_FORMAT = "oci-archive"
IMAGE_REPO = "localhost/outpost/img"
DEFAULT_ULIMITS = ("nofile=1024:1024", "nproc=1024:1024")

LABEL_NODE = "outpost.node"
LABEL_APP = "outpost.app"
LABEL_IMAGE = "outpost.image-sha256"
LABEL_NAME = "outpost.name"
LABEL_SPEC = "outpost.spec-sha256"  # WorkloadSpec.digest: what the container is made from

CONFIG_DIR = "outpost-config"
"""Sub-directory of the work dir holding a container's ``meta-data.json`` and ``user-data``."""
GUEST_CONFIG_DIR = "/run/outpost"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class RunOptions:
    """Node-level choices for ``podman run`` (not part of the spec)."""

    runtime: str = "runc"
    ulimits: tuple[str, ...] = DEFAULT_ULIMITS
    init: bool = True
    memory_limit: bool = True  # pass --memory (needs the cgroup memory controller)
    cpu_limit: bool = True  # pass --cpus (needs the cgroup cpu controller)
    console_log: bool = True  # k8s-file log driver writing <work_dir>/console.log


def normalize_sha256(value: str, app_uuid: str = "") -> str:
    """Lower-case hex sha256, accepting an optional ``sha256:`` prefix."""
    hexdigest = value.strip().lower().removeprefix("sha256:")
    if not _HEX64.match(hexdigest):
        raise PermanentError(f"app {app_uuid}: image sha256 {value!r} is not a sha256 digest")
    return hexdigest


def image_ref(image_sha256: str) -> str:
    """The local tag under which an image archive with this digest is kept."""
    return f"{IMAGE_REPO}:{normalize_sha256(image_sha256)}"


def container_name(node_uuid: str, app_uuid: str) -> str:
    return f"outpost-{node_uuid[:8]}-{app_uuid[:8]}"


def console_log_path(spec: WorkloadSpec) -> str:
    return str(spec.work_dir / "console.log")


def _env_args(spec: WorkloadSpec) -> list[str]:
    args: list[str] = []
    for key, value in spec.env:
        if not _ENV_KEY.match(key):
            raise PermanentError(f"app {spec.app_uuid}: invalid environment variable name {key!r}")
        args += ["--env", f"{key}={value}"]
    return args


def _config_args(spec: WorkloadSpec) -> list[str]:
    """The bind of the app's config files and the env naming them (apps with user-data)."""
    if spec.user_data is None:
        return []
    try:
        meta = json.loads(spec.meta_data)
    except ValueError as exc:
        raise PermanentError(f"app {spec.app_uuid}: instance metadata is not JSON: {exc}") from exc
    source = spec.work_dir / CONFIG_DIR
    if "," in str(source) or ":" in str(source):
        raise PermanentError(f"app {spec.app_uuid}: work dir {spec.work_dir} cannot be bound")
    env = {
        "OUTPOST_INSTANCE_ID": str(meta.get("instance-id", "")),
        "OUTPOST_HOSTNAME": str(meta.get("hostname", "")),
        "OUTPOST_META_DATA_FILE": f"{GUEST_CONFIG_DIR}/meta-data.json",
        "OUTPOST_USER_DATA_FILE": f"{GUEST_CONFIG_DIR}/user-data",
        "OUTPOST_METADATA_URL": str(meta.get("metadata_url", "")),
    }
    args = ["--volume", f"{source}:{GUEST_CONFIG_DIR}:ro"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    return args


def _network_args(spec: WorkloadSpec) -> list[str]:
    if not spec.networks:
        return ["--network", "none"]
    path = spec.netns_path
    if not path.startswith("/") or "," in path or any(c.isspace() for c in path):
        raise PermanentError(
            f"app {spec.app_uuid}: is on networks {[n.network for n in spec.networks]}"
            f" but has no usable network namespace path ({path!r})"
        )
    return ["--network", f"ns:{path}", "--dns", spec.networks[0].gateway]


def run_argv(spec: WorkloadSpec, node_uuid: str, options: RunOptions = RunOptions()) -> list[str]:
    """The ``podman run`` arguments (after the global ones) for ``spec``.

    The label ``outpost.spec-sha256`` holds the spec's digest (:attr:`WorkloadSpec.digest`),
    so an existing container can be compared with the spec (``base.same_spec``).
    """
    sha = normalize_sha256(spec.image_sha256, spec.app_uuid)
    if spec.vcpus < 1 or spec.memory_mib < 1:
        raise PermanentError(
            f"app {spec.app_uuid}: vcpus ({spec.vcpus}) and memory_mib ({spec.memory_mib})"
            " must be positive"
        )
    args = [
        "run",
        "--detach",
        "--name",
        container_name(node_uuid, spec.app_uuid),
        "--pull",
        "never",
        "--runtime",
        options.runtime,
        *_network_args(spec),
        "--restart",
        "no",
    ]
    for ulimit in options.ulimits:
        args += ["--ulimit", ulimit]
    if options.init:
        args.append("--init")
    if options.memory_limit:
        args += ["--memory", f"{spec.memory_mib}m"]
    if options.cpu_limit:
        args += ["--cpus", str(spec.vcpus)]
    if options.console_log:
        args += ["--log-driver", "k8s-file", "--log-opt", f"path={console_log_path(spec)}"]
    args += _config_args(spec)
    args += _env_args(spec)
    for key, value in (
        (LABEL_NODE, node_uuid),
        (LABEL_APP, spec.app_uuid),
        (LABEL_IMAGE, sha),
        (LABEL_NAME, spec.name),
        (LABEL_SPEC, spec.digest),
    ):
        args += ["--label", f"{key}={value}"]
    return [*args, image_ref(sha), *spec.command]
