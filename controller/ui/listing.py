"""Sorting, paging and search for the UI's list pages, from the query string.

    ?sort=<column>&dir=asc|desc&page=<n>&per=25|50|100&q=<text>

:func:`list_args` reads them with safe defaults (an unknown column is the page's default,
a page past the end is the last page; no input is an error); :func:`paginate` applies
them to a select (ORDER BY whitelisted columns only, a stable tiebreaker, a count, LIMIT
and OFFSET, all in SQL); :func:`page_of` does the same to a list already in memory.
``list_url`` (a template global) is the current page's URL with some arguments changed:
the ``sort_header`` and ``pages`` macros in ``_macros.html`` build their links with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from flask import request, url_for
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import QueryableAttribute, Session

from controller.ui.blueprint import ui

__all__ = [
    "DEFAULT_PER",
    "PER_CHOICES",
    "ListArgs",
    "Listing",
    "SortColumn",
    "Sorts",
    "contains",
    "list_args",
    "list_url",
    "page_of",
    "paginate",
    "sorted_by",
]

T = TypeVar("T")
SortColumn = ColumnElement[Any] | QueryableAttribute[Any]
Sorts = Mapping[str, Sequence[SortColumn]]
"""A list's sortable columns: the ``sort`` value → the columns it orders by, in turn."""
PER_CHOICES = (25, 50, 100)
DEFAULT_PER = 50
MAX_Q = 128


@dataclass(frozen=True)
class ListArgs:
    sort: str
    desc: bool
    page: int
    per: int
    q: str


@dataclass(frozen=True)
class Listing(Generic[T]):
    """One page of a list: its rows and where it lies in the whole."""

    items: list[T]
    total: int
    page: int
    pages: int
    per: int
    sort: str
    desc: bool

    @property
    def first(self) -> int:
        """1-based position of the first row shown (0: none)."""
        return (self.page - 1) * self.per + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.page * self.per, self.total)


def _whole(raw: str | None, default: int) -> int:
    text = (raw or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        return default
    return int(text)


def list_args(
    args: Mapping[str, str], sorts: Iterable[str], default: str, default_desc: bool = False
) -> ListArgs:
    """The list arguments of a query string; anything unusable falls back to a default."""
    sort = args.get("sort", "")
    if sort not in set(sorts):
        sort = default
    direction = args.get("dir", "")
    desc = direction == "desc" if direction in ("asc", "desc") else default_desc and sort == default
    per = _whole(args.get("per"), DEFAULT_PER)
    q = "".join(c for c in args.get("q", "")[: MAX_Q * 2] if c.isprintable()).strip()[:MAX_Q]
    return ListArgs(
        sort=sort,
        desc=desc,
        page=max(_whole(args.get("page"), 1), 1),
        per=per if per in PER_CHOICES else DEFAULT_PER,
        q=q,
    )


def contains(text: str, *columns: Any) -> ColumnElement[bool]:
    """True where any of ``columns`` holds ``text`` (case-insensitive, ``%`` and ``_`` taken
    literally: an ILIKE pattern escaped with ``\\``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(*(column.ilike(f"%{escaped}%", escape="\\") for column in columns))


def _clamp(page: int, total: int, per: int) -> tuple[int, int]:
    pages = max(1, -(-total // per))
    return min(max(page, 1), pages), pages


def _ordered(column: SortColumn, desc: bool) -> Any:
    """Never-set values (NULL) count as the smallest, the same on SQLite and PostgreSQL."""
    return column.desc().nulls_last() if desc else column.asc().nulls_first()


def sorted_by(
    stmt: Select[Any],
    args: ListArgs,
    columns: Sorts,
    tiebreak: SortColumn,
) -> Select[Any]:
    """``stmt`` ordered by ``columns[args.sort]`` then ``tiebreak``, in ``args``' direction."""
    return stmt.order_by(*(_ordered(c, args.desc) for c in (*columns[args.sort], tiebreak)))


def paginate(
    s: Session,
    stmt: Select[Any],
    args: ListArgs,
    columns: Sorts,
    tiebreak: SortColumn,
) -> Listing[Any]:
    """One page of ``stmt``'s rows, sorted by ``columns[args.sort]`` then ``tiebreak``."""
    total = s.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    page, pages = _clamp(args.page, total, args.per)
    stmt = sorted_by(stmt, args, columns, tiebreak)
    rows = s.execute(stmt.limit(args.per).offset((page - 1) * args.per)).all()
    return Listing(list(rows), total, page, pages, args.per, args.sort, args.desc)


def page_of(items: list[T], args: ListArgs, key: Callable[[T], Any] | None = None) -> Listing[T]:
    """:func:`paginate` for rows already in memory (sorted by ``key`` when given)."""
    if key is not None:
        items = sorted(items, key=key, reverse=args.desc)
    page, pages = _clamp(args.page, len(items), args.per)
    start = (page - 1) * args.per
    return Listing(
        items[start : start + args.per], len(items), page, pages, args.per, args.sort, args.desc
    )


@ui.app_template_global("per_choices")
def per_choices() -> tuple[int, ...]:
    return PER_CHOICES


@ui.app_template_global("list_url")
def list_url(**changes: Any) -> str:
    """This page's URL with ``changes`` to its query (None drops an argument); a new sort,
    page size or search starts again at page 1."""
    args: dict[str, Any] = request.args.to_dict()
    if {"sort", "dir", "per", "q"} & changes.keys():
        args.pop("page", None)
    for name, value in changes.items():
        if value is None:
            args.pop(name, None)
        else:
            args[name] = value
    base = url_for(request.endpoint or "ui.overview", **(request.view_args or {}))
    return f"{base}?{urlencode(args)}" if args else base
