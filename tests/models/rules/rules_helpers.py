"""Builders shared by the rule-engine tests (a plain module: tests import it by name)."""

from models.rules import Pathway, PatientReadings

AS_OF = 1_780_000_000  # 2026-05-28, a fixed "now" so texts and windows are deterministic
HOUR = 3600
DAY = 24 * HOUR


def pathway_doc(rules, **extra):
    """A minimal valid pathway document around ``rules`` (plus one red rule so it validates)."""
    doc = {
        "id": "test-pathway",
        "title_nb": "Test",
        "title_en": "Test",
        "measurements": [
            {"measurement": "spo2", "unit": "%", "per_day": 2},
            {"measurement": "weight", "unit": "kg", "per_day": 1},
            {"measurement": "heart_rate", "unit": "/min", "per_day": 1},
            {"measurement": "temperature", "unit": "Cel", "per_day": 1},
        ],
        "questionnaires": [{"id": "heart-failure-symptoms", "per_day": 1}],
        "rules": rules,
        "editors": {"roles": ["clinician"]},
    }
    doc.update(extra)
    return doc


def pathway(rules, **extra) -> Pathway:
    return Pathway.model_validate(pathway_doc(rules, **extra))


def series(*pairs):
    """[(hours before AS_OF, value), …] -> [(epoch s, value), …]."""
    return [(AS_OF - int(h * HOUR), v) for h, v in pairs]


def readings(measurements=None, answers=None, age=70.0, **kw) -> PatientReadings:
    return PatientReadings.build(AS_OF, age, measurements or {}, answers or {}, **kw)
