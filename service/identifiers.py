"""Norwegian person identifiers: fødselsnummer and D-number, with both mod-11 check digits.

Rules (Skatteetaten, folkeregisteret): K1 weights 3,7,6,1,8,9,4,5,2 and K2 weights 5,4,3,2,7,6,5,4,3,2;
11 - (sum mod 11) gives the digit, 11 means 0 and 10 means invalid. D-numbers add 4 to the first digit.
From 2032 new numbers may use the revised rule (Skatteetaten, "nytt fødselsnummer"): with the check
digit weighted 1, the weighted sum may leave remainder 0, 1, 2 or 3 mod 11. The classic rule is the
remainder-0 case, so accepting 0–3 accepts both generations.
Nothing here ever includes the number itself in a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
# Felles hjelpenummer (Norsk helsenett): for persons without fødselsnummer or D-number, e.g.
# before registration; in the VKP subject value set. 11 digits, first digit 8 or 9, the same two
# mod-11 check digits; no date part.
FHN_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.3"
PERSON_SYSTEMS = (FNR_SYSTEM, DNR_SYSTEM, FHN_SYSTEM)
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"

_K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


class IdentifierError(ValueError):
    """Says which check failed, never the number."""


@dataclass(frozen=True)
class PersonIdentifier:
    value: str
    kind: str  # "fnr" | "dnr" | "fhn" (felles hjelpenummer)
    birth_date: date | None  # None when the date part is synthetic/unknown, and for fhn

    @property
    def system(self) -> str:
        return {"fnr": FNR_SYSTEM, "dnr": DNR_SYSTEM}.get(self.kind, FHN_SYSTEM)


def _check_digit_ok(digits: list[int], weights: tuple[int, ...], position: int) -> bool:
    """Weighted sum including the check digit (weight 1) must leave remainder 0–3 mod 11."""
    full_weights = (*weights[:position], 1)
    remainder = sum(d * w for d, w in zip(digits[: position + 1], full_weights, strict=True)) % 11
    return remainder in (0, 1, 2, 3)


def parse_person_identifier(value: str) -> PersonIdentifier:
    """Validate a fødselsnummer, D-number or felles hjelpenummer; raise IdentifierError naming
    the failed check."""
    if len(value) != 11 or not value.isdigit():
        raise IdentifierError("identifier must be exactly 11 digits")
    digits = [int(c) for c in value]
    if not _check_digit_ok(digits, _K1, 9):
        raise IdentifierError("first check digit (K1, digit 10) is wrong")
    if not _check_digit_ok(digits, _K2, 10):
        raise IdentifierError("second check digit (K2, digit 11) is wrong")
    if value[0] in "89":
        # A felles hjelpenummer: no date part (no fødselsnummer or D-number starts with 8 or 9).
        return PersonIdentifier(value=value, kind="fhn", birth_date=None)
    day, month, year2 = int(value[0:2]), int(value[2:4]), int(value[4:6])
    kind = "fnr"
    if day > 40:
        kind, day = "dnr", day - 40
    # Test and synthetic numbers add 40 (NAV/Skatteetaten) or 80 (Norsk helsenett) to the month.
    if month > 80:
        month -= 80
    elif month > 40:
        month -= 40
    individual = int(value[6:9])
    century = _century(individual, year2)
    try:
        born = date(century + year2, month, day) if century else None
    except ValueError as exc:
        raise IdentifierError("the date part (digits 1–6) is not a valid date") from exc
    return PersonIdentifier(value=value, kind=kind, birth_date=born)


def _century(individual: int, year2: int) -> int | None:
    # Individual-number ranges by century, as Skatteetaten assigns them.
    if individual <= 499:
        return 1900
    if individual <= 749 and year2 >= 54:
        return 1800
    if individual >= 900 and year2 >= 40:
        return 1900
    if year2 <= 39:
        return 2000
    return None


def mask(value: str) -> str:
    """Display form that is safe for lists and logs: birth date digits only."""
    return f"{value[:6]} *****" if len(value) == 11 else "***********"
