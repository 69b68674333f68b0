"""The shipped pathways and rule sets, parsed once per process and shared (they are frozen)."""

from __future__ import annotations

from functools import cache

from models.pathways import read_pathway, read_rule_set, shipped_pathway_ids
from models.rules.schema import Pathway, RuleSet


@cache
def load_rule_set(rule_set_id: str) -> RuleSet:
    """A shipped rule set (``news2``, ``news2-scale2``); KeyError if unknown."""
    return RuleSet.model_validate(read_rule_set(rule_set_id))


@cache
def load_pathway(pathway_id: str) -> Pathway:
    """A shipped pathway by id; KeyError if unknown."""
    return Pathway.model_validate(read_pathway(pathway_id))


def load_shipped_pathways() -> dict[str, Pathway]:
    """Every shipped pathway by id: copd, heart-failure, post-operative, oncology, paediatric."""
    return {pid: load_pathway(pid) for pid in shipped_pathway_ids()}
