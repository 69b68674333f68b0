"""Who may read, publish and approve a pathway version, by its scope.

A scope is the regional template library (``organisation`` None, owned by admin), an
organisation, or one unit of an organisation. These predicates are the one pathway rule; they
move into the shared visibility module once it exists.
"""

from __future__ import annotations

from models.rules.schema import Editors
from service.security.principal import Principal, Role
from service.security.visibility import in_scope


def may_read_pathway_scope(principal: Principal, organisation: str | None) -> bool:
    """Templates are for everyone; an organisation's own versions for that organisation (and admin)."""
    return (
        organisation is None
        or principal.role is Role.ADMIN
        or principal.organisation == organisation
    )


def may_edit_pathway(
    principal: Principal, organisation: str | None, unit: str | None, editors: Editors
) -> bool:
    """Publish or propose in a scope, under the ``editors`` of the version in force there.

    The template library is admin's. In an organisation: admin, or a clinician of that
    organisation (and of the unit, for a unit's version) whom the pathway's editors admit.
    """
    if principal.role is Role.ADMIN:
        return True
    if organisation is None or principal.role is not Role.CLINICIAN:
        return False
    if principal.organisation != organisation:
        return False
    if unit is not None and not in_scope(principal, organisation, unit):
        return False
    if principal.role.value not in editors.roles:
        return False
    units = editors.units
    return not units or principal.units is None or bool(set(units) & set(principal.units))


def may_approve_pathway(
    principal: Principal,
    organisation: str | None,
    unit: str | None,
    editors: Editors,
    author: str,
) -> bool:
    """Four-eyes: a second person, never the author.

    An organisation's change is approved by a clinician of that organisation who may edit the
    pathway there (an administrator may propose but not approve clinical thresholds); a
    template's change by a second administrator.
    """
    if principal.subject == author:
        return False
    if organisation is None:
        return principal.role is Role.ADMIN
    return principal.role is Role.CLINICIAN and may_edit_pathway(
        principal, organisation, unit, editors
    )
