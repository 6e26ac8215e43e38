"""Resource files as wrenctl reads them: YAML or JSON, several documents, Lists, all checked first.

    text ──read_documents()──► [Document] ──validate_documents()──► [(Document, Resource)]

A file is accepted whole or not at all: every document is parsed and validated before anything
is written, and the error says which document of which file, which resource and which field, so
the user can fix all of them in one go. Pure: no datastore, no filesystem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from wren.errors import ValidationError
from wren.kinds import UnknownKind, kind_by_name
from wren.model import Resource, parse

__all__ = ["Document", "DocumentError", "read_documents", "validate_documents"]


@dataclass(frozen=True, slots=True)
class Document:
    """One resource body and where it came from (`pools.yaml document 2`, `item 3` of a List)."""

    source: str
    index: int  # 1-based position of the document in the file
    body: Any
    item: int | None = None  # 1-based position inside a List document

    @property
    def where(self) -> str:
        where = f"{self.source} document {self.index}"
        return where if self.item is None else f"{where} item {self.item}"


class DocumentError(Exception):
    """One or more documents are unreadable or invalid; nothing was written."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _is_list(body: Mapping[str, Any]) -> bool:
    kind = body.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and "items" in body


def _list_items(doc: Document) -> list[Document]:
    """The items of `kind: List` (kubectl) or `kind: IPPoolList` (calicoctl -o yaml output)."""
    body = doc.body
    items = body.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise DocumentError([f"{doc.where}: items of a {body['kind']} must be a list"])
    item_kind = body["kind"][: -len("List")] or None
    out = []
    for i, raw in enumerate(items, start=1):
        item = dict(raw) if isinstance(raw, dict) else raw
        if isinstance(item, dict):
            if item_kind and "kind" not in item:
                item["kind"] = item_kind
            if "apiVersion" not in item and "apiVersion" in body:
                item["apiVersion"] = body["apiVersion"]
        out.append(Document(doc.source, doc.index, item, item=i))
    return out


def read_documents(text: str, *, source: str) -> list[Document]:
    """Every resource document in `text`: YAML (`---`-separated) or JSON, a top-level array, or a
    List, flattened in order. Empty documents are skipped."""
    try:
        if text.lstrip().startswith(("{", "[")):
            raw: list[Any] = [json.loads(text)]
        else:
            raw = list(yaml.safe_load_all(text))
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise DocumentError([f"{source}: not valid YAML or JSON: {e}"]) from None
    docs: list[Document] = []
    for index, body in enumerate(raw, start=1):
        if body is None:
            continue
        parts = body if isinstance(body, list) else [body]
        for item_no, part in enumerate(parts, start=1):
            doc = Document(source, index, part, item=item_no if isinstance(body, list) else None)
            if isinstance(part, dict) and _is_list(part):
                docs.extend(_list_items(doc))
            else:
                docs.append(doc)
    if not docs:
        raise DocumentError([f"{source}: no resources found"])
    return docs


def _with_namespace(doc: Document, namespace: str | None) -> Any:
    """The body with `-n` applied: fills in a namespaced resource's missing namespace."""
    body = doc.body
    if namespace is None or not isinstance(body, dict):
        return body
    try:
        kind = kind_by_name(str(body.get("kind", "")))
    except UnknownKind:
        return body  # parse() reports the kind
    if not kind.namespaced:
        return body
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return body
    given = meta.get("namespace")
    if given and given != namespace:
        raise DocumentError([
            f"{doc.where}: {kind.name} {meta.get('name')!r} is in namespace {given!r} but "
            f"--namespace {namespace!r} was given; remove one of them"
        ])
    return {**body, "metadata": {**meta, "namespace": namespace}}


def validate_documents(
    docs: list[Document], *, namespace: str | None = None
) -> list[tuple[Document, Resource]]:
    """Parse and validate every document; DocumentError lists every problem found.

    Also refuses the same resource twice in one batch: which of the two should win is a guess.
    """
    problems: list[str] = []
    out: list[tuple[Document, Resource]] = []
    seen: dict[tuple[str, str, str], Document] = {}
    for doc in docs:
        if not isinstance(doc.body, dict):
            problems.append(f"{doc.where}: a resource must be a mapping, got {doc.body!r:.60}")
            continue
        try:
            res = parse(_with_namespace(doc, namespace))
        except DocumentError as e:
            problems.extend(e.problems)
            continue
        except ValidationError as e:
            problems.append(f"{doc.where}: {e}")
            continue
        key = (res.KIND, res.metadata.namespace or "", res.metadata.name)
        if key in seen:
            problems.append(
                f"{doc.where}: {res.KIND} {res.metadata.name!r} is also defined in "
                f"{seen[key].where}; keep one"
            )
            continue
        seen[key] = doc
        out.append((doc, res))
    if problems:
        raise DocumentError(problems)
    return out
