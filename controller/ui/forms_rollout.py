"""The rollout start form: the app's new version (image, command, environment) and up to
``MAX_RINGS`` rings, turned into the operator API's ``RolloutBody`` (POST /rollouts).

The rules are the API's (``controller.rollouts.plan``), applied by ``service.start``;
this module only reads the text the operator typed and says where a refusal belongs.
"""

from __future__ import annotations

import shlex
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Optional

from controller.domain.bodies import SPEC_FIELDS
from controller.errors import ApiError
from controller.ui.field_rules import plain_error
from controller.ui.forms import SecondsField, SyntaxProblem, WholeNumberField, parse_pairs, rule

__all__ = ["MAX_RINGS", "RingForm", "RolloutForm", "place_errors"]

MAX_RINGS = 3


class RingForm(Form):
    """One ring (no CSRF token of its own: it is part of :class:`RolloutForm`)."""

    name = StringField("Ring name", description=rule("ring_name"))
    selector = TextAreaField("Nodes labelled (key=value)", description=rule("ring_selector"))
    percent = WholeNumberField("Or percent of nodes", "ring_percent", validators=[Optional()])
    soak_s = SecondsField("Soak (s)", "soak_s", default=300, validators=[Optional()])
    deadline_s = SecondsField("Deadline (s)", "deadline_s", default=1800, validators=[Optional()])
    batch_count = WholeNumberField("Batch size (nodes)", "batch_count", validators=[Optional()])
    success_threshold_pct = WholeNumberField(
        "Healthy per batch (%)", "success_threshold_pct", default=100, validators=[Optional()]
    )
    approval = BooleanField("Wait for an operator's approval before this ring")

    def to_body(self, index: int) -> dict[str, Any] | None:
        """The API's ``RingBody``; None when the ring is not used (no name)."""
        name = (self.name.data or "").strip()
        if not name:
            return None
        ring: dict[str, Any] = {"name": name, "approval": bool(self.approval.data)}
        selector = parse_pairs(self.selector.data, f"rings-{index}-selector", commas=True)
        if selector:
            ring["selector"] = selector
        if self.percent.data is not None:
            ring["percent"] = self.percent.data
        for key in ("soak_s", "deadline_s"):
            value = getattr(self, key).data
            if value is not None:
                ring[key] = value
        if self.batch_count.data is not None:
            ring["batches"] = {
                "count": self.batch_count.data,
                "success_threshold_pct": self.success_threshold_pct.data or 100,
            }
        return ring


class RolloutForm(FlaskForm):
    image = SelectField(
        "New image", validators=[DataRequired()], validate_choice=False, description=rule("image")
    )
    command = StringField("Command (shell words)", description=rule("command"))
    env = TextAreaField("Environment (KEY=value, one per line)", description=rule("env"))
    rings = FieldList(FormField(RingForm), min_entries=MAX_RINGS, max_entries=MAX_RINGS)
    group_by = StringField("Budget: per group of nodes sharing", description=rule("group_by"))
    max_updating = WholeNumberField("At most updating at once", "max_updating")
    min_healthy = WholeNumberField("At least healthy in the group", "min_healthy")

    def fill(self, app: dict[str, Any]) -> None:
        """Start from the version in force (``app_json``)."""
        self.image.data = app["image"]
        self.command.data = shlex.join(app.get("command") or [])
        self.env.data = "\n".join(f"{k}={v}" for k, v in (app.get("env") or {}).items())
        first = self.rings[0].form
        first.name.data = "all"

    def to_body(self, current: dict[str, Any]) -> dict[str, Any]:
        """The API's ``RolloutBody``: ``current`` (the app's stored definition) with the new
        image, command and environment, and the rings in use."""
        try:
            command = shlex.split(self.command.data or "")
        except ValueError as exc:
            raise SyntaxProblem("command", f"cannot split into words: {exc}") from exc
        app = {
            "name": current["name"],
            "kind": current["kind"],
            "image": self.image.data or "",
            "selector": current.get("selector"),
            **{k: v for k, v in current["spec"].items() if k in SPEC_FIELDS},
            "command": command,
            "env": parse_pairs(self.env.data, "env"),
        }
        rings = [
            ring
            for index, entry in enumerate(self.rings)
            if (ring := entry.form.to_body(index)) is not None
        ]
        if not rings:
            raise SyntaxProblem(
                "rings-0-name", "name at least one ring (an unnamed ring is unused)"
            )
        budgets: list[dict[str, Any]] = []
        keys = [k.strip() for k in (self.group_by.data or "").split(",") if k.strip()]
        if not keys and (self.max_updating.data is not None or self.min_healthy.data is not None):
            raise SyntaxProblem("group_by", "name the label keys whose groups the budget limits")
        if keys:
            budget: dict[str, Any] = {"group_by": keys}
            if self.max_updating.data is not None:
                budget["max_updating"] = self.max_updating.data
            if self.min_healthy.data is not None:
                budget["min_healthy"] = self.min_healthy.data
            budgets.append(budget)
        return {"app": app, "rings": rings, "budgets": budgets}

    def ring_rows(self) -> list[int]:
        """The form rows of the rings in use, in the order of the body's ``rings``."""
        return [i for i, e in enumerate(self.rings) if (e.form.name.data or "").strip()]


