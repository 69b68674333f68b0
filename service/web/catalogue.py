"""Message ids that the templates build from data ("level:" ~ level …), for the catalogue test.

It reads the pages' own definitions, so it sits above them: i18n itself imports no page.
"""

from __future__ import annotations

from models.rules import RULE_TYPES
from service.domain.pathways import VERSION_STATUSES
from service.security.principal import Role
from service.web.admin import BAND_BOUNDS, DRY_RUN_VALUES, NUMBER_FIELDS, SIGN_OFF_DECISIONS
from service.web.i18n import LANGUAGES
from service.web.pages import STEADY
from service.web.render import NAV


def dynamic_messages() -> list[str]:
    """Message ids the templates build from data ("level:" ~ level …); the catalogue test uses them."""
    families: dict[str, tuple[str, ...]] = {
        # From their single definitions: a new role or rule type without a message fails the test.
        "role": tuple(role.value for role in Role),
        "level": ("red", "yellow", "green"),
        "state": ("open", "acknowledged", "escalated", "resolved"),
        "language": LANGUAGES,
        "sex": ("female", "male", "other", "unknown"),
        "decided": ("rules", "model", "rules+model", "none"),
        "rule": RULE_TYPES,
        "field": NUMBER_FIELDS,
        "op": (">", ">=", "<", "<="),
        "bound": BAND_BOUNDS,
        "measurement": DRY_RUN_VALUES,
        "change": ("added", "removed", "changed"),
        "version-status": VERSION_STATUSES,
        "verdict": ("ok", "drift", "warning", "insufficient-data"),
        "decision": SIGN_OFF_DECISIONS,
        "audit": ("read", "write", "refuse"),
        "history": ("acknowledge", "escalate", "resolve"),
        "trend": ("up", "down", "steady"),
        "short": tuple(STEADY),
    }
    keys = [f"{family}:{value}" for family, values in families.items() for value in values]
    return keys + [label for _, label in NAV]
