"""The OpenAPI document, built from the routes and the models the server validates with.

Each operator route declares its summary, its pydantic body/query models, its success
statuses and links with :func:`doc`; :func:`build_openapi` walks Flask's URL map, so the
document lists exactly the routes that exist (a test checks none is undocumented), the
path parameters as their converters match them (``<id:rid>`` an integer, a ``key`` never
one of its sibling literals), and every status a route can answer:

    success        ``status`` (and ``also``)
    401 403        routes that need a token (missing/unknown token, too small a role)
    404            routes with path parameters, and every write (it may name another object)
    409            every write (a name taken, an object in use, a concurrent identical create)
    413 422        routes with a body (too large; not JSON, too deep, a bad number, a field
                   against the schema) or a query (422)
    ``errors``     whatever else the route declares (e.g. ``GET /git/source`` 404)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema, JsonSchemaValue
from werkzeug.routing import AnyConverter, Rule

from controller.web.converters import MAX_ID_DIGITS, IdConverter, KeyConverter

__all__ = ["Link", "RouteDoc", "build_openapi", "doc", "route_doc"]

F = TypeVar("F", bound=Callable[..., Any])
_DOC_ATTR = "__outpost_doc__"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: the operation (``endpoint.method``) a success answer leads to,
    with its path parameters taken from the answer (``$response.body#/name``)."""

    operation: str
    parameters: dict[str, str]


@dataclass(frozen=True)
class RouteDoc:
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    raw_body: str | None = None  # content type of a streamed body (image uploads)
    status: int = 200
    also: tuple[int, ...] = ()
    """Other success statuses (e.g. 200 "already so" beside 201 "created")."""
    body_optional: bool = False
    """An empty body is allowed (an action's options)."""
    errors: tuple[int, ...] = ()
    links: dict[str, Link] = field(default_factory=dict)


def doc(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    raw_body: str | None = None,
    status: int = 200,
    also: tuple[int, ...] = (),
    body_optional: bool = False,
    errors: tuple[int, ...] = (),
    links: dict[str, Link] | None = None,
) -> Callable[[F], F]:
    rdoc = RouteDoc(
        summary, body, query, raw_body, status, also, body_optional, errors, links or {}
    )

    def wrap(fn: F) -> F:
        setattr(fn, _DOC_ATTR, rdoc)
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


def openapi_path(rule: str) -> str:
    """``/nodes/<key(reserved="claim"):key>`` → ``/nodes/{key}``."""
    return re.sub(r"<(?:[^<>:]+:)?([A-Za-z_]+)>", r"{\1}", rule)


def _param_schema(rule: Rule, name: str) -> dict[str, Any]:
    conv = rule._converters.get(name)
    if isinstance(conv, IdConverter):
        return {"type": "integer", "minimum": 0, "maximum": 10**MAX_ID_DIGITS - 1}
    if isinstance(conv, AnyConverter):
        return {"type": "string", "enum": sorted(conv.items)}
    if isinstance(conv, KeyConverter) and conv.reserved:
        avoid = "|".join(re.escape(w) for w in sorted(conv.reserved))
        return {"type": "string", "pattern": f"^(?!(?:{avoid})$)[^/]+$"}
    return {"type": "string", "pattern": "^[^/]+$"}


class ServerRules(GenerateJsonSchema):
    """pydantic's JSON Schema, closed where the server is: a ``dict[Key, Value]`` whose
    keys have a pattern takes no other keys (pydantic states only ``patternProperties``,
    which alone lets any other key through)."""

    def dict_schema(self, schema: Any) -> JsonSchemaValue:
        out = super().dict_schema(schema)
        if "patternProperties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out


def model_schema(model: type[BaseModel], ref_template: str = DEFAULT_REF_TEMPLATE) -> Any:
    """The JSON Schema of ``model`` as the document states it."""
    return model.model_json_schema(ref_template=ref_template, schema_generator=ServerRules)


def _schema(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    schema = model_schema(model, "#/components/schemas/{model}")
    defs.update(schema.pop("$defs", {}))
    defs[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


_ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_REASONS = {
    400: "malformed request",
    401: "no token, or an unknown one",
    403: "the token's role is too small",
    404: "no such object (in the path, or named in the body)",
    405: "method not allowed",
    409: "conflicts with what is stored (name taken, in use, concurrent change)",
    413: "body too large",
    414: "the request line (path and query) is over 4 KiB",
    422: "the body or query is invalid (not JSON, too deep, a bad number, a field)",
    431: "too many headers, or one too large",
}


def _error_statuses(rule: Rule, method: str, rdoc: RouteDoc, role: str | None) -> set[int]:
    out = set(rdoc.errors) | {414, 431}  # the HTTP server's own limits, on any request
    if role:
        out |= {401, 403}
    if rule.arguments:
        out.add(404)
    if rule.websocket:
        out.add(400)  # not a WebSocket handshake
    if method in WRITES:
        out |= {404, 409}
    if rdoc.body is not None or rdoc.raw_body:
        out |= {413, 422}
    if rdoc.query is not None:
        out.add(422)
    return out


def _operation(
    rule: Rule, method: str, rdoc: RouteDoc, role: str | None, defs: dict[str, Any]
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in (rdoc.status, *rdoc.also):
        responses[str(status)] = {
            "description": "success",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    if rdoc.links:
        responses[str(rdoc.status)]["links"] = {
            name: {"operationId": link.operation, "parameters": link.parameters}
            for name, link in rdoc.links.items()
        }
    for status in sorted(_error_statuses(rule, method, rdoc, role)):
        responses[str(status)] = {"description": _REASONS[status], "content": _ERROR_REF}
    op: dict[str, Any] = {
        "summary": rdoc.summary,
        "operationId": f"{rule.endpoint}.{method.lower()}",
        "parameters": [
            {"name": a, "in": "path", "required": True, "schema": _param_schema(rule, a)}
            for a in sorted(rule.arguments)
        ],
        "responses": responses,
    }
    if role:
        op["security"] = [{"token": []}]
        op["x-required-role"] = role
    if rdoc.query is not None:
        props = model_schema(rdoc.query)["properties"]
        for name, fld in rdoc.query.model_fields.items():
            op["parameters"].append(
                {"name": name, "in": "query", "required": fld.is_required(), "schema": props[name]}
            )
    if rdoc.body is not None:
        op["requestBody"] = {
            "required": not rdoc.body_optional,
            "content": {"application/json": {"schema": _schema(rdoc.body, defs)}},
        }
    elif rdoc.raw_body:
        op["requestBody"] = {
            "required": True,
            "content": {
                rdoc.raw_body: {"schema": {"type": "string", "format": "binary", "minLength": 1}}
            },
        }
    return op


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}


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
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = _operation(
                rule, method, rdoc, role, defs
            )
    defs["Error"] = ERROR_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {"title": "Outpost operator API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
    }
