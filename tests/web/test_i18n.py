"""Message catalogues: every message the pages use exists in bokmål, nynorsk and English."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import Environment

from service.web.catalogue import dynamic_messages
from service.web.i18n import LANGUAGES, Translator, catalogue, negotiate

WEB = Path(__file__).resolve().parents[2] / "service" / "web"
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def used_messages() -> set[str]:
    """Literal message ids in templates (_ / gettext / ngettext) and Python (t.gettext …)."""
    keys: set[str] = set()
    env = Environment(extensions=["jinja2.ext.i18n"])
    for path in sorted((WEB / "templates").glob("*.html")):
        for _line, _func, message in env.extract_translations(
            path.read_text(encoding="utf-8"), gettext_functions=("_", "gettext", "ngettext")
        ):
            values = message if isinstance(message, tuple) else (message,)
            keys |= {m for m in values if isinstance(m, str)}
    for path in sorted(WEB.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name in ("gettext", "ngettext", "_"):
                for arg in node.args[: 2 if name == "ngettext" else 1]:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        keys.add(arg.value)
    return keys | set(dynamic_messages())


def test_extraction_finds_the_messages() -> None:
    keys = used_messages()
    assert {"Worklist", "Sign out", "{n} items", "level:red", "Personal threshold saved."} <= keys
    assert len(keys) > 250


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_message_is_missing_in_any_language(lang: str) -> None:
    messages = catalogue(lang)
    missing = sorted(k for k in used_messages() if not messages.get(k, "").strip())
    assert not missing, f"{lang}: {len(missing)} missing, e.g. {missing[:5]}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translations_keep_their_placeholders(lang: str) -> None:
    for key, text in catalogue(lang).items():
        assert set(PLACEHOLDER.findall(key)) == set(PLACEHOLDER.findall(text)), (lang, key)


def test_norwegian_is_translated_not_copied() -> None:
    nb, nn = catalogue("nb"), catalogue("nn")
    assert nb["Sign out"] == "Logg ut" and nn["Not signed in"] == "Ikkje logga inn"
    same = [
        k
        for k in nb
        if nb[k] == k and not k.startswith(("SHA", "Alias", "Status")) and re.search(r"[a-z]{4}", k)
    ]
    assert len(same) < 12, same


def test_norwegian_numbers_and_dates() -> None:
    nb, en = Translator("nb"), Translator("en")
    assert nb.number(1234.56, 1) == "1\u00a0234,6"
    assert en.number(1234.56, 1) == "1,234.6"
    assert nb.percent(0.674).replace("\u00a0", " ") == "67 %"
    assert nb.plain(37.5) == "37,5" and nb.plain(88.0) == "88"
    summer = datetime(2026, 6, 1, 10, 30, tzinfo=UTC)
    assert nb.datetime(summer) == "01.06.2026, 12:30"  # Oslo summer time
    assert Translator("nn").date_short(summer.timestamp()) in ("1.6.", "01.06.")


def test_browser_language_is_negotiated() -> None:
    assert negotiate("no;q=0.9,en;q=0.5") == "nb"
    assert negotiate("nn-NO,nn;q=0.9") == "nn"
    assert negotiate("en-GB,en;q=0.9") == "en"
    assert negotiate("de-DE") == "nb"
