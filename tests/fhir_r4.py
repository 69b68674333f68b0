"""Validate our FHIR output against FHIR R4 (4.0.1), the version the service declares.

fhir.resources 8 ships R5 (default), R4B and STU3 only; its R4B models accept things R4 does
not have and miss R4-only rules. fhirclient 4.4.0's models are generated from FHIR 4.0.1
("Generated from FHIR 4.0.1-9346c8cc45"): with strict=True they refuse an unknown element, a
wrong type, a missing required element, and a value outside a required binding's Python type.
`as_json()` must also give back what we sent, so nothing is silently dropped.
"""

from __future__ import annotations

from typing import Any


def validate_r4(resource: dict[str, Any]) -> Any:
    """The parsed R4 model of `resource`; raises if it is not valid FHIR R4 JSON."""
    from fhirclient.models.fhirelementfactory import FHIRElementFactory

    rtype = resource.get("resourceType")
    assert isinstance(rtype, str), "resourceType is required"
    model = FHIRElementFactory.instantiate(rtype, resource)
    assert type(model).__name__ == rtype, f"{rtype} is not an R4 resource type"
    assert _normalised(model.as_json()) == _normalised(resource), "R4 round trip lost content"
    return model


def _normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
