"""The UI's forms (Flask-WTF: every one carries the CSRF token) and the small text syntaxes
they accept, turned into the operator API's JSON shapes.

WTForms checks only shape (required, numbers); the rules themselves are the API's
pydantic models (``controller.domain.bodies``, ``protocol.desired_state``), applied by
the domain actions (``controller.domain``), so the UI and the API refuse the same things.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, Optional

from controller.domain.tokens import ROLES
from controller.ui.field_rules import FIELD_RULES

try:  # WTForms >= 3.3 deprecates (value, label) tuples
    from wtforms.fields.choices import SelectChoice
except ImportError:  # pragma: no cover - older WTForms
    SelectChoice = None


def choices(*values: str | tuple[str, str]) -> list[Any]:
    """Select options from values or (value, label) pairs, in the installed WTForms' shape."""
    out = []
    for item in values:
        value, label = item if isinstance(item, tuple) else (item, item)
        out.append(SelectChoice(value, label) if SelectChoice else (value, label))
    return out


__all__ = [
    "AppForm",
    "AssignForm",
    "BundleForm",
    "ClaimForm",
    "CommandForm",
    "ConfirmForm",
    "CsvClaimForm",
    "GitSourceForm",
    "ImageRegisterForm",
    "ImageUploadForm",
    "InviteForm",
    "LabelsForm",
    "LoginForm",
    "NetworkForm",
    "NodeAssignForm",
    "PasswordForm",
    "RevokeBatchForm",
    "RevokeNodeForm",
    "SyntaxProblem",
    "UserForm",
    "choices",
    "parse_pairs",
    "rule",
]

FORMAT_NAMES = ("oci-archive", "kernel-bundle", "qcow2", "raw")


def rule(name: str) -> str:
    """The field's rule in plain words (shown beside it)."""
    return FIELD_RULES[name]


class _NumberField(StringField):
    """A number typed by a person: ASCII digits only (no superscripts, no other scripts'
    digits), finite (no NaN, sNaN, inf); refused with the field's rule in plain words."""

    pattern = re.compile(r"")
    convert: Callable[[str], Any] = staticmethod(str)
    """Text that matched ``pattern`` → the value (each subclass names its type)."""

    def __init__(self, label: str, rule_name: str, **kwargs: Any) -> None:
        super().__init__(label, description=rule(rule_name), **kwargs)

    def _value(self) -> str:
        return "" if self.data is None else str(self.data)

    def process_formdata(self, valuelist: list[Any]) -> None:
        text = (valuelist[0] if valuelist else "").strip()
        if not text:
            self.data = None
            return
        if not self.pattern.fullmatch(text):
            self.data = None
            raise ValueError(f"{self.label.text}: {self.description}")
        self.data = self.convert(text)


class WholeNumberField(_NumberField):
    pattern = re.compile(r"-?[0-9]{1,18}")
    convert = staticmethod(int)


class SecondsField(_NumberField):
    pattern = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
    convert = staticmethod(float)


class SyntaxProblem(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class ClaimForm(FlaskForm):
    serial = StringField("Serial number", validators=[DataRequired(), Length(max=128)])
    device_cert_sha256 = StringField(
        "Device certificate SHA-256", validators=[Optional(), Length(max=128)]
    )
    ek_sha256 = StringField("EK certificate SHA-256", validators=[Optional(), Length(max=128)])


class RevokeBatchForm(FlaskForm):
    reason = StringField("Reason", validators=[DataRequired(), Length(max=512)])


class ConfirmForm(FlaskForm):
    """A confirmation page's form: the action happens only when ``confirmed`` is "yes"."""

    confirmed = HiddenField()


class RevokeNodeForm(ConfirmForm):
    reason = StringField(
        "Reason", validators=[DataRequired(), Length(max=512)], description=rule("reason")
    )


class NetworkForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired()], description=rule("name"))
    subnet = StringField("Subnet", validators=[DataRequired()], description=rule("subnet"))
    nat = BooleanField("NAT to the node's uplink", description=rule("nat"))

    def to_body(self) -> dict[str, Any]:
        """The API's JSON body (``NetworkBody``)."""
        return {
            "name": (self.name.data or "").strip(),
            "subnet": (self.subnet.data or "").strip(),
            "nat": bool(self.nat.data),
        }


class CsvClaimForm(FlaskForm):
    file = FileField("CSV file of serials", validators=[FileRequired()])


class BundleForm(FlaskForm):
    batch = StringField("Batch name", default="default", validators=[DataRequired()])


