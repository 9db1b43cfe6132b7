"""Site manifests: YAML documents ``{kind, spec}`` under ``sites/<site>/`` → checked objects.

The documents are those ``outpost apply -f`` takes (the spec is the operator API's
body, validated by the same pydantic models), plus ``Site``:

    kind: App      spec: AppBody      runs on the site's nodes (its selector plus the site's)
    kind: Network  spec: NetworkBody
    kind: Node     spec: {serial, device_cert_sha256, ek_sha256, labels, settings}
                                                      the node joins the site; one not
                                                      claimed yet is claimed pinned to its
                                                      fingerprints (unpinned only when the
                                                      controller allows unpinned claims)
    kind: Site     spec: {selector, nodes}            default selector {site: <folder>}
    kind: Rollout  spec: {app, rings, budgets}        a new version of the app committed
                                                      later rolls out through these rings

Every error carries the file, the line of the offending key and the reason; one bad
document refuses the whole revision.  YAML anchors and aliases are refused where the
parser meets the first one (:class:`NoAliasLoader`), so an alias bomb (a few hundred
bytes naming a list of lists of … billions of nodes) costs nothing; files are bounded in
size and number before they are read (:mod:`controller.gitops.repo`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from controller.domain.bodies import (
    AppBody,
    Fingerprint,
    LabelKey,
    LabelValue,
    NetworkBody,
    NodePatch,
)
from controller.domain.common import Body
from controller.errors import ApiError
from controller.rollouts.plan import BudgetBody, RingBody
from protocol.desired_state import Name
from protocol.messages import Serial

__all__ = [
    "Document",
    "ManifestError",
    "NoAliasLoader",
    "NodeDoc",
    "RolloutDoc",
    "SiteDoc",
    "SiteSet",
    "api_error_lines",
    "load_sites",
]

KINDS = ("App", "Network", "Node", "Rollout", "Site")
MAX_DOCUMENTS = 1000


class NodeDoc(NodePatch):
    """A node of the site: claimed (pinned to its fingerprints) when it is not yet."""

    serial: Serial
    device_cert_sha256: Fingerprint = None
    ek_sha256: Fingerprint = None


class SiteDoc(Body):
    selector: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=16)
    """Labels a node of this site carries (default ``{site: <folder name>}``)."""
    nodes: list[Serial] = Field(default_factory=list, max_length=1000)
    """Serials that belong to the site (they get the selector's labels)."""


class RolloutDoc(Body):
    """A committed new version of ``app`` rolls out through these rings (not at once)."""

    app: Name
    rings: list[RingBody] = Field(min_length=1, max_length=10)
    budgets: list[BudgetBody] = Field(default_factory=list, max_length=8)


class _Envelope(Body):
    kind: Literal["App", "Network", "Node", "Rollout", "Site"]
    spec: dict[str, Any]


@dataclass(frozen=True)
class ManifestError:
    file: str
    line: int
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class Document:
    """One validated document and where it came from (line of each key, for errors)."""

    site: str
    file: str
    kind: str
    spec: Any  # AppBody | NetworkBody | NodeDoc | SiteDoc
    line: int
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def line_of(self, path: tuple[str, ...]) -> int:
        """The line of the longest prefix of ``path`` that appears in the YAML."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return self.line


@dataclass
class SiteSet:
    """Everything one revision defines, per site."""

    documents: list[Document] = field(default_factory=list)
    selectors: dict[str, dict[str, str]] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Document]:
        return [d for d in self.documents if d.kind == kind]


def _line_map(node: yaml.Node, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    out: dict[tuple[str, ...], int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            out[sub] = key.start_mark.line + 1
            out.update({k: v for k, v in _line_map(value, sub).items() if k != sub})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_line_map(item, (*path, str(i))))
    return out


class NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader refusing every anchor (``&a``) and alias (``*a``): manifests
    never need them, and each alias multiplies what a small file expands to."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases are not allowed in manifests", event.start_mark
            )
        return super().compose_node(parent, index)


def _yaml_documents(file: str, text: str) -> list[tuple[Any, dict[tuple[str, ...], int]]]:
    loader = NoAliasLoader(text)
    docs = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            docs.append((loader.construct_document(node), _line_map(node)))
            if len(docs) > MAX_DOCUMENTS:
                raise ManifestErrorList([ManifestError(file, 1, "too many documents")])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ManifestErrorList(
            [ManifestError(file, line, f"not valid YAML: {exc.problem or exc}")]
        ) from exc
    finally:
        loader.dispose()
    return docs


class ManifestErrorList(Exception):
    def __init__(self, errors: list[ManifestError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def _spec_model(kind: str) -> type[Body]:

    models: dict[str, type[Body]] = {
        "App": AppBody,
        "Network": NetworkBody,
        "Node": NodeDoc,
        "Rollout": RolloutDoc,
        "Site": SiteDoc,
    }
    return models[kind]


def _check(file: str, site: str, data: Any, lines: dict[tuple[str, ...], int]) -> Document:
    doc_line = lines.get((), 1)
    try:
        env = _Envelope.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err["loc"])
        where = ".".join(loc) or "document"
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), doc_line)
        raise ManifestErrorList(
            [
                ManifestError(
                    file, line, f"{where}: {err['msg']} (kind is one of {', '.join(KINDS)})"
                )
            ]
        ) from exc
    try:
        spec = _spec_model(env.kind).model_validate(env.spec)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            path = ("spec", *(str(p) for p in err["loc"]))
            doc = Document(site, file, env.kind, None, doc_line, lines)
            errors.append(ManifestError(file, doc.line_of(path), f"{'.'.join(path)}: {err['msg']}"))
        raise ManifestErrorList(errors) from exc
    return Document(site, file, env.kind, spec, doc_line, lines)


def _site_of(file: str) -> str | None:
    parts = file.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == "sites" else None


def load_sites(files: dict[str, str]) -> SiteSet:
    """Parse and validate every file; raises :class:`ManifestErrorList` with all errors."""
    out = SiteSet()
    errors: list[ManifestError] = []
    for file in sorted(files):
        site = _site_of(file)
        if site is None or not _valid_site(site):
            errors.append(
                ManifestError(file, 1, "manifests live in sites/<site>/ (site: [A-Za-z0-9._-])")
            )
            continue
        try:
            for data, lines in _yaml_documents(file, files[file]):
                if data is None:
                    continue
                out.documents.append(_check(file, site, data, lines))
        except ManifestErrorList as exc:
            errors.extend(exc.errors)
    errors.extend(_cross_checks(out))
    if errors:
        raise ManifestErrorList(errors)
    return out


def _valid_site(site: str) -> bool:
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9._-]{1,63}", site))


def _cross_checks(sites: SiteSet) -> list[ManifestError]:
    """Names unique across the repository; at most one Site document per folder."""
    errors: list[ManifestError] = []
    seen: dict[tuple[str, str], Document] = {}
    for doc in sites.documents:
        if doc.kind == "Site":
            key = ("Site", doc.site)
        elif doc.kind == "Rollout":
            key = ("Rollout", doc.spec.app)
        elif doc.kind == "Node":
            key = ("Node", doc.spec.serial)
        else:
            key = (doc.kind, doc.spec.name)
        if key in seen:
            first = seen[key]
            errors.append(
                ManifestError(
                    doc.file,
                    doc.line,
                    f"{doc.kind} {key[1]!r} is also defined in {first.file}:{first.line}",
                )
            )
            continue
        seen[key] = doc
    for doc in sites.of_kind("Site"):
        sites.selectors[doc.site] = dict(doc.spec.selector or {"site": doc.site})
        for serial in doc.spec.nodes:
            if ("Node", serial) in seen and seen[("Node", serial)].site != doc.site:
                errors.append(ManifestError(doc.file, doc.line, f"node {serial!r} is in two sites"))
    for doc in sites.documents:
        sites.selectors.setdefault(doc.site, {"site": doc.site})
    for doc in sites.of_kind("Rollout"):
        app = seen.get(("App", doc.spec.app))
        if app is None:
            errors.append(
                ManifestError(
                    doc.file,
                    doc.line_of(("spec", "app")),
                    f"no App {doc.spec.app!r} in the repository",
                )
            )
    return errors


def api_error_lines(doc: Document, exc: ApiError) -> list[ManifestError]:
    """The API's refusal of a document, as errors on the lines of the fields it names."""
    details = exc.details if isinstance(exc.details, list) else []
    if not details:
        return [ManifestError(doc.file, doc.line, exc.message)]
    out = []
    for d in details:
        field_path = str(d.get("field", ""))
        path = ("spec", *field_path.split(".")) if field_path else ("spec",)
        out.append(
            ManifestError(doc.file, doc.line_of(path), f"{'.'.join(path)}: {d.get('error', '')}")
        )
    return out
