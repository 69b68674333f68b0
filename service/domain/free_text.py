"""Free text written by people (notes, reasons, comments) never holds a national identity number.

Such text is refused before anything is stored, with a message that names the field and does
not repeat the text. The pattern (`models.identifiers.PERSON_NUMBER_PATTERN`) finds every common
written form: 11 digits, ``ddmmyy nnnnn``, ``ddmmyy-nnnnn``, ``ddmmyy.nnnnn``, grouped by spaces,
in any script's digits. It does not look at check digits: a mistyped number is still a number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.identifiers import contains_person_number
from service.errors import InvalidInput


def refuse_person_number(text: str | None, field: str) -> None:
    """Raise 422 naming ``field`` when ``text`` holds something written like a person number."""
    if text and contains_person_number(text):
        raise InvalidInput(
            f"{field} looks like it holds a national identity number (fødselsnummer or "
            "D-number); nothing was stored. Refer to the patient's record, not the number",
            location=field,
        )


def refuse_person_number_in_document(document: Any, field: str) -> None:
    """The same check on every string of a JSON document; the location is its path."""
    if isinstance(document, str):
        refuse_person_number(document, field)
    elif isinstance(document, Mapping):
        for key, value in document.items():
            refuse_person_number(str(key), field)
            refuse_person_number_in_document(value, f"{field}.{key}")
    elif isinstance(document, Sequence) and not isinstance(document, bytes | bytearray):
        for i, value in enumerate(document):
            refuse_person_number_in_document(value, f"{field}[{i}]")


def safe_to_echo(text: str) -> str:
    """What a form may show again after an error: nothing, when the text holds a person number."""
    return "" if contains_person_number(text) else text
