"""What an app is told about itself and what it may tell back: user-data, instance metadata
and the metrics an app reports.

- ``UserData``: the operator's text for the app (cloud-config, a script, JSON: Outpost does
  not interpret it), UTF-8, at most :data:`MAX_USER_DATA_BYTES` bytes, no NUL.  An app spec
  marks it secret with ``user_data_secret`` (never shown to viewers, never logged).
- :class:`InstanceMetadata`: instance id (the app's uuid), hostname (its name), the node,
  its interfaces and declared ports.  Served as the NoCloud seed's ``meta-data`` (JSON,
  which is YAML too), by the metadata service and to containers as env and files.
- :class:`AppReport`: numbers (``fps``, ``latency_p50_ms``, …) and a few short labels
  (``device: CPU``) an app posts to its metadata service; the agent forwards the latest one
  in its metrics (``AppMetrics.reported``).
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, Field, StringConstraints

from protocol.model_base import StrictModel, Timestamp

__all__ = [
    "MAX_REPORT_BYTES",
    "MAX_USER_DATA_BYTES",
    "METADATA_ADDRESS",
    "METADATA_PORT",
    "AppReport",
    "InstanceInterface",
    "InstanceMetadata",
    "InstancePort",
    "UserData",
    "check_user_data",
]

MAX_USER_DATA_BYTES: Final = 64 * 1024
"""EC2's limit for user-data (16 KiB) is small for a cloud-config with files; EVE allows
more. 64 KiB keeps a desired state of 64 apps under a few MiB."""
MAX_REPORT_BYTES: Final = 8 * 1024
METADATA_ADDRESS: Final = "169.254.169.254"
METADATA_PORT: Final = 80
MAX_REPORT_VALUE = 1e15


def check_user_data(text: str) -> str:
    """UTF-8 text of at most :data:`MAX_USER_DATA_BYTES` bytes without NUL characters."""
    if "\x00" in text:
        raise ValueError("user_data must not contain NUL characters")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates
        raise ValueError(f"user_data is not valid UTF-8 text: {exc.reason}") from None
    if size > MAX_USER_DATA_BYTES:
        raise ValueError(f"user_data is {size} bytes; at most {MAX_USER_DATA_BYTES} allowed")
    return text


UserData = Annotated[
    str, AfterValidator(check_user_data), Field(json_schema_extra={"pattern": r"^[^\x00]*$"})
]
"""An app's user-data: text, at most 64 KiB of UTF-8, no NUL."""

MetricName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
ReportValue = Annotated[float, Field(ge=-MAX_REPORT_VALUE, le=MAX_REPORT_VALUE)]
LabelValue = Annotated[str, StringConstraints(pattern=r"^[\x20-\x7e]{0,64}$")]


class InstancePort(StrictModel):
    network: str
    host: int
    guest: int
    proto: str


class InstanceInterface(StrictModel):
    network: str
    ip: str
    mac: str
    gateway: str


class InstanceMetadata(StrictModel):
    """What an app instance is told about itself (the ``meta-data`` document)."""

    instance_id: str = Field(serialization_alias="instance-id")
    local_hostname: str = Field(serialization_alias="local-hostname")
    hostname: str
    node_uuid: str
    kind: str
    interfaces: list[InstanceInterface] = Field(default_factory=list)
    ports: list[InstancePort] = Field(default_factory=list)
    metadata_url: str = ""
    """Where the app reaches its metadata service ("" when it has no app network)."""

    def document(self) -> dict[str, object]:
        """The JSON document (cloud-init's NoCloud keys ``instance-id``/``local-hostname``)."""
        return self.model_dump(mode="json", by_alias=True)


class AppReport(StrictModel):
    """Metrics an app posts to its metadata service (``POST /report``), bounded."""

    values: dict[MetricName, ReportValue] = Field(default_factory=dict, max_length=32)
    labels: dict[MetricName, LabelValue] = Field(default_factory=dict, max_length=8)
    at: Timestamp | None = None
    """When the node received it (set by the metadata service, not by the app)."""
