"""Clinician pages: the worklist and the patient page. Thin: they call the domain services."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.measurements import SYMPTOM_SCORE
from service.api.deps import ReadSession, ServicesDep
from service.db.engine import transaction
from service.db.tables import Assessment, Patient, PatientOverride, Reading, WorklistItem
from service.db.unit_of_work import lock_patients, write
from service.domain.free_text import safe_to_echo
from service.domain.patients import SCALE2_OPTION, TargetSaturation, to_public
from service.domain.worklist import ACTIVE_STATES, item_summary
from service.errors import LostRace, TriageError
from service.security import visibility
from service.security.deps import CurrentPrincipal
from service.security.principal import Principal
from service.web.charts import Chart, band_thresholds, layout, personal_baseline
from service.web.i18n import Translator
from service.web.render import render, translator
from service.web.session import get_session

router = APIRouter(prefix="/web", include_in_schema=False)

LEVELS = ("red", "yellow", "green")
STATES = ("open", "acknowledged", "escalated", "resolved")
ACTIONS = ("acknowledge", "escalate", "resolve")
VIEWS = ("table", "cards")
# Readings looked at for the table's newest values and trend arrows.
TABLE_LOOKBACK_S = 7 * 86400
# A change smaller than this (per measurement, in its unit) is drawn as steady (→).
STEADY = {
    "spo2": 1.0,
    "heart_rate": 5.0,
    "respiratory_rate": 2.0,
    "temperature": 0.3,
    "weight": 0.5,
    "systolic_bp": 10.0,
    "diastolic_bp": 5.0,
    SYMPTOM_SCORE: 1.0,
}
LEVEL_ORDER = {"red": 0, "yellow": 1, "green": 2}
CHART_DAYS = (7, 14, 30)
PAGE_SIZE = 50  # worklist items shown before "show all"
MAX_ITEMS = 500
# Read as whole numbers at the bedside; the rest keep one decimal.
WHOLE_NUMBER_SIGNALS = {"heart_rate": 0, "respiratory_rate": 0, "systolic_bp": 0, "diastolic_bp": 0}
DAY_S = 86400


def flash(request: Request, kind: str, text: str) -> None:
    get_session(request).setdefault("flash", []).append({"kind": kind, "text": text})


def take_flashes(request: Request) -> list[dict[str, str]]:
    return list(get_session(request).pop("flash", []) or [])


def problems_by_field(exc: TriageError) -> dict[str, str]:
    """A located domain error as {field path: message} for showing next to the field."""
    if exc.problems:
        return {p.get("path", ""): p.get("message", "") for p in exc.problems}
    return {exc.location or "": exc.message}


def escalation_units(session: Any, principal: Principal) -> list[str]:
    """Every unit of the caller's organisation: an escalation may go to another unit."""
    return sorted(
        session.scalars(
            select(Patient.unit).distinct().where(Patient.organisation.in_(principal.organisations))
        )
    )


def worklist_context(
    request: Request,
    principal: Principal,
    session: Any,
    services: Any,
    unit: str | None,
    level: str | None,
    state: str | None,
    show_all: bool = False,
    for_me: bool = False,
    view: str = "table",
) -> dict[str, Any]:
    view = view if view in VIEWS else "table"
    states = (state,) if state in STATES else ACTIVE_STATES
    # The most urgent PAGE_SIZE first; "show all" lists up to the API's default limit. One more
    # row than shown tells whether there are more.
    limit = MAX_ITEMS if show_all else PAGE_SIZE + 1
    rows = services.worklist.list_items(
        session,
        principal,
        unit or None,
        states,
        level if level in LEVELS else None,
        limit,
        for_me=for_me,
    )
    more = not show_all and len(rows) > PAGE_SIZE
    rows = rows[: PAGE_SIZE if more else None]
    history = services.worklist.history(session, [row[0].id for row in rows])
    items = [item_summary(i, p, a, history[i.id]) for i, p, a in rows]
    t = translator(request)
    if view == "table":
        add_table_facts(t, session, services, items, [a for _, _, a in rows])
    else:
        for item in items:
            item["pathway_title"] = pathway_title(t, session, services, item["patient"]["pathway"])
    filters = {
        "unit": unit or "",
        "level": level or "",
        "state": state or "",
        "mine": "1" if for_me else "",
        "view": "" if view == "table" else view,
    }
    query = {k: v for k, v in filters.items() if v}
    return {
        "items": items,
        "more": more,
        "show_all": show_all,
        "filters": filters,
        "units": visibility.visible_units(session, principal),
        "escalation_units": escalation_units(session, principal),
        "view": view,
        "counts": services.worklist.level_counts(session, principal, unit or None, states, for_me),
        "base_query": {k: v for k, v in query.items() if k not in ("level", "view")},
        "levels": LEVELS,
        "states": STATES,
        "now": datetime.now(UTC),
        "query": urlencode({**query, **({"all": "1"} if show_all else {})}),
        "all_query": urlencode({**query, "all": "1"}),
    }


