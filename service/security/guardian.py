"""Children and young people: pasient- og brukerrettighetsloven §§ 3-4 and 4-3.

From 12 the child's views carry weight, and a patient aged 12–16 may ask that information be kept
from parents (§ 3-4 second paragraph): `Patient.confidential_to_guardians`. From 16 the patient
consents on their own behalf (§ 4-3) and parents have no general right to the information. A token
acting for a parent or guardian (`Principal.guardian_proxy`, from Helsenorge's representation
context) is therefore refused for a flagged patient and for any patient aged 16 or more. The flag
itself may be set only while the patient is 12–15 years old (i.e. under 16) at enrolment.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from service.errors import Forbidden, InvalidInput

CONFIDENTIAL_MIN_AGE_YEARS = 12
# Helserettslig myndighetsalder (pasient- og brukerrettighetsloven § 4-3).
MEDICAL_MAJORITY_AGE_YEARS = 16


def age_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _as_date(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else value


def validate_guardian_flag(birth_date: Any, confidential: bool, on: date | None = None) -> None:
    """The flag is for patients aged 12–15 (from 16 the patient decides alone anyway)."""
    if not confidential:
        return
    age = age_years(_as_date(birth_date), on or datetime.now(UTC).date())
    if not CONFIDENTIAL_MIN_AGE_YEARS <= age < MEDICAL_MAJORITY_AGE_YEARS:
        raise InvalidInput(
            "confidential_to_guardians applies to patients aged 12 to 15 (pasient- og "
            "brukerrettighetsloven § 3-4); from 16 the patient consents on their own behalf "
            "(§ 4-3) and guardians are refused regardless",
            location="confidential_to_guardians",
        )


def withheld_from_guardians(patient: Any, on: date | None = None) -> bool:
    if patient.confidential_to_guardians:
        return True
    age = age_years(_as_date(patient.birth_date), on or datetime.now(UTC).date())
    return age >= MEDICAL_MAJORITY_AGE_YEARS


def refuse_if_withheld(patient: Any) -> None:
    """Raise 403 when a guardian-context caller reaches a patient whose data is withheld."""
    if withheld_from_guardians(patient):
        raise Forbidden("this information is not available to a parent or guardian")
