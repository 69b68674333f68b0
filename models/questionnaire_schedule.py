"""When a pathway's questionnaire is due (models/rules/schema.py QuestionnaireSchedule): pure
date arithmetic, Norwegian local time, so a morning questionnaire stays in the morning across
daylight saving time. On the serving path: standard library only."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from models.rules.schema import QuestionnaireSchedule

OSLO = ZoneInfo("Europe/Oslo")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def due_windows(
    schedule: QuestionnaireSchedule, enrolled_at: datetime, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """(opens, closes) in UTC of every window that opens in [start, end) and not before
    enrolment."""
    hour, minute = (int(part) for part in schedule.send_at.split(":"))
    enrolled = enrolled_at.astimezone(OSLO)
    first = max(start, enrolled_at).astimezone(OSLO).date()
    last = end.astimezone(OSLO).date()
    out = []
    day: date = first
    while day <= last:
        if _is_due(schedule, enrolled.date(), day):
            opens = datetime.combine(day, time(hour, minute), OSLO).astimezone(UTC)
            if start <= opens < end and opens >= enrolled_at:
                out.append((opens, opens + timedelta(hours=schedule.window_hours)))
        day += timedelta(days=1)
    return out


def _is_due(schedule: QuestionnaireSchedule, enrolment_day: date, day: date) -> bool:
    if schedule.days_after_enrolment is not None:
        return (day - enrolment_day).days in schedule.days_after_enrolment
    if schedule.weekdays is not None:
        return WEEKDAYS[day.weekday()] in schedule.weekdays
    return True
