"""What each form field allows, in plain words: shown beside the field and, when a value
is refused, as the error (never a regex or pydantic's wording).

    FIELD_RULES[name]            "lower-case letters, digits and dashes, …"
    plain_error(label, item)     the message for one API error detail ({field, error, type})

The rules are the API's (``controller.domain.bodies``, ``protocol.desired_state``); this
module only says them in words, with the same limits.
"""

from __future__ import annotations

from typing import Any

from protocol.desired_state import MAX_DATA_DISK_MIB

__all__ = ["FIELD_RULES", "plain_error", "rule_for"]

NAME_RULE = (
    "lower-case letters, digits and dashes, 1 to 63 characters, starting with a letter or digit"
)
LABEL_RULE = (
    "key=value, one per line; a key is lower-case letters, digits and . _ / -, 1 to 63 characters,"
    " starting with a letter or digit; a value is up to 63 letters, digits and . _ -"
)

FIELD_RULES: dict[str, str] = {
    "name": NAME_RULE,
    "image": "an image of the catalog (containers: oci-archive; VMs: kernel-bundle, qcow2 or raw)",
    "kind": "container or vm",
    "desired": "running or stopped",
    "vcpus": "a whole number from 1 to 64",
    "memory_mib": "a whole number of MiB from 16 to 1048576",
    "disk_mib": f"a whole number of MiB from 0 to {MAX_DATA_DISK_MIB} (0: the image's own size)",
    "start_delay_s": "a number of seconds from 0 to 3600",
    "command": "shell words, at most 64, each up to 4096 characters",
    "env": (
        "KEY=value, one per line, at most 128; a key is letters, digits and _, not starting"
        " with a digit, up to 128 characters; a value up to 4096 characters"
    ),
    "networks": (
        "one per line: an existing network's name, then ports as host:guest or host:guest/udp"
        " (1 to 65535); at most 8 networks"
    ),
    "adapters": (
        "one per line: gpu, pci or usb, then a PCI address (0000:01:00.0) or vendor:device in"
        " hex (10de:1eb8); VMs only, at most 8"
    ),
    "selector": LABEL_RULE + "; at most 16",
    "labels": LABEL_RULE + "; at most 32",
    "serial": ("letters, digits and . _ : -, 1 to 128 characters, starting with a letter or digit"),
    "node": "the serial number or uuid of a node",
    "sha256": "64 hexadecimal digits (0-9, a-f)",
    "size": "a whole number of bytes from 1 to 68719476736 (64 GiB)",
    "url": "an http:// or https:// address, up to 2048 characters",
    "format": "oci-archive, kernel-bundle, qcow2 or raw",
    "app": "an app of the catalog",
    "subnet": (
        "an IPv4 network written a.b.c.d/len, len from 16 to 29 (host bits are cleared:"
        " 10.1.0.5/24 is 10.1.0.0/24); it may not overlap another network"
    ),
    "nat": "on: apps on the network reach the outside through the node's uplink (masquerade)",
    "reason": "1 to 512 characters; kept in the audit log",
    "password": "12 to 1024 characters; a long phrase is best",
    # the git source (controller.gitops.source)
    "git_url": (
        "https://, ssh://, file://, user@host:path or an absolute path, up to 2048 characters,"
        " no spaces, brackets or control characters; user:token@ in an https URL is kept"
        " apart and never shown"
    ),
    "branch": "a branch name: letters, digits and . _ / -, up to 255 characters, no ..",
    "subpath": "a folder of the repository holding sites/ (letters, digits, . _ / -; no ..);"
    " empty: the top",
    "interval_s": "a whole number of seconds from 0 to 86400; 0: only on demand",
    "allowed_signers": (
        "an ssh allowed-signers file: one '<principal> <key type> <key>' per line, at most"
        " 64 KiB; needed when signatures are verified"
    ),
    # rollouts (controller.rollouts.plan)
    "ring_name": "letters, digits and . _ -, 1 to 63 characters; empty: the ring is not used",
    "ring_selector": LABEL_RULE + "; at most 16; its nodes (device labels as device/<key>)",
    "ring_percent": (
        "a whole number from 1 to 100: the share of the app's nodes updated once this ring"
        " is done (not with labels); neither: every node left"
    ),
    "soak_s": "a number of seconds from 0 to 604800 (7 days) each node must run healthy",
    "deadline_s": (
        "a number of seconds above 0, at most 604800 (7 days), and at least the soak time"
    ),
    "batch_count": "a whole number of nodes per batch from 1 to 100000; empty: one batch",
    "success_threshold_pct": (
        "a whole number from 1 to 100: the share of a batch that must be healthy"
    ),
    "group_by": "label keys separated by commas, 1 to 4; empty: no budget",
    "max_updating": "a whole number from 1 to 100000; empty: no limit",
    "min_healthy": "a whole number from 0 to 100000; empty: no limit",
}

# pydantic error types whose message is the model's own sentence (already plain words)
_OWN_WORDS = {"value_error", "assertion_error"}


def rule_for(name: str) -> str | None:
    return FIELD_RULES.get(name)


def plain_error(label: str, name: str, item: dict[str, Any]) -> str:
    """One refusal in plain words: our own sentences as they are, pydantic's replaced by
    the field's rule ("Name: lower-case letters, …")."""
    error = str(item.get("error", ""))
    kind = item.get("type")
    if kind is None or kind in _OWN_WORDS:
        return error.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    rule = FIELD_RULES.get(name)
    if rule is None:
        return f"{label}: this value is not allowed here"
    return f"{label}: {rule}"