_APP_FIELDS = {"image": "image", "command": "command", "env": "env"}
_RING_FIELDS = {
    "name": "name",
    "selector": "selector",
    "percent": "percent",
    "soak_s": "soak_s",
    "deadline_s": "deadline_s",
    "batches.count": "batch_count",
    "batches": "batch_count",
    "batches.success_threshold_pct": "success_threshold_pct",
}
_RING_RULES = {"name": "ring_name", "selector": "ring_selector", "percent": "ring_percent"}
_BUDGET_FIELDS = {"group_by": "group_by", "max_updating": "max_updating"}


def _ring_rule_field(item: dict[str, Any]) -> str:
    """The field a ring's own rule (a sentence of ``RingBody``) is about."""
    error = str(item.get("error", ""))
    for words, key in (
        ("deadline_s", "deadline_s"),
        ("percent", "percent"),
        ("batch", "batch_count"),
    ):
        if words in error:
            return key
    return ""


def _add(field: Any, message: str) -> None:
    if message not in field.errors:
        field.errors = [*list(field.errors), message]


def place_errors(form: RolloutForm, exc: ApiError) -> None:
    """The API's refusal next to the fields it names (``rings.1.soak_s`` → the second
    ring in use, its soak field); the rest above the form."""
    details = exc.details if isinstance(exc.details, list) else []
    rows = form.ring_rows()
    for item in details:
        parts = str(item.get("field", "")).split(".")
        target = None
        if parts[0] == "app" and len(parts) > 1 and parts[1] in _APP_FIELDS:
            target, name = getattr(form, _APP_FIELDS[parts[1]]), parts[1]
        elif parts[0] == "rings" and len(parts) > 1 and parts[1].isdigit():
            index = int(parts[1])
            ring = form.rings[rows[index]].form if index < len(rows) else None
            key = _RING_FIELDS.get(".".join(parts[2:]), "") or _ring_rule_field(item)
            target = getattr(ring, key, None) if ring is not None and key else None
            name = _RING_RULES.get(key, key)
            if target is None and ring is not None:
                form.form_errors.append(f"Ring {index + 1}: {plain_error('Value', '', item)}")
                continue
        elif parts[0] == "budgets":
            key = parts[2] if len(parts) > 2 else "group_by"
            target, name = getattr(form, _BUDGET_FIELDS.get(key, "group_by")), key
        if target is None:
            form.form_errors.append(plain_error(item.get("field") or "The form", "", item))
            continue
        _add(target, plain_error(target.label.text, name, item))
    if not details:
        form.form_errors.append(exc.message)