class CommandForm(FlaskForm):
    command = HiddenField()
    app = HiddenField()
    confirmed = HiddenField()


class AssignForm(FlaskForm):
    """On a node page: pick an app."""

    app = SelectField("App", validators=[DataRequired()], validate_choice=False)


class NodeAssignForm(FlaskForm):
    """On an app page: name a node."""

    node = StringField("Node serial", validators=[DataRequired(), Length(max=128)])


class LabelsForm(FlaskForm):
    labels = TextAreaField("Labels (key=value, one per line)")


class AppForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired()], description=rule("name"))
    kind = SelectField("Kind", choices=choices("container", "vm"))
    image = SelectField(
        "Image", validators=[DataRequired()], validate_choice=False, description=rule("image")
    )
    vcpus = WholeNumberField("vCPUs", "vcpus", default=1, validators=[InputRequired()])
    memory_mib = WholeNumberField(
        "Memory (MiB)", "memory_mib", default=128, validators=[InputRequired()]
    )
    disk_mib = WholeNumberField(
        "Disk (MiB, 0 = image size)", "disk_mib", default=0, validators=[InputRequired()]
    )
    command = StringField("Command (shell words)", description=rule("command"))
    env = TextAreaField("Environment (KEY=value, one per line)", description=rule("env"))
    secret_env = TextAreaField(
        "Secret environment (KEY=value, one per line; hidden from viewers, never audited)",
        description=rule("env"),
    )
    desired = SelectField("Desired state", choices=choices("running", "stopped"))
    networks = TextAreaField(
        "Networks (name host:guest/proto …, one per line)", description=rule("networks")
    )
    adapters = TextAreaField(
        "Adapters (kind match, one per line; VMs only)", description=rule("adapters")
    )
    start_delay_s = SecondsField(
        "Start delay (s)", "start_delay_s", default=0, validators=[Optional()]
    )
    user_data = TextAreaField("User-data (cloud-config, script or JSON; at most 64 KiB)")
    user_data_secret = BooleanField("User-data is secret (never shown again, only its digest)")
    selector = TextAreaField(
        "Run on nodes labelled (key=value, one per line)", description=rule("selector")
    )

    def to_body(self) -> dict[str, Any]:
        """The API's JSON body; :class:`SyntaxProblem` names the field a line is wrong in."""
        try:
            command = shlex.split(self.command.data or "")
        except ValueError as exc:
            raise SyntaxProblem("command", f"cannot split into words: {exc}") from exc
        return {
            "name": (self.name.data or "").strip(),
            "kind": self.kind.data,
            "image": self.image.data or "",
            "resources": {
                "vcpus": self.vcpus.data,
                "memory_mib": self.memory_mib.data,
                "disk_mib": self.disk_mib.data,
            },
            "command": command,
            "env": parse_pairs(self.env.data, "env"),
            "secret_env": parse_pairs(self.secret_env.data, "secret_env"),
            "desired": self.desired.data,
            "networks": _networks(self.networks.data),
            "adapters": _adapters(self.adapters.data),
            "start_delay_s": float(self.start_delay_s.data or 0),
            "user_data": self.user_data.data or None,
            "user_data_secret": bool(self.user_data_secret.data),
            "selector": parse_pairs(self.selector.data, "selector", commas=True) or None,
        }

    def fill(self, app: dict[str, Any]) -> None:
        """Show an existing definition (``app_json``) in the form."""
        res = app.get("resources") or {}
        self.name.data, self.kind.data, self.image.data = app["name"], app["kind"], app["image"]
        self.vcpus.data = res.get("vcpus", 1)
        self.memory_mib.data = res.get("memory_mib", 128)
        self.disk_mib.data = res.get("disk_mib", 0)
        self.command.data = shlex.join(app.get("command") or [])
        self.env.data = "\n".join(f"{k}={v}" for k, v in (app.get("env") or {}).items())
        self.secret_env.data = "\n".join(
            f"{k}={v}" for k, v in (app.get("secret_env") or {}).items()
        )
        self.desired.data = app.get("desired", "running")
        self.networks.data = "\n".join(
            " ".join(
                [n["name"]]
                + [f"{p['host']}:{p['guest']}/{p.get('proto', 'tcp')}" for p in n.get("ports", [])]
            )
            for n in app.get("networks") or []
        )
        self.adapters.data = "\n".join(
            f"{a['kind']} {a['match']}" for a in app.get("adapters") or []
        )
        self.start_delay_s.data = app.get("start_delay_s", 0)
        self.user_data.data = app.get("user_data") or ""  # a secret's placeholder keeps it
        self.user_data_secret.data = bool(app.get("user_data_secret"))
        self.selector.data = "\n".join(f"{k}={v}" for k, v in (app.get("selector") or {}).items())


class ImageRegisterForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired()], description=rule("name"))
    format = SelectField("Format", choices=choices(*FORMAT_NAMES))
    sha256 = StringField("SHA-256", validators=[DataRequired()], description=rule("sha256"))
    size = WholeNumberField("Size (bytes)", "size", validators=[InputRequired()])
    url = StringField("URL", validators=[DataRequired()], description=rule("url"))


class ImageUploadForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired()])
    format = SelectField("Format", choices=choices(*FORMAT_NAMES))
    sha256 = StringField("SHA-256 (optional: the upload must match it)")
    file = FileField("Image file", validators=[FileRequired()])


class GitSourceForm(FlaskForm):
    """The git source (PUT /git/source); the URL is shown without its credentials."""

    git_url = StringField(
        "Repository URL", validators=[DataRequired()], description=rule("git_url")
    )
    keep_credentials = BooleanField("Keep the stored credentials", default=True)
    branch = StringField("Branch", default="main", description=rule("branch"))
    subpath = StringField("Folder", description=rule("subpath"))
    interval_s = WholeNumberField("Sync every (s)", "interval_s", default=60)
    verify_signatures = BooleanField("Apply only commits signed by an allowed signer")
    allowed_signers = TextAreaField("Allowed signers", description=rule("allowed_signers"))

    def to_body(self, stored_url: str = "", with_credentials: str = "") -> dict[str, Any]:
        """The API's ``GitSourceBody``; the stored URL typed back unchanged keeps its
        credentials (``with_credentials``: that URL with them) unless told not to."""
        url = (self.git_url.data or "").strip()
        if with_credentials and url == stored_url and self.keep_credentials.data:
            url = with_credentials
        return {
            "url": url,
            "branch": (self.branch.data or "").strip() or "main",
            "path": (self.subpath.data or "").strip(),
            "interval_s": 60 if self.interval_s.data is None else self.interval_s.data,
            "verify_signatures": bool(self.verify_signatures.data),
            "allowed_signers": self.allowed_signers.data or "",
        }


class UserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    role = SelectField("Role", choices=choices(*ROLES), default="viewer")


class InviteForm(FlaskForm):
    """A user without a password, who sets it through a one-time link."""

    invitee = StringField("Username", validators=[DataRequired(), Length(max=64)])
    invite_role = SelectField("Role", choices=choices(*ROLES), default="viewer")


class PasswordForm(FlaskForm):
    """A new password, typed twice (the rules are ``controller.domain.users``')."""

    password = PasswordField(
        "New password", validators=[DataRequired()], description=rule("password")
    )
    again = PasswordField(
        "The same password again",
        validators=[DataRequired(), EqualTo("password", message="The two passwords differ.")],
    )


def parse_pairs(text: str | None, field: str, commas: bool = False) -> dict[str, str]:
    """``key=value`` lines (``commas``: also comma-separated) into a dict; blanks skipped."""
    out: dict[str, str] = {}
    text = (text or "").replace(",", "\n") if commas else text or ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise SyntaxProblem(field, f"line {number}: write key=value, not {line[:40]!r}")
        out[key.strip()] = value.strip()
    return out


_PORT = re.compile(r"[0-9]{1,5}")


def _networks(text: str | None) -> list[dict[str, Any]]:
    out = []
    for number, raw in enumerate((text or "").splitlines(), start=1):
        words = raw.split()
        if not words:
            continue
        ports = []
        for word in words[1:]:
            spec, _, proto = word.partition("/")
            host, sep, guest = spec.partition(":")
            if not sep or not _PORT.fullmatch(host) or not _PORT.fullmatch(guest):
                raise SyntaxProblem(
                    "networks",
                    f"line {number}: a port is host:guest or host:guest/udp with numbers"
                    f" 1 to 65535, not {word!r}",
                )
            ports.append({"host": int(host), "guest": int(guest), "proto": proto or "tcp"})
        out.append({"name": words[0], "ports": ports})
    return out


def _adapters(text: str | None) -> list[dict[str, str]]:
    out = []
    for number, raw in enumerate((text or "").splitlines(), start=1):
        words = raw.split()
        if not words:
            continue
        if len(words) != 2:
            raise SyntaxProblem(
                "adapters", f"line {number}: write 'kind match', e.g. gpu 10de:1eb8"
            )
        out.append({"kind": words[0], "match": words[1]})
    return out