def pathway_title(t: Translator, session: Any, services: Any, pathway_id: str) -> str:
    """A pathway's name in the page's language (never its id)."""
    try:
        _, doc, _ = services.pathways.current(session, pathway_id)
    except TriageError:
        return pathway_id
    return t.pick(doc.title_nb, doc.title_en)


def add_table_facts(
    t: Translator, session: Any, services: Any, items: list[dict[str, Any]], assessments: list[Any]
) -> None:
    """What a table row shows beyond the item: age, pathway name, a short reason and the
    newest value of each of the pathway's measurements with its trend and level colour.

    One windowed query for all rows (newest two readings per patient and measurement).
    """
    from models.rules.catalogue import NUMERIC_SIGNALS
    from models.rules.text import label

    ids = [item["patient"]["id"] for item in items]
    if not ids:
        return
    newest = (
        select(
            Reading.patient_id,
            Reading.name,
            Reading.value,
            Reading.effective_s,
            func.row_number()
            .over(
                partition_by=(Reading.patient_id, Reading.name),
                order_by=Reading.effective_s.desc(),
            )
            .label("n"),
        )
        .where(
            Reading.patient_id.in_(ids),
            Reading.effective_s
            > int(min(i["last_data_at"] for i in items).timestamp()) - TABLE_LOOKBACK_S,
            ~Reading.name.startswith("q:"),
        )
        .subquery()
    )
    latest: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    for pid, name, value, at_s, _n in session.execute(select(newest).where(newest.c.n <= 2)):
        latest[(pid, name)].append((float(value), int(at_s)))
    docs: dict[str, Any] = {}
    today = datetime.now(UTC).date()
    for item, assessment in zip(items, assessments, strict=True):
        patient = item["patient"]
        pathway_id = patient["pathway"]
        if pathway_id not in docs:
            try:
                docs[pathway_id] = services.pathways.current(session, pathway_id)[1]
            except TriageError:
                docs[pathway_id] = None
        doc = docs[pathway_id]
        item["pathway_title"] = t.pick(doc.title_nb, doc.title_en) if doc else pathway_id
        birth = date.fromisoformat(patient["birth_date"])
        item["age"] = (
            today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
        )
        fired = (assessment.explanation or {}).get("rules", [])
        level_of: dict[str, str] = {}
        for rule in fired:
            name = (rule.get("values") or {}).get("measurement")
            lv = rule.get("level")
            if name and lv and LEVEL_ORDER.get(lv, 9) < LEVEL_ORDER.get(level_of.get(name, ""), 9):
                level_of[name] = lv
        names = [m.measurement for m in doc.measurements] if doc else []
        if doc is not None and doc.questionnaires:
            names.append(SYMPTOM_SCORE)
        values = []
        for name in names:
            pair = latest.get((patient["id"], name), [])
            value = pair[0][0] if pair else None
            trend = "none"
            if len(pair) == 2:
                delta = pair[0][0] - pair[1][0]
                steady = STEADY.get(name, 0.0)
                trend = "up" if delta > steady else "down" if delta < -steady else "steady"
            signal = NUMERIC_SIGNALS.get(name)
            values.append(
                {
                    "name": name,
                    "short": t.gettext(f"short:{name}"),
                    "label": label(name, t.content_lang),
                    "unit": ""
                    if name == SYMPTOM_SCORE
                    else (signal.unit_display if signal else ""),
                    "value": None
                    if value is None
                    else t.number(value, WHOLE_NUMBER_SIGNALS.get(name, 1)),
                    "trend": trend,
                    "level": level_of.get(name, ""),
                }
            )
        item["values"] = values
        reasons = item["peak_reasons"] if item["held"] else []
        if not reasons:
            reasons = [r for r in fired if r.get("level") == item["level"]] or fired
        if not reasons:
            reasons = item["top_factors"]
        text = t.pick(reasons[0].get("text_nb"), reasons[0].get("text_en")) if reasons else ""
        item["reason"] = text if len(text) <= 60 else text[:57].rstrip() + "…"
        item["reason_full"] = text


