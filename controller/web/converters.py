"""URL converters of the HTTP layers: typed path parameters.

<id:rid>                        an ASCII decimal id (1-18 digits) as int; a superscript or
                                Arabic-Indic digit never matches (404), unlike isdigit()
<key(reserved="claim"):key>     one path segment (an object's name, serial or uuid) that is
                                not one of the literal words of sibling routes, so
                                ``GET /nodes/claim`` never looks up a node named "claim"
                                (it is 405 with ``Allow: POST``)
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from werkzeug.routing import BaseConverter, Map

__all__ = ["IdConverter", "KeyConverter", "register_converters"]

MAX_ID_DIGITS = 18


class IdConverter(BaseConverter):
    regex = f"[0-9]{{1,{MAX_ID_DIGITS}}}"
    weight = 50

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))


class KeyConverter(BaseConverter):
    """A segment other than the ``reserved`` words (comma-separated)."""

    def __init__(self, url_map: Map, reserved: str = "") -> None:
        super().__init__(url_map)
        words = [w for w in reserved.split(",") if w]
        self.reserved = frozenset(words)
        avoid = "|".join(re.escape(w) for w in words)
        self.regex = f"(?!(?:{avoid})$)[^/]+" if words else "[^/]+"


def register_converters(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
    app.url_map.converters["key"] = KeyConverter
