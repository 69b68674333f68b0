"""Who is calling: taken from a verified token, never from the request body."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    CLINICIAN = "clinician"
    ML_ENGINEER = "ml-engineer"
    COMPLIANCE = "compliance"
    INTEGRATION = "integration"  # VKP, Helsenorge, DIPS system clients
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    subject: str  # HPR number for personnel, client id for systems; never a fødselsnummer
    role: Role
    organisation: str  # orgnr of the legal entity (HelseID orgnr_parent)
    units: tuple[str, ...] | None  # None: every unit of the organisation
    display_name: str = ""
    # The call is made for a parent or guardian (Helsenorge "representasjon"): information a
    # 12–16-year-old withheld from parents, and anything about a patient aged 16 or more, is
    # refused.
    guardian_proxy: bool = False
    # An integration client may send for further organisations its token names
    # (ORGANISATIONS_CLAIM); everyone else acts for `organisation` alone.
    also_for: tuple[str, ...] = ()
    # For a guardian context: the one patient the request names (bound when it is authorised).
    represented_patient: str | None = None

    @property
    def organisations(self) -> tuple[str, ...]:
        """Every organisation this token acts for."""
        return (self.organisation, *(o for o in self.also_for if o != self.organisation))
