"""The OpenAPI document, built from the routes themselves.

Each operator route declares its summary and its pydantic body/query models with
:func:`doc`; :func:`build_openapi` walks Flask's URL map, so the document lists
exactly the routes that exist (a test checks none is undocumented).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel

__all__ = ["RouteDoc", "build_openapi", "doc"]

F = TypeVar("F", bound=Callable[..., Any])
_DOC_ATTR = "__outpost_doc__"


@dataclass(frozen=True)
class RouteDoc:
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    raw_body: str | None = None  # content type of a streamed body (image uploads)
    status: int = 200


def doc(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    raw_body: str | None = None,
    status: int = 200,
) -> Callable[[F], F]:
    def wrap(fn: F) -> F:
        setattr(fn, _DOC_ATTR, RouteDoc(summary, body, query, raw_body, status))
        return fn

    return wrap


def route_doc(fn: Callable[..., Any]) -> RouteDoc | None:
    current: Callable[..., Any] | None = fn
    while current is not None:
        found = getattr(current, _DOC_ATTR, None)
        if isinstance(found, RouteDoc):
            return found
        current = getattr(current, "__wrapped__", None)
    return None


def _path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def _schema(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs.update(schema.pop("$defs", {}))
    defs[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_openapi(app: Flask, prefix: str = "/api/v1") -> dict[str, Any]:
    paths: dict[str, Any] = {}
    defs: dict[str, Any] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(prefix) or rule.rule.startswith(f"{prefix}/device"):
            continue
        view = app.view_functions[rule.endpoint]
        rdoc = route_doc(view)
        if rdoc is None:
            continue
        role = getattr(view, "__outpost_role__", None)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op: dict[str, Any] = {
                "summary": rdoc.summary,
                "operationId": f"{rule.endpoint}.{method.lower()}",
                "parameters": [
                    {"name": a, "in": "path", "required": True, "schema": {"type": "string"}}
                    for a in sorted(rule.arguments)
                ],
                "responses": {
                    str(rdoc.status): {"description": "success"},
                    "4XX": {
                        "description": "error",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                },
            }
            if role:
                op["security"] = [{"token": []}]
                op["x-required-role"] = role
            if rdoc.query is not None:
                for name, field in rdoc.query.model_fields.items():
                    op["parameters"].append(
                        {
                            "name": name,
                            "in": "query",
                            "required": field.is_required(),
                            "schema": rdoc.query.model_json_schema()["properties"][name],
                        }
                    )
            if rdoc.body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _schema(rdoc.body, defs)}},
                }
            elif rdoc.raw_body:
                op["requestBody"] = {
                    "required": True,
                    "content": {rdoc.raw_body: {"schema": {"type": "string", "format": "binary"}}},
                }
            paths.setdefault(_path(rule.rule), {})[method.lower()] = op
    defs["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {"type": "object"}},
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Outpost operator API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
    }
