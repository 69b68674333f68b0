"""Shipped pathway and rule-set documents (JSON data, not code).

Each ``<id>.json`` here is a pathway; each ``rule_sets/<id>.json`` a shared rule set such as
NEWS2. :mod:`models.rules.library` parses and validates them; this module only finds and reads
the files, so it imports nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PATHWAY_DIR = Path(__file__).parent
RULE_SET_DIR = PATHWAY_DIR / "rule_sets"


def shipped_pathway_ids() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PATHWAY_DIR.glob("*.json")))


def shipped_rule_set_ids() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in RULE_SET_DIR.glob("*.json")))


def _read(folder: Path, doc_id: str, known: tuple[str, ...], what: str) -> dict[str, Any]:
    if doc_id not in known:
        raise KeyError(f"unknown {what} '{doc_id}'; shipped: {', '.join(known)}")
    data: dict[str, Any] = json.loads((folder / f"{doc_id}.json").read_text(encoding="utf-8"))
    return data


def read_pathway(pathway_id: str) -> dict[str, Any]:
    """The shipped pathway document as plain JSON data."""
    return _read(PATHWAY_DIR, pathway_id, shipped_pathway_ids(), "pathway")


def read_rule_set(rule_set_id: str) -> dict[str, Any]:
    """The shipped rule-set document as plain JSON data."""
    return _read(RULE_SET_DIR, rule_set_id, shipped_rule_set_ids(), "rule set")