@router.get("/worklist", name="web_worklist")
def web_worklist(
    request: Request,
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
    unit: Annotated[str | None, Query(max_length=64)] = None,
    level: Annotated[str | None, Query(max_length=16)] = None,
    state: Annotated[str | None, Query(max_length=16)] = None,
    show_all: Annotated[bool, Query(alias="all")] = False,
    mine: Annotated[bool, Query()] = False,
    view: Annotated[str, Query(max_length=8)] = "table",
) -> Response:
    """The prioritised worklist of the user's units (``mine``: escalated to the user), as a
    dense table (default) or as cards."""
    ctx = worklist_context(
        request, principal, session, services, unit, level, state, show_all, mine, view
    )
    return render(request, "worklist.html", {**ctx, "flashes": take_flashes(request)})


@router.get("/worklist/items", name="web_worklist_items")
def web_worklist_items(
    request: Request,
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
    unit: Annotated[str | None, Query(max_length=64)] = None,
    level: Annotated[str | None, Query(max_length=16)] = None,
    state: Annotated[str | None, Query(max_length=16)] = None,
    show_all: Annotated[bool, Query(alias="all")] = False,
    mine: Annotated[bool, Query()] = False,
    view: Annotated[str, Query(max_length=8)] = "table",
) -> Response:
    """Only the list, for the page's quiet self-refresh."""
    ctx = worklist_context(
        request, principal, session, services, unit, level, state, show_all, mine, view
    )
    return render(request, "_worklist_items.html", ctx)


