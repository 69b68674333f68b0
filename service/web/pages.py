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


def worklist_context(
    request: Request,
    principal: Principal,
    session: Any,
    services: Any,
    unit: str | None,
    level: str | None,
    state: str | None,
    show_all: bool = False,
) -> dict[str, Any]:
    states = (state,) if state in STATES else ACTIVE_STATES
    # The most urgent PAGE_SIZE first; "show all" lists up to the API's default limit. One more
    # row than shown tells whether there are more.
    limit = MAX_ITEMS if show_all else PAGE_SIZE + 1
    rows = services.worklist.list_items(
        session, principal, unit or None, states, level if level in LEVELS else None, limit
    )
    more = not show_all and len(rows) > PAGE_SIZE
    items = [item_summary(*row) for row in rows[: PAGE_SIZE if more else None]]
    filters = {"unit": unit or "", "level": level or "", "state": state or ""}
    query = {k: v for k, v in filters.items() if v}
    return {
        "items": items,
        "more": more,
        "show_all": show_all,
        "filters": filters,
        "units": visibility.visible_units(session, principal),
        "levels": LEVELS,
        "states": STATES,
        "now": datetime.now(UTC),
        "query": urlencode({**query, **({"all": "1"} if show_all else {})}),
        "all_query": urlencode({**query, "all": "1"}),
    }


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
) -> Response:
    """The prioritised worklist of the user's units."""
    ctx = worklist_context(request, principal, session, services, unit, level, state, show_all)
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
) -> Response:
    """Only the list, for the page's quiet self-refresh."""
    ctx = worklist_context(request, principal, session, services, unit, level, state, show_all)
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
) -> Response:
    """Acknowledge, escalate or resolve an item, through the same service as the API."""
    t = translator(request)
    target = (
        back
        if back.startswith("/web/") and not back.startswith("//")
        else (request.url_for("web_worklist").path)
    )
    if action not in ACTIONS:
        flash(request, "error", t.gettext("Unknown action."))
        return RedirectResponse(target, 303)
    expected = int(version) if version.isascii() and version.isdigit() else None

    def work(session: Session) -> object:
        return services.worklist.transition(
            session, principal, item_id, action, note.strip() or None, expected
        )

    try:
        write(request.app.state.sessions, work)
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
        flash(
            request,
            "error",
            t.gettext("The item could not be changed: {reason}", reason=exc.message),
        )
    else:
        done = {
            "acknowledge": t.gettext("Item acknowledged."),
            "escalate": t.gettext("Item escalated."),
            "resolve": t.gettext("Item resolved."),
        }[action]
        flash(request, "success", done)
    return RedirectResponse(target, 303)


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


def _override_rules(doc: Any) -> list[Any]:
    return [r for r in doc.rules if getattr(r, "thresholds", None)]


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
    item = item_summary(item_row[0], patient, item_row[1]) if item_row else None
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
        "override_rules": _override_rules(doc),
        "questionnaires": _questionnaires(session, patient.id, since_s),
        "level_labels": level_labels(t),
        "levels": [lv.id for lv in doc.levels],
        "default_expiry": (datetime.now(UTC) + timedelta(days=14)).date().isoformat(),
        "min_expiry": (datetime.now(UTC) + timedelta(days=1)).date().isoformat(),
        "young": 12 <= public.age_years < 16,
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
                    {"rule": rule, "thresholds": thresholds},
                    reason.strip(),
                    expires_at,
                )
        except TriageError as exc:
            if exc.status_code in (403, 404):
                raise
            for path, message in problems_by_field(exc).items():
                field = (
                    "threshold_red"
                    if "red" in path
                    else "threshold_yellow"
                    if "threshold" in path
                    else "expires"
                    if "expire" in path
                    else "rule"
                )
                errors[field] = message
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
