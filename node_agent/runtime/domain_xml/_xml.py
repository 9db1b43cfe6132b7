"""Helpers shared by the element classes: building children, reading text, memory units."""

from __future__ import annotations

import xml.etree.ElementTree as ET

OUTPOST_NS = "https://outpost.dev/xmlns/app/1"
"""Namespace of Outpost's element inside the domain's ``<metadata>``."""

ET.register_namespace("outpost", OUTPOST_NS)

UNIT_TO_KIB = {
    "b": 1 / 1024,
    "bytes": 1 / 1024,
    "k": 1,
    "kib": 1,
    "kb": 1000 / 1024,
    "m": 1024,
    "mib": 1024,
    "mb": 1000**2 / 1024,
    "g": 1024**2,
    "gib": 1024**2,
    "gb": 1000**3 / 1024,
}


def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    """Append ``<tag attrs>text</tag>`` to ``parent`` and return it."""
    child = ET.SubElement(parent, tag, attrs)
    if text is not None:
        child.text = text
    return child


def text(element: ET.Element | None, default: str = "") -> str:
    """The stripped text of ``element``, or ``default`` when absent or empty."""
    if element is None or element.text is None:
        return default
    return element.text.strip()


def attr(element: ET.Element | None, name: str, default: str = "") -> str:
    """Attribute ``name`` of ``element`` (which may be missing)."""
    return element.get(name, default) if element is not None else default