@router.post("/worklist/{item_id}/{action}", name="web_worklist_action")
def web_worklist_action(
    request: Request,
    item_id: str,
    action: str,
    principal: CurrentPrincipal,
    services: ServicesDep,
    note: Annotated[str, Form(max_length=2000)] = "",
    back: Annotated[str, Form(max_length=500)] = "",
    version: Annotated[str, Form(max_length=12)] = "",
    recipient: Annotated[str, Form(max_length=120)] = "",
    recipient_hpr: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Acknowledge, escalate or resolve an item, through the same service as the API.

    The answer returns to the same item on the page it came from, and the message names the
    patient, so a nurse working down the list keeps her place.
    """
    t = translator(request)
    target = (
        back
        if back.startswith("/web/") and not back.startswith("//")
        else (request.url_for("web_worklist").path)
    )
    target = target.split("#", 1)[0] + f"#item-{item_id}"
    if action not in ACTIONS:
        flash(request, "error", t.gettext("Unknown action."))
        return RedirectResponse(target, 303)
    expected = int(version) if version.isascii() and version.isdigit() else None

    to = f"hpr:{recipient_hpr.strip()}" if recipient_hpr.strip() else recipient

    def work(session: Session) -> str:
        item = services.worklist.transition(
            session,
            principal,
            item_id,
            action,
            note.strip() or None,
            expected,
            recipient=to or None,
        )
        patient = session.get(Patient, item.patient_id)
        return patient_label(t, patient) if patient is not None else ""

    who = ""
    try:
        who = write(request.app.state.sessions, work)
    except LostRace as exc:
        # Another clinician (perhaps on another replica) was first: say who and what they did.
        who = exc.actor or t.gettext("another user")
        first = {
            "acknowledge": t.gettext("Someone else just acknowledged this: {who}.", who=who),
            "escalate": t.gettext("Someone else just escalated this: {who}.", who=who),
            "resolve": t.gettext("Someone else just resolved this: {who}.", who=who),
        }.get(exc.action or "", t.gettext("Someone else just changed this: {who}.", who=who))
        flash(request, "error", first)
    except TriageError as exc:
        if exc.status_code in (403, 404):
            raise  # an item outside the caller's units is not there (service.security.visibility)
        with request.app.state.sessions() as session:
            who = label_of_item(t, session, principal, item_id)
        if exc.location == "note" and "identity number" in exc.message:
            reason = t.gettext("the note seems to hold a national identity number")
        elif exc.location == "note":
            reason = t.gettext("write a note saying what was done (required for a red item)")
        elif exc.location == "recipient":
            reason = t.gettext("choose a recipient, or give an HPR number of 1 to 9 digits")
        elif exc.status_code == 409:
            reason = t.gettext("that action does not apply to its state now")
        else:
            reason = t.gettext("check the form and try again")
        flash(
            request,
            "error",
            t.gettext(
                "{patient}: the item could not be changed: {reason}", patient=who, reason=reason
            ),
        )
    else:
        done = {
            "acknowledge": t.gettext("{patient}: item acknowledged.", patient=who),
            "escalate": t.gettext("{patient}: item escalated.", patient=who),
            "resolve": t.gettext("{patient}: item resolved.", patient=who),
        }[action]
        flash(request, "success", done)
    return RedirectResponse(target, 303)


def patient_label(t: Translator, patient: Patient) -> str:
    """How a page names a patient: the name clinicians work by, else the masked number."""
    from models.identifiers import mask

    name = getattr(patient, "display_name", None)
    return name or t.gettext("Patient {ident}", ident=mask(patient.identifier_value))


def label_of_item(t: Translator, session: Any, principal: Principal, item_id: str) -> str:
    item = session.get(WorklistItem, item_id)
    patient = session.get(Patient, item.patient_id) if item is not None else None
    if patient is None or not visibility.may_read_patient(principal, patient):
        return t.gettext("Unknown item")
    return patient_label(t, patient)


# ---- patient page --------------------------------------------------------------------------


def level_labels(t: Translator) -> dict[str, str]:
    return {"red": t.gettext("Red"), "yellow": t.gettext("Yellow"), "green": t.gettext("Green")}


def _charts(
    t: Translator,
    session: Any,
    patient: Patient,
    doc: Any,
    days: int,
    age_years: float,
    overrides: list[dict[str, Any]],
) -> tuple[list[Chart], int | None]:
    from models.rules.catalogue import NUMERIC_SIGNALS
    from models.rules.text import label

    latest_s = session.scalar(
        select(func.max(Reading.effective_s)).where(
            Reading.patient_id == patient.id, ~Reading.name.startswith("q:")
        )
    )
    if latest_s is None:
        return [], None
    end_s = int(latest_s)
    start_s = end_s - days * DAY_S
    # Baseline needs 14 days before the end whatever the shown window is.
    since_s = min(start_s, end_s - 15 * DAY_S)
    rows = session.execute(
        select(Reading.name, Reading.value, Reading.effective_s)
        .where(
            Reading.patient_id == patient.id,
            Reading.effective_s > since_s,
            Reading.effective_s <= end_s,
            ~Reading.name.startswith("q:"),
        )
        .order_by(Reading.effective_s)
    ).all()
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for name, value, at_s in rows:
        series[name].append((int(at_s), float(value)))
    order = [m.measurement for m in doc.measurements]
    if doc.questionnaires:
        order.append(SYMPTOM_SCORE)
    labels = level_labels(t)
    charts = []
    # Numeric signals only: categorical answers (consciousness, on oxygen) are not trends.
    for name in [n for n in order + sorted(set(series) - set(order)) if n in NUMERIC_SIGNALS]:
        points = series.get(name, [])
        shown = [(s, v) for s, v in points if s > start_s]
        thresholds = band_thresholds(doc, name, labels, age_years)
        for o in overrides:
            if o.get("measurement") == name:
                for lv, value in (o.get("thresholds") or {}).items():
                    thresholds.append(_personal(value, lv, labels, t))
        chart = Chart(
            measurement=name,
            label=label(name, t.content_lang),
            unit="/10"
            if name == SYMPTOM_SCORE
            else (NUMERIC_SIGNALS[name].unit_display if name in NUMERIC_SIGNALS else ""),
            start_s=start_s,
            end_s=end_s,
            points=shown,
            baseline=personal_baseline(points, end_s),
            thresholds=thresholds,
            decimals=WHOLE_NUMBER_SIGNALS.get(name, 1),
        )
        charts.append(layout(chart))
    return charts, end_s


def _personal(value: float, level: str, labels: dict[str, str], t: Translator) -> Any:
    from service.web.charts import Threshold

    return Threshold(
        float(value), level, t.gettext("{level} (personal)", level=labels.get(level, level)), True
    )


def _sent_questionnaires(session: Any, patient_id: str, since_s: int) -> list[dict[str, Any]]:
    """Questionnaires sent as Tasks (service.domain.questionnaire_tasks): sent, answered, missed."""
    from service.db.tables import QuestionnaireTask

    since = datetime.fromtimestamp(since_s, UTC)
    rows = session.scalars(
        select(QuestionnaireTask)
        .where(QuestionnaireTask.patient_id == patient_id, QuestionnaireTask.opens_at >= since)
        .order_by(QuestionnaireTask.opens_at.desc())
        .limit(60)
    )

    def epoch(moment: datetime) -> int:
        aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        return int(aware.timestamp())

    return [
        {
            "questionnaire": r.questionnaire,
            "opens_s": epoch(r.opens_at),
            "closes_s": epoch(r.closes_at),
            "status": r.status,
        }
        for r in rows
    ]


def _questionnaires(session: Any, patient_id: str, since_s: int) -> list[dict[str, Any]]:
    from models.rules.catalogue import ITEM_LABELS

    rows = session.execute(
        select(Reading.name, Reading.value, Reading.effective_s)
        .where(
            Reading.patient_id == patient_id,
            Reading.effective_s > since_s,
            Reading.name.startswith("q:") | (Reading.name == SYMPTOM_SCORE),
        )
        .order_by(Reading.effective_s.desc())
    ).all()
    answers: dict[int, dict[str, Any]] = {}
    for name, value, at_s in rows:
        entry = answers.setdefault(
            int(at_s), {"at_s": int(at_s), "items": [], "score": None, "questionnaire": ""}
        )
        if name == SYMPTOM_SCORE:
            entry["score"] = float(value)
        else:
            _, questionnaire, item = name.split(":", 2)
            entry["questionnaire"] = questionnaire
            nb, en = ITEM_LABELS.get(item, (item, item))
            entry["items"].append({"item": item, "nb": nb, "en": en, "points": float(value)})
    return sorted(answers.values(), key=lambda e: -e["at_s"])[:15]


def _override_rules(doc: Any, t: Translator | None = None) -> list[dict[str, Any]]:
    """Every rule a personal threshold can change: threshold rules and the bands of one
    measurement (COPD's spo2-low included), named in words with unit and current value."""
    from models.rules import describe_rule
    from models.rules.catalogue import NUMERIC_SIGNALS
    from models.rules.text import label

    lang = t.content_lang if t is not None else "nb"
    out = []
    for r in doc.rules:
        measurement = getattr(r, "measurement", None)
        if getattr(r, "thresholds", None):
            kind = "thresholds"
        elif r.type == "bands" and measurement and getattr(r, "bands", None):
            kind = "bands"
        else:
            continue
        described = describe_rule(r)
        meaning = described["meaning_nb"] if lang == "nb" else described["meaning_en"]
        now = "; ".join(
            c["text_nb"] if lang == "nb" else c["text_en"] for c in described["conditions"]
        )
        signal = NUMERIC_SIGNALS.get(measurement or "")
        unit = (
            "SD"
            if getattr(r, "mode", None) == "sd"
            else (signal.unit_display if signal else described.get("unit") or "")
        )
        name = label(measurement, lang) if measurement else r.id
        out.append(
            {
                "id": r.id,
                "kind": kind,
                "direction": getattr(r, "direction", None),
                "unit": unit,
                "text": f"{name}: {meaning[:1].lower()}{meaning[1:]} ({unit})" if unit else name,
                "now": now,
            }
        )
    return out


def bands_from(direction: str | None, thresholds: dict[str, float]) -> list[dict[str, Any]] | None:
    """A low (or high) limit as bands: red beyond ``red``, yellow beyond ``yellow``; None when
    the two are on the wrong side of each other."""
    red, yellow = thresholds.get("red"), thresholds.get("yellow")
    high = direction == "high"
    if red is not None and yellow is not None and ((yellow >= red) if high else (yellow <= red)):
        return None
    edges = [(v, lv) for lv, v in (("red", red), ("yellow", yellow)) if v is not None]
    if high:
        edges.sort()
        bands: list[dict[str, Any]] = [{"le": edges[0][0]}]
        for k, (v, lv) in enumerate(edges):
            upper = edges[k + 1][0] if k + 1 < len(edges) else None
            band: dict[str, Any] = {"gt": v, "level": lv}
            if upper is not None:
                band["le"] = upper
            bands.append(band)
        return bands
    edges.sort()
    bands = []
    lower = None
    for v, lv in edges:
        band = {"lt": v, "level": lv}
        if lower is not None:
            band["ge"] = lower
        bands.append(band)
        lower = v
    bands.append({"ge": lower})
    return bands


def _override_rows(session: Any, patient_id: str) -> list[dict[str, Any]]:
    rows = list(
        session.scalars(
            select(PatientOverride)
            .where(PatientOverride.patient_id == patient_id)
            .order_by(PatientOverride.created_at.desc())
        )
    )
    revoked = {r.supersedes_id for r in rows if r.revoked}
    now = datetime.now(UTC)
    out = []
    for r in rows:
        if r.revoked:
            continue
        expires = r.expires_at if r.expires_at.tzinfo else r.expires_at.replace(tzinfo=UTC)
        out.append(
            {
                "id": r.id,
                "rule": r.body.get("rule", ""),
                "body": r.body,
                "reason": r.reason,
                "author": r.author,
                "created_at": r.created_at,
                "expires_at": expires,
                "revoked": r.id in revoked,
                "active": r.id not in revoked and expires > now,
            }
        )
    return out


def past_items(session: Any, services: Any, patient_id: str) -> list[dict[str, Any]]:
    """The patient's resolved items, newest first, each with what was done (handover)."""
    rows = list(
        session.scalars(
            select(WorklistItem)
            .where(WorklistItem.patient_id == patient_id, WorklistItem.state == "resolved")
            .order_by(WorklistItem.opened_at.desc())
            .limit(10)
        )
    )
    history = services.worklist.history(session, [r.id for r in rows])
    return [
        {"id": r.id, "level": r.level, "opened_at": r.opened_at, "history": history[r.id]}
        for r in rows
    ]


def patient_context(
    request: Request, principal: Principal, session: Any, services: Any, patient_id: str, days: int
) -> dict[str, Any]:
    t = translator(request)
    patient = services.patients.get_visible(session, principal, patient_id)
    public = to_public(patient)
    found = services.pathways.for_patient(session, patient)
    version, doc = found.version, found.doc
    overrides = _override_rows(session, patient.id)
    rule_measurement = {r.id: getattr(r, "measurement", None) for r in doc.rules}
    active = [
        {**o["body"], "measurement": rule_measurement.get(o["rule"])}
        for o in overrides
        if o["active"]
    ]
    charts, end_s = _charts(t, session, patient, doc, days, float(public.age_years), active)
    assessments = list(
        session.scalars(
            select(Assessment)
            .where(Assessment.patient_id == patient.id)
            .order_by(Assessment.created_at.desc())
            .limit(20)
        )
    )
    item_row = session.execute(
        select(WorklistItem, Assessment)
        .join(Assessment, Assessment.id == WorklistItem.assessment_id)
        .where(WorklistItem.patient_id == patient.id, WorklistItem.state.in_(ACTIVE_STATES))
    ).first()
    history = services.worklist.history(session, [item_row[0].id]) if item_row else {}
    item = (
        item_summary(item_row[0], patient, item_row[1], history[item_row[0].id])
        if item_row
        else None
    )
    past = past_items(session, services, patient.id)
    since_s = (end_s or int(datetime.now(UTC).timestamp())) - 30 * DAY_S
    return {
        "patient": public,
        "pathway": doc,
        "pathway_version": version,
        "charts": charts,
        "days": days,
        "chart_days": CHART_DAYS,
        "end_s": end_s,
        "assessments": assessments,
        "item": item,
        "overrides": overrides,
        "override_rules": _override_rules(doc, t),
        "questionnaires": _questionnaires(session, patient.id, since_s),
        "sent_questionnaires": _sent_questionnaires(session, patient.id, since_s),
        "level_labels": level_labels(t),
        "levels": [lv.id for lv in doc.levels],
        "default_expiry": (datetime.now(UTC) + timedelta(days=14)).date().isoformat(),
        "min_expiry": (datetime.now(UTC) + timedelta(days=1)).date().isoformat(),
        "young": 12 <= public.age_years < 16,
        "past_items": past,
        "escalation_units": escalation_units(session, principal),
        "target_offered": any(o.id == SCALE2_OPTION for o in doc.options),
        "now": datetime.now(UTC),
    }


@router.get("/patients/{patient_id}", name="web_patient")
def web_patient(
    request: Request,
    patient_id: str,
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
    days: Annotated[int, Query(ge=1, le=30)] = 7,
) -> Response:
    """Trends, assessments with explanations, questionnaire answers and personal thresholds."""
    days = days if days in CHART_DAYS else 7
    ctx = patient_context(request, principal, session, services, patient_id, days)
    return render(
        request, "patient.html", {**ctx, "flashes": take_flashes(request), "form": {}, "errors": {}}
    )


@router.post("/patients/{patient_id}/overrides", name="web_patient_override")
def web_patient_override(
    request: Request,
    patient_id: str,
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
    rule: Annotated[str, Form(max_length=64)] = "",
    reason: Annotated[str, Form(max_length=300)] = "",
    expires: Annotated[str, Form(max_length=10)] = "",
    threshold_yellow: Annotated[str, Form(max_length=20)] = "",
    threshold_red: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """A personal threshold with reason and expiry (the same check as the API's)."""
    t = translator(request)
    form = {
        "rule": rule,
        "reason": safe_to_echo(reason),
        "expires": expires,
        "threshold_yellow": threshold_yellow,
        "threshold_red": threshold_red,
    }
    errors: dict[str, str] = {}
    thresholds: dict[str, float] = {}
    for lv, raw in (("yellow", threshold_yellow), ("red", threshold_red)):
        if raw.strip():
            try:
                thresholds[lv] = float(raw.replace(",", ".").strip())
            except ValueError:
                errors[f"threshold_{lv}"] = t.gettext("Enter a number, for example 88 or 37,5.")
    if not thresholds and "threshold_yellow" not in errors:
        errors["threshold_yellow"] = t.gettext("Give at least one threshold.")
    body: dict[str, Any] = {"rule": rule, "thresholds": thresholds}
    with request.app.state.sessions() as lookup:
        doc = services.pathways.for_patient(
            lookup, services.patients.get_visible(lookup, principal, patient_id)
        ).doc
    chosen_rule = next((r for r in _override_rules(doc, t) if r["id"] == rule), None)
    if chosen_rule is None:
        errors["rule"] = t.gettext("Choose one of the pathway's rules.")
    elif chosen_rule["kind"] == "bands" and thresholds:
        bands = bands_from(chosen_rule["direction"], thresholds)
        if bands is None:
            errors["threshold_yellow"] = t.gettext(
                "Yellow must lie between red and normal: above red for a low limit, below "
                "red for a high one."
            )
        body = {"rule": rule, "bands": bands}
    if len(reason.strip()) < 3:
        errors["reason"] = t.gettext("Give a reason (at least 3 characters).")
    expires_at = None
    try:
        chosen = date.fromisoformat(expires)
        from service.web.i18n import OSLO

        expires_at = datetime.combine(chosen, time(23, 59), OSLO).astimezone(UTC)
        if chosen <= datetime.now(UTC).date():
            errors["expires"] = t.gettext("The expiry date must be in the future.")
    except ValueError:
        errors["expires"] = t.gettext("Enter a date as YYYY-MM-DD.")
    if not errors and expires_at is not None:
        try:
            with transaction(request.app.state.sessions) as tx:
                patient = services.patients.get_visible(tx, principal, patient_id)
                services.pathways.add_override(
                    tx,
                    principal,
                    patient,
                    body,
                    reason.strip(),
                    expires_at,
                )
        except TriageError as exc:
            if exc.status_code in (403, 404):
                raise
            for path, _message in problems_by_field(exc).items():
                field = (
                    "threshold_red"
                    if "red" in path
                    else "threshold_yellow"
                    if "threshold" in path or "band" in path
                    else "expires"
                    if "expire" in path
                    else "rule"
                )
                errors[field] = {
                    "expires": t.gettext("The expiry date must be in the future."),
                    "rule": t.gettext("Choose one of the pathway's rules."),
                }.get(
                    field,
                    t.gettext(
                        "Not a possible threshold for this rule (for example 0 standard "
                        "deviations, or yellow on the wrong side of red)."
                    ),
                )
        else:
            flash(request, "success", t.gettext("Personal threshold saved."))
            return RedirectResponse(
                request.url_for("web_patient", patient_id=patient_id).path + "#overrides", 303
            )
    ctx = patient_context(request, principal, session, services, patient_id, 7)
    return render(
        request,
        "patient.html",
        {**ctx, "flashes": [], "form": form, "errors": errors},
        status_code=422,
    )


@router.post(
    "/patients/{patient_id}/overrides/{override_id}/revoke", name="web_patient_override_revoke"
)
def web_patient_override_revoke(
    request: Request,
    patient_id: str,
    override_id: str,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> Response:
    t = translator(request)
    try:
        with transaction(request.app.state.sessions) as session:
            services.patients.get_visible(session, principal, patient_id)
            services.pathways.revoke_override(session, principal, patient_id, override_id)
    except TriageError as exc:
        if exc.status_code in (403, 404) and "override" not in exc.message:
            raise
        flash(request, "error", exc.message)
    else:
        flash(request, "success", t.gettext("Personal threshold revoked."))
    return RedirectResponse(
        request.url_for("web_patient", patient_id=patient_id).path + "#overrides", 303
    )


@router.post("/patients/{patient_id}/target-saturation", name="web_patient_target")
def web_patient_target(
    request: Request,
    patient_id: str,
    principal: CurrentPrincipal,
    services: ServicesDep,
    target_saturation: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Set the prescribed SpO2 target (88–92 %: NEWS2 scale 2); the patient is re-scored."""
    t = translator(request)
    back = request.url_for("web_patient", patient_id=patient_id).path + "#target-heading"
    if target_saturation == "88-92":
        target: TargetSaturation = "88-92"
    elif target_saturation == "94-98":
        target = "94-98"
    else:
        flash(request, "error", t.gettext("Choose a target saturation."))
        return RedirectResponse(back, 303)
    try:

        def work(session: Session) -> None:
            lock_patients(session, [patient_id])  # re-scoring writes the worklist
            patient = services.patients.set_target_saturation(
                session, principal, patient_id, target
            )
            services.scoring.score(session, patient, "target-saturation")

        write(request.app.state.sessions, work)
    except TriageError as exc:
        if exc.status_code in (403, 404):
            raise
        flash(request, "error", t.gettext("The target saturation could not be set."))
    else:
        flash(request, "success", t.gettext("Target saturation saved; the patient was re-scored."))
    return RedirectResponse(back, 303)
