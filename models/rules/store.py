"""Pure functions the service's versioned pathway store builds on: canonical JSON, content
hash and a clinician-readable diff between two versions.

The service keeps every published version (never overwritten) with author, time and reason;
this module only says what a version *is* (its canonical bytes and hash) and what changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.rules.schema import Pathway, RuleSet

Document = Pathway | RuleSet


def parse_document(doc: Document | Mapping[str, Any]) -> Document:
    """A Pathway or RuleSet from a model or a plain dict (a dict with 'editors' is a pathway)."""
    if isinstance(doc, Pathway | RuleSet):
        return doc
    if "editors" in doc or "measurements" in doc:
        return Pathway.model_validate(dict(doc))
    return RuleSet.model_validate(dict(doc))


def canonical_dict(doc: Document | Mapping[str, Any]) -> dict[str, Any]:
    """Every field, defaults included, as plain JSON types."""
    return parse_document(doc).model_dump(mode="json")


def canonical_json(doc: Document | Mapping[str, Any]) -> str:
    """Deterministic JSON of a version: sorted keys, no whitespace, UTF-8 text kept."""
    return json.dumps(
        canonical_dict(doc), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def pathway_hash(doc: Document | Mapping[str, Any]) -> str:
    """sha256 of the canonical content, ``version`` left out: the same rules under a new
    version number hash the same, so the store can refuse a publish that changes nothing."""
    content = canonical_dict(doc)
    content.pop("version", None)
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Change:
    """One difference between two versions; ``path`` names rules by id, not by position."""

    path: str
    kind: str  # "added" | "removed" | "changed"
    old: Any
    new: Any

    @property
    def text_nb(self) -> str:
        where = _readable(self.path)
        if self.kind == "added":
            return f"Lagt til {where}: {_short(self.new)}"
        if self.kind == "removed":
            return f"Fjernet {where}: {_short(self.old)}"
        return f"Endret {where}: {_short(self.old)} → {_short(self.new)}"

    @property
    def text_en(self) -> str:
        where = _readable(self.path)
        if self.kind == "added":
            return f"Added {where}: {_short(self.new)}"
        if self.kind == "removed":
            return f"Removed {where}: {_short(self.old)}"
        return f"Changed {where}: {_short(self.old)} → {_short(self.new)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "old": self.old,
            "new": self.new,
            "text_nb": self.text_nb,
            "text_en": self.text_en,
        }


def _readable(path: str) -> str:
    return " › ".join(p.replace("~1", "/").replace("~0", "~") for p in path.strip("/").split("/"))


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "…"


def _escape(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


# Lists whose items have a natural key: diff them by key so "rules › spo2-low" stays put when
# a rule is inserted above it.
_KEY_FIELDS = ("id", "measurement")


def _list_key(old: list[Any], new: list[Any]) -> str | None:
    for field in _KEY_FIELDS:
        if all(isinstance(x, dict) and field in x for x in old + new) and all(
            len({x[field] for x in side}) == len(side) for side in (old, new)
        ):
            return field
    return None


def _diff(old: Any, new: Any, path: str, out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}/{_escape(key)}"
            if key not in old:
                out.append(Change(sub, "added", None, new[key]))
            elif key not in new:
                out.append(Change(sub, "removed", old[key], None))
            else:
                _diff(old[key], new[key], sub, out)
        return
    if isinstance(old, list) and isinstance(new, list):
        field = _list_key(old, new) if (old or new) else None
        if field is not None:
            old_by = {x[field]: x for x in old}
            new_by = {x[field]: x for x in new}
            for key in [x[field] for x in old] + [x[field] for x in new if x[field] not in old_by]:
                sub = f"{path}/{_escape(key)}"
                if key not in new_by:
                    out.append(Change(sub, "removed", old_by[key], None))
                elif key not in old_by:
                    out.append(Change(sub, "added", None, new_by[key]))
                else:
                    _diff(old_by[key], new_by[key], sub, out)
            return
        if len(old) == len(new):
            for i, (a, b) in enumerate(zip(old, new, strict=True)):
                _diff(a, b, f"{path}/{i}", out)
            return
    if old != new:
        out.append(Change(path or "/", "changed", old, new))


def diff_pathways(
    old: Document | Mapping[str, Any], new: Document | Mapping[str, Any]
) -> list[Change]:
    """What changed from ``old`` to ``new``, as (path, old, new) with wording for clinicians.

    Both are compared in canonical form, so formatting and key order never show as changes.
    """
    out: list[Change] = []
    _diff(canonical_dict(old), canonical_dict(new), "", out)
    return out


# Wording only: titles, descriptions, rule texts, sources and labels. A change anywhere else
# (thresholds, bands, levels, rules added, removed or switched, windows, the triage policy, the
# model, the schedule, the editors) can change who is red, so it waits for a second clinician.
_WORDING = re.compile(
    r"^/(version"
    r"|title_(nb|en)|description_(nb|en)|sources(/.*)?"
    r"|rules/[^/]+/(text_nb|text_en|source)"
    r"|(levels|options)/[^/]+/label_(nb|en))$"
)


def changes_needing_approval(
    old: Document | Mapping[str, Any] | None, new: Document | Mapping[str, Any]
) -> list[Change]:
    """The changes from ``old`` to ``new`` that need four-eyes approval (``old`` None: all)."""
    if old is None:
        return [Change("/", "added", None, canonical_dict(new))]
    return [c for c in diff_pathways(old, new) if not _WORDING.match(c.path)]
