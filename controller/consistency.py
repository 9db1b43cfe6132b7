"""Is what the database holds what the API would have accepted?  A check over every row.

    check_database(session) → [Problem(table, row, field, problem)]   (empty: consistent)

Two kinds of problems:

- a number that is not finite (NaN, ±Infinity) or that no column holds (beyond ±(2**63-1)),
  in columns or inside JSON documents; generations and counters beyond 2**53;
- a row that breaks the API's own rules: names, serials and digests of the wrong shape,
  an app spec, node settings, labels, reports (info, metrics, inventory), metric samples,
  log lines, rollout rings or networks that their pydantic model refuses.

Used after fuzzing (tests) and by operators (``outpost-controller check-db``); it only
reads.  It sits beside the HTTP layers: it knows every layer's rules (rollout rings too).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from controller.domain.bodies import AppBody, LabelKey, LabelValue, NetworkBody
from controller.rollouts.plan import RingBody
from controller.store.models import (
    App,
    Assignment,
    Image,
    LogBatch,
    MetricSample,
    Network,
    Node,
    Rollout,
)
from controller.store.models.core import Base
from protocol.bounded_json import JsonRefused, load_json
from protocol.desired_state import ImageFormat, Name, NodeSettings, Sha256Hex
from protocol.inventory import RegistrationInventory
from protocol.messages import InfoMessage, LogLine, MetricsMessage, Serial
from protocol.model_base import MAX_COUNT

__all__ = ["Problem", "check_database"]


@dataclass(frozen=True)
class Problem:
    table: str
    row: str
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.table}[{self.row}].{self.field}: {self.problem}"


MAX_STORED_INT = 2**63 - 1
"""No integer the API takes is larger (a database column holds no more)."""


def _numbers(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, problem) for every non-finite or unstorable number inside ``value`` (the
    ranges of each field are its model's, checked by :func:`_rules`)."""
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        yield path, f"{value!r} is not a finite number"
    elif isinstance(value, int) and abs(value) > MAX_STORED_INT:
        yield path, f"{value} is outside ±(2**63-1)"
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}[{i}]")


def _refusal(adapter: TypeAdapter[Any] | type[BaseModel], value: Any) -> str | None:
    try:
        if isinstance(adapter, TypeAdapter):
            adapter.validate_python(value)
        else:
            adapter.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where + ': ' if where else ''}{first['msg']}"
    return None


_NAME = TypeAdapter(Name)
_SERIAL = TypeAdapter(Serial)
_SHA = TypeAdapter(Sha256Hex)
_FORMAT: TypeAdapter[Any] = TypeAdapter(ImageFormat)
_LABELS = TypeAdapter(dict[LabelKey, LabelValue])


def _rules(s: Session) -> Iterator[tuple[str, Any, str, TypeAdapter[Any] | type[BaseModel], Any]]:
    """(table, row id, field, model, value): each value and the rule it must satisfy."""
    for n in s.scalars(select(Node)):
        yield "nodes", n.serial, "serial", _SERIAL, n.serial
        yield "nodes", n.serial, "labels", _LABELS, n.labels or {}
        yield "nodes", n.serial, "settings", NodeSettings, n.settings or {}
        if n.info:
            yield "nodes", n.serial, "info", InfoMessage, n.info
        if n.metrics:
            yield "nodes", n.serial, "metrics", MetricsMessage, n.metrics
        if n.inventory:
            yield "nodes", n.serial, "inventory", RegistrationInventory, n.inventory
    for i in s.scalars(select(Image)):
        yield "images", i.name, "name", _NAME, i.name
        yield "images", i.name, "sha256", _SHA, i.sha256
        yield "images", i.name, "format", _FORMAT, i.format
    for net in s.scalars(select(Network)):
        body = {"name": net.name, "subnet": net.subnet, "nat": net.nat}
        yield "networks", net.name, "(row)", NetworkBody, body
    for app in s.scalars(select(App)):
        image = s.get(Image, app.image_id)
        body = {
            "name": app.name,
            "kind": app.kind,
            "image": image.name if image else "",
            "selector": app.label_selector,
            **(app.spec or {}),
        }
        yield "apps", app.name, "(row)", AppBody, body
    for r in s.scalars(select(Rollout)):
        for index, ring in enumerate(r.rings or []):
            yield "rollouts", str(r.id), f"rings[{index}]", RingBody, ring
    for m in s.scalars(select(MetricSample)):
        yield "metric_samples", str(m.id), "data", MetricsMessage, m.data


def _counters(s: Session) -> Iterator[Problem]:
    for n in s.scalars(select(Node)):
        for field in ("config_generation", "reboot_counter"):
            value = getattr(n, field)
            if not 0 <= value <= MAX_COUNT:
                yield Problem("nodes", n.serial, field, f"{value} is out of range")
    for a in s.scalars(select(Assignment)):
        for field in ("restart_counter", "purge_counter"):
            value = getattr(a, field)
            if not 0 <= value <= MAX_COUNT:
                yield Problem("assignments", str(a.id), field, f"{value} is out of range")


def _log_lines(s: Session) -> Iterator[Problem]:
    for batch in s.scalars(select(LogBatch)):
        for number, raw in enumerate(gzip.decompress(batch.data_gz).splitlines(), 1):
            try:
                problem = _refusal(LogLine, load_json(raw, max_depth=4))
            except JsonRefused as exc:
                problem = str(exc)
            if problem:
                yield Problem("log_batches", str(batch.id), f"line {number}", problem)


def _all_numbers(s: Session) -> Iterator[Problem]:
    """Every column of every table (JSON documents walked), looked at for bad numbers."""
    for mapper in Base.registry.mappers:
        cls = mapper.class_
        table = mapper.local_table.name  # type: ignore[attr-defined]
        columns = [c.key for c in inspect(cls).column_attrs]
        for row in s.scalars(select(cls)):
            key = str(inspect(row).identity)
            for column in columns:
                for path, problem in _numbers(getattr(row, column), column):
                    yield Problem(table, key, path, problem)


def check_database(s: Session) -> list[Problem]:
    """Every problem found (an empty list: the database holds only what the API allows)."""
    problems = list(_all_numbers(s))
    problems += _counters(s)
    for table, row, field, rule, value in _rules(s):
        refusal = _refusal(rule, value)
        if refusal:
            problems.append(Problem(table, str(row), field, refusal))
    problems += _log_lines(s)
    return problems
