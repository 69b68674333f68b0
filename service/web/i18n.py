"""Languages of the web pages: message catalogues (gettext .po), Norwegian dates and numbers.

The .po files under ``locales/`` are the source; they are read once at first use (no compiled
.mo files to keep in step). A msgid is the English text; English catalogue entries translate to
themselves so a test can check that every language has every key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

LOCALES_DIR = Path(__file__).parent / "locales"
LANGUAGES: tuple[str, ...] = ("nb", "nn", "en")
DEFAULT_LANGUAGE = "nb"
# Babel locale per UI language: Norwegian formats for bokmål and nynorsk; British English keeps
# day-month order and the 24-hour clock that Norwegian clinicians read without thinking.
BABEL_LOCALE = {"nb": "nb_NO", "nn": "nn_NO", "en": "en_GB"}
# Rule and explanation texts come from models/ in bokmål and English; nynorsk readers get bokmål.
CONTENT_LANGUAGE = {"nb": "nb", "nn": "nb", "en": "en"}
OSLO = ZoneInfo("Europe/Oslo")


@cache
def catalogue(lang: str) -> Mapping[str, str]:
    """msgid -> msgstr for one language (empty translations are left out, so they show up)."""
    from babel.messages.pofile import read_po

    path = LOCALES_DIR / lang / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as fp:
        cat = read_po(fp, locale=BABEL_LOCALE[lang].split("_")[0])
    out: dict[str, str] = {}
    for message in cat:
        if message.id and isinstance(message.id, str) and message.string:
            out[message.id] = str(message.string)
    return out


def negotiate(accept_language: str | None) -> str:
    """The first of our languages in an Accept-Language header (no, nb, nn, en …)."""
    for part in (accept_language or "").split(","):
        tag = part.split(";", 1)[0].strip().lower()
        primary = tag.split("-", 1)[0]
        if primary in ("nb", "no"):
            return "nb"
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Translator:
    """gettext for one request, plus locale-aware formatting of dates and numbers."""

    lang: str

    @property
    def locale(self) -> str:
        return BABEL_LOCALE[self.lang]

    @property
    def content_lang(self) -> str:
        return CONTENT_LANGUAGE[self.lang]

    def gettext(self, message: str, **values: Any) -> str:
        text = catalogue(self.lang).get(message, message)
        return text.format(**values) if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        # Norwegian and English share the one/other plural rule.
        return self.gettext(singular if n == 1 else plural, n=n, **values)

    def number(self, value: float | None, decimals: int = 1) -> str:
        from babel.numbers import format_decimal

        if value is None:
            return "–"
        pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
        return format_decimal(round(value, decimals), format=pattern, locale=self.locale)

    def plain(self, value: float) -> str:
        """A number for a form field: no grouping, no trailing zeros ("37,5", "88")."""
        from babel.numbers import format_decimal

        return format_decimal(value, format="0.###", locale=self.locale)

    def percent(self, value: float | None, decimals: int = 0) -> str:
        from babel.numbers import format_percent

        if value is None:
            return "–"
        pattern = "#,##0" + ("." + "0" * decimals if decimals else "") + " %"
        return format_percent(value, format=pattern, locale=self.locale)

    def datetime(self, value: dt.datetime | None) -> str:
        from babel.dates import format_datetime

        if value is None:
            return "–"
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return format_datetime(aware, "short", tzinfo=OSLO, locale=self.locale)

    def date(self, value: dt.datetime | None) -> str:
        from babel.dates import format_date

        if value is None:
            return "–"
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return format_date(aware.astimezone(OSLO), "medium", locale=self.locale)

    def iso(self, value: dt.datetime | None) -> str:
        if value is None:
            return ""
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(OSLO).isoformat(timespec="minutes")

    def since(self, value: dt.datetime | None, now: dt.datetime | None = None) -> str:
        """Time since ``value`` in words ("3 timer", "2 døgn")."""
        from babel.dates import format_timedelta

        if value is None:
            return "–"
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        delta = (now or dt.datetime.now(UTC)) - aware
        return format_timedelta(delta, threshold=1.5, locale=self.locale)

    def pick(self, nb: str | None, en: str | None) -> str:
        """A text that models/ provides in bokmål and English."""
        return (nb if self.content_lang == "nb" else en) or nb or en or ""

    def datetime_s(self, epoch_s: int | float) -> str:
        return self.datetime(dt.datetime.fromtimestamp(epoch_s, UTC))

    def date_short(self, epoch_s: int | float) -> str:
        """Day and month for chart axes ("25.11.")."""
        from babel.dates import format_skeleton

        return format_skeleton(
            "dM", dt.datetime.fromtimestamp(epoch_s, UTC).astimezone(OSLO), locale=self.locale
        )
