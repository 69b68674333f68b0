"""Re-export of `models/identifiers.py`, where the rules for person numbers are written once.

Kept so code written against the old location (other branches in flight) still imports; new
code imports from `models.identifiers`.
"""

from models.identifiers import (
    DNR_SYSTEM,
    FHN_SYSTEM,
    FNR_SYSTEM,
    HPR_SYSTEM,
    ORGNR_SYSTEM,
    PERSON_SYSTEMS,
    IdentifierError,
    PersonIdentifier,
    mask,
    parse_person_identifier,
)

__all__ = [
    "DNR_SYSTEM",
    "FHN_SYSTEM",
    "FNR_SYSTEM",
    "HPR_SYSTEM",
    "ORGNR_SYSTEM",
    "PERSON_SYSTEMS",
    "IdentifierError",
    "PersonIdentifier",
    "mask",
    "parse_person_identifier",
]
