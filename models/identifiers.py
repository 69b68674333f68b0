"""Norwegian person numbers (fødselsnummer, D-number): the one definition of their rules.

Validation and generation live here so the service (enrolment, FHIR subjects) and the simulator
(synthetic cohorts) cannot disagree, and so does the one pattern that finds a person number
written in free text or a log line.

Check digits (Skatteetaten, folkeregisteret): K1 weights 3,7,6,1,8,9,4,5,2 over digits 1–9,
K2 weights 5,4,3,2,7,6,5,4,3,2 over digits 1–10; 11 - (sum mod 11) gives the digit, 11 means 0,
10 means the number is never issued. D-numbers add 4 to the first digit.

Numbers issued from 1 January 2032 (Skatteetaten, "Nytt fødselsnummer fra 2032",
github.com/Skatteetaten/folkeregisteret-api-dokumentasjon, src/om-tjenestene/nyttfnr2032.md)
relax K1 only: with K1 weighted 1, the weighted sum may leave remainder 0, 1, 2 or 3 mod 11.
K2 "beregnes likt som før med kun 1 - ett - gyldig siffer". Both generations are accepted.

Only ASCII digits count: ``str.isdigit`` and ``int`` also accept full-width and Arabic-Indic
digits, and such a spelling of a known number would otherwise look like a new person.
Nothing here ever puts the number itself in a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
# Felles hjelpenummer (Norsk helsenett): for persons without fødselsnummer or D-number; in the
# VKP subject value set. 11 digits, first digit 8 or 9, the same two check digits, no date part.
FHN_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.3"
PERSON_SYSTEMS = (FNR_SYSTEM, DNR_SYSTEM, FHN_SYSTEM)
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"

K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
# Remainders the weighted sum including K1 may leave: 0 is the classic rule, 1–3 the 2032 rule.
K1_REMAINDERS = (0, 1, 2, 3)

# A person number as people write it: 11 digits, optionally split after the day, the month, the
# year (ddmmyy) and the individual number, by a space (also no-break and thin spaces), a hyphen
# or a dot: 15076500565, 150765 00565, 150765-00565, 150765.00565, 15 07 65 00565,
# 15.07.65-005 65. `\d` is deliberately Unicode here: a full-width number is still a number.
# The look-arounds stop it matching inside a longer run of digits (a timestamp, an account) or
# a word: the hex groups of a UUID such as "…-4e73-9078-12444efb…" are not a person number (without
# them one random UUID in 200 matched).
_SEPARATOR_CHARS = " \u00a0\u2009\u202f.\\-\u2010\u2011\u2013"
_SEP = "(?:[ \u00a0\u2009\u202f]?[.\\-\u2010\u2011\u2013]?[ \u00a0\u2009\u202f]?)"
PERSON_NUMBER_PATTERN = re.compile(
    rf"(?<!\w)(?<!\d[{_SEPARATOR_CHARS}])"
    rf"\d{{2}}{_SEP}\d{{2}}{_SEP}\d{{2}}{_SEP}\d{{3}}{_SEP}\d{{2}}"
    rf"(?!\w)(?![{_SEPARATOR_CHARS}]?\d)"
)


class IdentifierError(ValueError):
    """Says which check failed, never the number."""


@dataclass(frozen=True)
class PersonIdentifier:
    value: str
    kind: Literal["fnr", "dnr", "fhn"]
    birth_date: date | None  # None when the date part is synthetic/unknown, and for fhn

    @property
    def system(self) -> str:
        return {"fnr": FNR_SYSTEM, "dnr": DNR_SYSTEM, "fhn": FHN_SYSTEM}[self.kind]

    def may_be_born_on(self, born: date) -> bool:
        """Day, month and two-digit year agree with the number. Not the century: numbers issued
        from 2032 no longer tell it ("Individnummeret vil ikke lenger angi århundre",
        Skatteetaten), so the birth date given with the number (from the register) decides."""
        if self.kind == "fhn":
            return True  # a felles hjelpenummer carries no birth date
        # D-numbers add 40 to the day, test and synthetic numbers 40 or 80 to the month.
        day, month = int(self.value[0:2]) % 40, int(self.value[2:4]) % 40
        return (day, month, int(self.value[4:6])) == (born.day, born.month, born.year % 100)


def _weighted(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True))


def first_check_digits(first9: str) -> tuple[int, ...]:
    """Every K1 that is valid for these nine digits: one classic digit and up to three 2032 ones."""
    s1 = _weighted(first9, K1_WEIGHTS)
    return tuple(k for k in range(10) if (s1 + k) % 11 in K1_REMAINDERS)


def classic_first_check_digit(first9: str) -> int | None:
    """K1 under the rule in force before 2032 (remainder 0), or None when it would be 10."""
    k1 = (11 - _weighted(first9, K1_WEIGHTS) % 11) % 11
    return None if k1 == 10 else k1


def second_check_digit(first10: str) -> int | None:
    """The one K2 for digits 1–10 (the same rule before and after 2032), or None for 10."""
    k2 = (11 - _weighted(first10, K2_WEIGHTS) % 11) % 11
    return None if k2 == 10 else k2


def with_classic_check_digits(first9: str) -> str | None:
    """The full 11-digit number with classic K1 and K2, or None when either would be 10."""
    k1 = classic_first_check_digit(first9)
    if k1 is None:
        return None
    k2 = second_check_digit(f"{first9}{k1}")
    return None if k2 is None else f"{first9}{k1}{k2}"


def require_ascii_digits(value: str, field: str, length: int = 11) -> None:
    """Refuse anything but exactly ``length`` ASCII digits, naming the field (never the value)."""
    if len(value) == length and value.isascii() and value.isdigit():
        return
    if any(c.isdigit() and not c.isascii() for c in value):
        raise IdentifierError(
            f"{field} must be written with the digits 0–9 only (full-width, Arabic-Indic and "
            "other digits are refused, so one person cannot be enrolled twice)"
        )
    raise IdentifierError(f"{field} must be exactly {length} digits")


def parse_person_identifier(value: str, field: str = "identifier") -> PersonIdentifier:
    """Validate a fødselsnummer, D-number or felles hjelpenummer; raise IdentifierError naming
    the failed check."""
    require_ascii_digits(value, field)
    if int(value[9]) not in first_check_digits(value[:9]):
        raise IdentifierError(f"{field}: first check digit (K1, digit 10) is wrong")
    if second_check_digit(value[:10]) != int(value[10]):
        raise IdentifierError(f"{field}: second check digit (K2, digit 11) is wrong")
    if value[0] in "89":
        # A felles hjelpenummer: no fødselsnummer or D-number starts with 8 or 9 (day 80–99).
        return PersonIdentifier(value=value, kind="fhn", birth_date=None)
    day, month, year2 = int(value[0:2]), int(value[2:4]), int(value[4:6])
    kind: Literal["fnr", "dnr"] = "fnr"
    if day > 40:
        kind, day = "dnr", day - 40
    # Test and synthetic numbers add 40 (NAV/Skatteetaten) or 80 (Norsk helsenett) to the month.
    if month > 80:
        month -= 80
    elif month > 40:
        month -= 40
    century = _century(int(value[6:9]), year2)
    try:
        born = date(century + year2, month, day) if century else None
    except ValueError as exc:
        raise IdentifierError(f"{field}: the date part (digits 1–6) is not a valid date") from exc
    return PersonIdentifier(value=value, kind=kind, birth_date=born)


def is_valid_person_number(value: str) -> bool:
    try:
        parse_person_identifier(value)
    except IdentifierError:
        return False
    return True


def _century(individual: int, year2: int) -> int | None:
    # Individual-number ranges by century, as Skatteetaten assigns them (until 2032; numbers
    # issued later no longer tell the century, and the birth date is then read from the register).
    if individual <= 499:
        return 1900
    if individual <= 749 and year2 >= 54:
        return 1800
    if individual >= 900 and year2 >= 40:
        return 1900
    if year2 <= 39:
        return 2000
    return None


def individual_range(birth_year: int) -> tuple[int, int]:
    """Individual numbers issued for a birth year: 1900–1999 000–499, 2000–2039 500–999."""
    return (500, 999) if birth_year >= 2000 else (0, 499)


def person_number_for(birth: date, individual: int, synthetic_month: bool = True) -> str | None:
    """The classic fødselsnummer for a birth date and individual number, or None when the check
    digits would be 10. Month +80 marks it synthetic (Norsk helsenett / Tenor test data)."""
    month = birth.month + (80 if synthetic_month else 0)
    return with_classic_check_digits(
        f"{birth.day:02d}{month:02d}{birth.year % 100:02d}{individual:03d}"
    )


def contains_person_number(text: str) -> bool:
    """True when the text holds something written like a person number (any check digits)."""
    return PERSON_NUMBER_PATTERN.search(text) is not None


def redact_person_numbers(text: str, replacement: str = "[redacted-id]") -> str:
    return PERSON_NUMBER_PATTERN.sub(replacement, text)


def mask(value: str) -> str:
    """Display form that is safe for lists and logs: birth date digits only."""
    return f"{value[:6]} *****" if len(value) == 11 else "***********"
