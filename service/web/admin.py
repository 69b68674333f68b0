"""Pages for pathway editors, ML engineers and compliance officers."""

from __future__ import annotations

import copy
import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.datastructures import FormData

from service.api.deps import ReadSession, ServicesDep
from service.db.engine import transaction
from service.db.tables import DriftReport, DriftSignOff, PathwayVersion, Patient
from service.domain.free_text import safe_to_echo
from service.domain.monitoring import SIGN_OFF_DECISIONS
from service.domain.pathways import APPROVED, PENDING, REJECTED
from service.errors import Conflict, InvalidInput, NotFound, TriageError
from service.security import visibility
from service.security.deps import CurrentPrincipal, current_principal
from service.security.principal import Principal, Role
from service.web.pages import flash, level_labels, problems_by_field, take_flashes
from service.web.render import render, translator

router = APIRouter(prefix="/web", include_in_schema=False)

# Rule fields a clinician edits as numbers (windows, counts), besides bands and thresholds.
NUMBER_FIELDS = (
    "window_hours",
    "window_days",
    "gap_hours",
    "min_readings",
    "count",
    "days",
    "min_points",
)
BAND_BOUNDS = ("gt", "ge", "lt", "le")
DRY_RUN_VALUES = ("spo2", "heart_rate", "respiratory_rate", "temperature", "systolic_bp", "weight")


# ---- pathways ---------------------------------------------------------------------------------


@router.get("/pathways", name="web_pathways")
def web_pathways(
    request: Request, principal: CurrentPrincipal, session: ReadSession, services: ServicesDep
) -> Response:
    pathways = []
    scope = services.pathways.reading_scope(principal)
    for pid in sorted(services.pathways.known_in(session, scope)):
        found = services.pathways.in_force(session, pid, scope)
        pathways.append(
            {
                "id": pid,
                "version": found.version,
                "doc": found.doc,
                "hash": found.hash,
                "rules": len(found.doc.rules),
                "organisation": found.organisation,
            }
        )
    return render(request, "pathways.html", {"pathways": pathways})


def _coerce(raw: str, integer: bool = False) -> float | int | str | None:
    text = raw.strip().replace(",", ".")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return raw.strip()  # kept as typed: validation names it next to the field
    return int(value) if integer and value.is_integer() else value


def draft_from_form(body: dict[str, Any], form: FormData) -> dict[str, Any]:
    """The stored pathway with the form's edits applied; field names are JSON pointers."""
    draft = copy.deepcopy(body)
    draft.pop("version", None)
    for i, rule in enumerate(draft.get("rules", [])):
        prefix = f"/rules/{i}"
        if f"{prefix}/present" not in form:
            continue
        rule["enabled"] = form.get(f"{prefix}/enabled") == "on"
        for key in NUMBER_FIELDS:
            name = f"{prefix}/{key}"
            if name in form and key in rule:
                rule[key] = _coerce(str(form[name]), integer=key in ("count", "min_readings"))
        if isinstance(rule.get("thresholds"), dict):
            for level in list(rule["thresholds"]):
                name = f"{prefix}/thresholds/{level}"
                if name in form:
                    value = _coerce(str(form[name]))
                    if value is None:
                        del rule["thresholds"][level]
                    else:
                        rule["thresholds"][level] = value
        tables = [("", rule)] if rule.get("bands") else []
        tables += [(f"/tables/{k}", t) for k, t in enumerate(rule.get("tables") or [])]
        for table_path, table in tables:
            for j, band in enumerate(table.get("bands") or []):
                band_path = f"{prefix}{table_path}/bands/{j}"
                for bound in BAND_BOUNDS:
                    if f"{band_path}/{bound}" in form:
                        band[bound] = _coerce(str(form[f"{band_path}/{bound}"]))
                if f"{band_path}/level" in form:
                    band["level"] = str(form[f"{band_path}/level"]) or None
        if "level" in rule and f"{prefix}/level" in form:
            rule["level"] = str(form[f"{prefix}/level"]) or None
    return draft


def _pathway_context(
    request: Request,
    principal: Principal,
    session: Any,
    services: Any,
    pathway_id: str,
    draft: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from models.rules.describe import describe_pathway
    from service.api.pathways import operating_point_summary

    pathways = services.pathways
    scope = pathways.reading_scope(principal)
    if pathway_id not in pathways.known_in(session, scope):
        raise NotFound(f"pathway '{pathway_id}' not found")
    found = pathways.in_force(session, pathway_id, scope)
    version, doc, doc_hash = found.version, found.doc, found.hash
    row = session.scalar(
        select(PathwayVersion).where(
            PathwayVersion.pathway_id == pathway_id, PathwayVersion.version == version
        )
    )
    body = dict(row.body) if row is not None else {}
    editable = principal.role in (Role.CLINICIAN, Role.ADMIN) and pathways.may_edit_in(
        session, principal, pathway_id, scope, None
    )
    history = pathways.versions(session, principal, pathway_id)
    # The proposal awaiting a second clinician in the caller's own scope (admin: the template).
    pending = next(
        (
            v
            for v in history
            if v["status"] == PENDING and v["organisation"] == scope and v["unit"] is None
        ),
        None,
    )
    patients = []
    if editable:
        query = (
            select(Patient)
            .where(
                Patient.pathway_id == pathway_id, visibility.patient_filter(principal, shared=False)
            )
            .order_by(Patient.created_at)
            .limit(50)
        )
        from models.identifiers import mask

        patients = [
            {"id": p.id, "label": f"{mask(p.identifier_value)} · {p.unit}"}
            for p in session.scalars(query)
        ]
    return {
        "pathway_id": pathway_id,
        "version": version,
        "doc": doc,
        "hash": doc_hash,
        "body": draft if draft is not None else body,
        "stored": body,
        "described": describe_pathway(doc),
        "editable": editable,
        "history": history,
        "organisation": found.organisation,
        "pending": pending,
        "pending_is_author": pending is not None and pending["author"] == principal.subject,
        "pending_can_decide": pending is not None
        and visibility.may_approve_pathway(principal, scope, None, doc.editors, pending["author"]),
        "decision_form": {},
        "levels": [lv.id for lv in doc.levels],
        "model_points": operating_point_summary(doc, services),
        "level_labels": level_labels(translator(request)),
        "number_fields": NUMBER_FIELDS,
        "band_bounds": BAND_BOUNDS,
        "dry_run_values": DRY_RUN_VALUES,
        "patients": patients,
        "errors": {},
        "other_problems": [],
        "dry_run": None,
        "form": {},
        "validated": False,
    }


@router.get("/pathways/{pathway_id}", name="web_pathway")
def web_pathway(
    request: Request,
    pathway_id: str,
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
) -> Response:
    """Rules as sentences, the editing form, dry run and the version history."""
    ctx = _pathway_context(request, principal, session, services, pathway_id)
    return render(request, "pathway.html", {**ctx, "flashes": take_flashes(request)})


def _dry_run(
    request: Request,
    principal: Principal,
    session: Any,
    services: Any,
    pathway_id: str,
    draft: dict[str, Any],
    form: FormData,
) -> dict[str, Any]:
    """The same dry run as POST /api/v1/rules/evaluate, for the draft and for the version in force."""
    from service.api.pathways import EvaluateBody, evaluate_rules

    patient_id = str(form.get("dry_patient") or "") or None
    values: dict[str, Any] | None = None
    if patient_id is None:
        values = {}
        for name in DRY_RUN_VALUES:
            value = _coerce(str(form.get(f"dry/{name}") or ""))
            if value is not None:
                values[name] = value
        values["on_oxygen"] = form.get("dry/on_oxygen") == "on"
        values["consciousness"] = "cvpu" if form.get("dry/consciousness") == "cvpu" else "alert"
    age = _coerce(str(form.get("dry/age_years") or ""))
    age_years = float(age) if isinstance(age, float | int) else None
    common: dict[str, Any] = {
        "values": values,
        "patient_id": patient_id,
        "age_years": age_years if patient_id is None else None,
    }
    proposed = evaluate_rules(EvaluateBody(pathway=draft, **common), session, principal, services)
    current = evaluate_rules(
        EvaluateBody(pathway=pathway_id, **common), session, principal, services
    )
    return {
        "proposed": proposed,
        "current": current,
        "patient_id": patient_id,
        "values": values or {},
        "age_years": age_years,
    }


@router.post("/pathways/{pathway_id}", name="web_pathway_edit")
async def web_pathway_edit(
    request: Request,
    pathway_id: str,
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
) -> Response:
    """Validate, dry-run or publish the edited pathway (publish asks for a reason)."""
    t = translator(request)
    form = await request.form()
    intent = str(form.get("intent") or "validate")
    ctx = _pathway_context(request, principal, session, services, pathway_id)
    if not ctx["editable"]:
        from service.errors import Forbidden

        raise Forbidden(f"you are not among the editors of pathway '{pathway_id}'")
    draft = draft_from_form(ctx["stored"], form)
    problems = services.pathways.validate(draft)
    fields = _field_names(draft)
    errors: dict[str, str] = {}
    other: list[dict[str, str]] = []
    for p in problems:
        path = p.get("path", "")
        target = next((f for f in fields if f == path), None) or next(
            (f for f in fields if path.startswith(f + "/")), None
        )
        if target:
            errors[target] = (errors.get(target, "") + " " + p["message"]).strip()
        else:
            other.append(p)
    ctx.update(
        body=draft,
        errors=errors,
        other_problems=other,
        validated=True,
        form={
            "reason": safe_to_echo(str(form.get("reason") or "")),
            "dry_patient": str(form.get("dry_patient") or ""),
            **{k: str(v) for k, v in form.items() if k.startswith("dry/")},
        },
    )
    status = 200
    if problems:
        status = 422
    elif intent == "dry-run":
        try:
            ctx["dry_run"] = _dry_run(
                request, principal, session, services, pathway_id, draft, form
            )
        except TriageError as exc:
            ctx["other_problems"] = [{"path": exc.location or "", "message": exc.message}]
            status = 422
        except ValueError as exc:  # EvaluateBody refuses an inconsistent request
            ctx["other_problems"] = [{"path": "", "message": str(exc)[:300]}]
            status = 422
    elif intent == "publish":
        reason = str(form.get("reason") or "").strip()
        if len(reason) < 3:
            ctx["errors"]["reason"] = t.gettext(
                "Say why you change the pathway (at least 3 characters)."
            )
            status = 422
        else:
            try:
                with transaction(request.app.state.sessions) as tx:
                    result = services.pathways.publish(tx, principal, pathway_id, draft, reason)
            except (InvalidInput, Conflict) as exc:
                ctx["other_problems"] = [
                    {"path": k, "message": v} for k, v in problems_by_field(exc).items()
                ]
                status = exc.status_code
            else:
                if result["status"] == PENDING:
                    message = t.gettext(
                        "Version {version} is proposed. It takes effect when a second clinician "
                        "approves it.",
                        version=result["version"],
                    )
                else:
                    message = t.gettext("Version {version} published.", version=result["version"])
                flash(request, "success", message)
                return RedirectResponse(
                    request.url_for("web_pathway", pathway_id=pathway_id).path + "#history", 303
                )
    return render(request, "pathway.html", {**ctx, "flashes": []}, status_code=status)


@router.post("/pathways/{pathway_id}/versions/{version}", name="web_pathway_decide")
async def web_pathway_decide(
    request: Request,
    pathway_id: str,
    version: Annotated[int, PathParam(ge=1, le=1_000_000)],
    principal: CurrentPrincipal,
    session: ReadSession,
    services: ServicesDep,
) -> Response:
    """Four-eyes: a second clinician approves or rejects a proposed version, with a reason."""
    t = translator(request)
    form = await request.form()
    intent = str(form.get("intent") or "")
    reason = str(form.get("decision_reason") or "").strip()
    errors: dict[str, str] = {}
    if intent not in ("approve", "reject"):
        errors["decision_reason"] = t.gettext("Choose to approve or to reject the change.")
    elif len(reason) < 3:
        errors["decision_reason"] = t.gettext(
            "Say why you approve or reject the change (at least 3 characters)."
        )
    else:
        decision = APPROVED if intent == "approve" else REJECTED
        try:
            with transaction(request.app.state.sessions) as tx:
                services.pathways.decide(tx, principal, pathway_id, version, decision, reason)
        except (InvalidInput, Conflict) as exc:
            errors["decision_reason"] = exc.message
        else:
            done = (
                t.gettext("Version {version} approved: it is now in force.", version=version)
                if decision == APPROVED
                else t.gettext("Version {version} rejected.", version=version)
            )
            flash(request, "success", done)
            return RedirectResponse(
                request.url_for("web_pathway", pathway_id=pathway_id).path + "#history", 303
            )
    ctx = _pathway_context(request, principal, session, services, pathway_id)
    ctx["errors"] = errors
    ctx["decision_form"] = {"decision_reason": safe_to_echo(reason)}
    return render(request, "pathway.html", {**ctx, "flashes": []}, status_code=422)


def _field_names(draft: dict[str, Any]) -> list[str]:
    names = []
    for i, rule in enumerate(draft.get("rules", [])):
        prefix = f"/rules/{i}"
        names += [f"{prefix}/{k}" for k in NUMBER_FIELDS if k in rule]
        names += [f"{prefix}/thresholds/{lv}" for lv in (rule.get("thresholds") or {})]
        tables = [("", rule)] if rule.get("bands") else []
        tables += [(f"/tables/{k}", tb) for k, tb in enumerate(rule.get("tables") or [])]
        for table_path, table in tables:
            for j, _ in enumerate(table.get("bands") or []):
                names += [f"{prefix}{table_path}/bands/{j}/{b}" for b in (*BAND_BOUNDS, "level")]
        if "level" in rule:
            names.append(f"{prefix}/level")
        names.append(prefix)
    # Longest first, so a problem lands on the most specific field.
    return sorted(names, key=len, reverse=True)


# ---- models -------------------------------------------------------------------------------------


def _model_card(request: Request) -> tuple[str | None, str]:
    """The loaded artifact's model card as HTML (markdown rendered with raw HTML switched off)."""
    loaded = request.app.state.models.current()
    folder = getattr(loaded.model, "folder", None) or getattr(loaded.model, "path", None)
    source = str(loaded.source)
    candidates = []
    if folder:
        candidates.append(Path(folder) / "model_card.md")
    if source.startswith("shipped:"):
        candidates.append(Path(source.removeprefix("shipped:")) / "model_card.md")
    candidates.append(Path(request.app.state.settings.model_dir) / "model_card.md")
    for path in candidates:
        if path.is_file():
            text = path.read_text(encoding="utf-8")[:200_000]
            try:
                from markdown_it import MarkdownIt

                return MarkdownIt("commonmark", {"html": False}).enable("table").render(text), str(
                    path
                )
            except ImportError:  # not a declared dependency yet: show the text as it is
                from markupsafe import escape

                return f"<pre>{escape(text)}</pre>", str(path)
    return None, ""


def _aliases(request: Request) -> list[dict[str, str]]:
    """Registry aliases when an MLflow registry is configured (read lazily, never on failure)."""
    settings = request.app.state.settings
    if not settings.mlflow_tracking_uri:
        return []
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        model = client.get_registered_model(settings.model_name)
        return [
            {"alias": a, "version": str(v)}
            for a, v in sorted((getattr(model, "aliases", None) or {}).items())
        ]
    except Exception:  # registry down or model not registered: the page still shows the rest
        return [{"alias": "?", "version": "registry unavailable"}]


@router.get("/models", name="web_models")
def web_models(request: Request, principal: CurrentPrincipal) -> Response:
    from service.api.models import _describe

    model = _describe(request)
    card_html, card_path = _model_card(request)
    return render(
        request,
        "models.html",
        {
            "model": model,
            "loaded_at": datetime.fromtimestamp(model.loaded_at, UTC),
            "aliases": _aliases(request),
            "card_html": card_html,
            "card_path": card_path,
            "flashes": take_flashes(request),
        },
    )


@router.post("/models/reload", name="web_models_reload")
async def web_models_reload(
    request: Request, principal: CurrentPrincipal, confirm: Annotated[str, Form(max_length=8)] = ""
) -> Response:
    """Reload the model through the same function as POST /api/v1/models/reload."""
    from service.api.models import reload_models

    t = translator(request)
    if confirm != "yes":
        flash(request, "error", t.gettext("Tick the confirmation box to reload the model."))
        return RedirectResponse(request.url_for("web_models").path, 303)
    try:
        result = await reload_models(request)
    except TriageError as exc:
        flash(request, "error", exc.message)
    else:
        flash(
            request,
            "success",
            t.gettext(
                "Model reloaded: {name} {version}.", name=result.name, version=result.version
            ),
        )
    return RedirectResponse(request.url_for("web_models").path, 303)


# ---- monitoring -------------------------------------------------------------------------------


def _monitoring(request: Request) -> Any:
    """The drift-report service (service.domain.monitoring)."""
    return request.app.state.services.monitoring


def _report_dict(row: DriftReport, signoff: DriftSignOff | None) -> dict[str, Any]:
    """The API's report shape from the index row alone (when the report's JSON file is gone)."""
    return {
        "id": row.id,
        "window_start": row.window_start,
        "window_end": row.window_end,
        "model_version": row.model_version,
        "pathway": row.pathway,
        "verdict": row.verdict,
        "drifted_features": list(row.drifted_features or []),
        "created_at": row.created_at,
        "created_by": row.created_by,
        "sign_off": None
        if signoff is None
        else {
            "decision": signoff.decision,
            "comment": signoff.comment,
            "signed_by": signoff.signed_by,
            "role": signoff.role,
            "signed_at": signoff.signed_at,
        },
    }


def _first_signoff(session: Any, report_id: str) -> DriftSignOff | None:
    return session.scalar(
        select(DriftSignOff)
        .where(DriftSignOff.report_id == report_id)
        .order_by(DriftSignOff.signed_at)
        .limit(1)
    )


def _reports(request: Request, session: Any) -> list[dict[str, Any]]:
    viewer = current_principal(request)
    return list(_monitoring(request).list_reports(session, limit=100, viewer=viewer))


def _visible_report(request: Request, session: Any, report_id: str) -> DriftReport | None:
    row = session.get(DriftReport, report_id)
    if row is None or not visibility.may_read_report(current_principal(request), row.organisation):
        return None
    return row


def _report(request: Request, session: Any, report_id: str) -> dict[str, Any]:
    row = _visible_report(request, session, report_id)
    if row is None:
        raise NotFound(f"drift report {report_id} not found")
    try:
        return dict(_monitoring(request).get_report(session, report_id))
    except NotFound:  # the JSON file is gone; the index row still says what it found
        return _report_dict(row, _first_signoff(session, report_id))


def _html_path(request: Request, session: Any, report_id: str) -> Path | None:
    row = _visible_report(request, session, report_id)
    if row is None or not row.html_path:
        return None
    path = Path(row.html_path)
    return path if path.is_file() else None


@router.get("/monitoring", name="web_monitoring")
def web_monitoring(request: Request, principal: CurrentPrincipal, session: ReadSession) -> Response:
    return render(
        request,
        "monitoring.html",
        {"reports": _reports(request, session), "flashes": take_flashes(request)},
    )


def _drift_page(
    request: Request,
    session: Any,
    report_id: str,
    errors: dict[str, str],
    form: dict[str, str],
    flashes: list[dict[str, str]],
    status: int = 200,
) -> Response:
    return render(
        request,
        "drift_report.html",
        {
            "report": _report(request, session, report_id),
            "html_ok": _html_path(request, session, report_id) is not None,
            "decisions": SIGN_OFF_DECISIONS,
            "flashes": flashes,
            "errors": errors,
            "form": form,
        },
        status_code=status,
    )


@router.get("/monitoring/drift-reports/{report_id}", name="web_drift_report")
def web_drift_report(
    request: Request, report_id: str, principal: CurrentPrincipal, session: ReadSession
) -> Response:
    return _drift_page(request, session, report_id, {}, {}, take_flashes(request))


@router.get("/monitoring/drift-reports/{report_id}/html", name="web_drift_report_html")
def web_drift_report_html(
    request: Request, report_id: str, principal: CurrentPrincipal, session: ReadSession
) -> Response:
    """The Evidently HTML, framed in a sandbox (its scripts run without our origin)."""
    path = _html_path(request, session, report_id)
    if path is None:
        raise NotFound("the report's HTML file is missing")
    return FileResponse(
        path,
        media_type="text/html",
        headers={
            "Content-Security-Policy": "sandbox allow-scripts; frame-ancestors 'self'",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/monitoring/drift-reports/{report_id}/sign-off", name="web_drift_sign_off")
def web_drift_sign_off(
    request: Request,
    report_id: str,
    principal: CurrentPrincipal,
    session: ReadSession,
    decision: Annotated[str, Form(max_length=32)] = "",
    comment: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """Sign a drift report off: a new record entry, once (sign-offs are never edited)."""
    t = translator(request)
    errors: dict[str, str] = {}
    if decision not in SIGN_OFF_DECISIONS:
        errors["decision"] = t.gettext("Choose a decision.")
    if len(comment.strip()) < 3:
        errors["comment"] = t.gettext("Write a comment (at least 3 characters).")
    if not errors:
        try:
            # The one sign-off path: the monitoring service checks, locks and records it.
            with transaction(request.app.state.sessions) as tx:
                request.app.state.services.monitoring.sign_off(
                    tx,
                    report_id,
                    decision,
                    comment,
                    signed_by=principal.subject,
                    role=principal.role.value,
                    signer=principal,
                )
        except NotFound:
            raise
        except TriageError as exc:
            errors[exc.location if exc.location in ("decision", "comment") else "comment"] = (
                exc.message
            )
    if errors:
        return _drift_page(
            request,
            session,
            report_id,
            errors,
            {"decision": decision, "comment": safe_to_echo(comment)},
            [],
            422,
        )
    flash(request, "success", t.gettext("Sign-off recorded."))
    return RedirectResponse(request.url_for("web_drift_report", report_id=report_id).path, 303)


# ---- audit -------------------------------------------------------------------------------------


def _parse_local(value: str | None) -> datetime | None:
    """A datetime-local field (Oslo time) as an aware datetime."""
    if not value:
        return None
    from service.web.i18n import OSLO

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput("not a date and time", location="from") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=OSLO)


AUDIT_ACTIONS = ("read", "write", "refuse")


def audit_action(value: str | None) -> Literal["read", "write", "refuse"] | None:
    if value == "read":
        return "read"
    if value == "write":
        return "write"
    if value == "refuse":
        return "refuse"
    return None


def _worklist_events(
    session: Any,
    principal: Principal,
    patient: str | None,
    user: str | None,
    resource: str | None,
) -> list[dict[str, Any]]:
    """What people did on the worklist (acknowledge, escalate, resolve, with notes), newest
    first: the handover trail a compliance officer reads beside the access log."""
    from service.db.tables import WorklistEvent, WorklistItem
    from service.security.audit import safe_patient_id

    if resource and "worklist" not in resource:
        return []
    query = (
        select(WorklistEvent, WorklistItem.patient_id)
        .join(WorklistItem, WorklistItem.id == WorklistEvent.item_id)
        .where(WorklistEvent.actor != "system")
    )
    query = query.join(Patient, Patient.id == WorklistItem.patient_id).where(
        visibility.patient_filter(principal)
    )
    if patient:
        query = query.where(WorklistItem.patient_id == safe_patient_id(patient))
    if user:
        query = query.where(WorklistEvent.actor == user)
    rows = session.execute(query.order_by(WorklistEvent.at.desc()).limit(100)).all()
    return [
        {
            "at": e.at,
            "actor": e.actor,
            "action": e.action,
            "patient_id": pid,
            "item_id": e.item_id,
            "note": e.note,
            "recipient": e.recipient,
        }
        for e, pid in rows
    ]


@router.get("/audit", name="web_audit")
def web_audit(
    request: Request,
    principal: CurrentPrincipal,
    session: ReadSession,
    patient: Annotated[str | None, Query(max_length=44)] = None,
    user: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(alias="from", max_length=32)] = None,
    until: Annotated[str | None, Query(alias="to", max_length=32)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    action: Annotated[str | None, Query(max_length=16)] = None,
    resource: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Audit search by patient, user, action, resource and time, newest first, through the
    API's own search function; with what people did on the worklist (handover notes)."""
    from service.api.audit import search_audit_log

    errors: dict[str, str] = {}
    page = None
    t = translator(request)
    try:
        page = search_audit_log(
            request,
            principal,
            session,
            patient=patient or None,
            user=user or None,
            since=_parse_local(since),
            until=_parse_local(until),
            action=audit_action(action),
            limit=100,
            offset=offset,
            resource=resource or None,
            newest_first=True,
        )
    except InvalidInput as exc:
        errors[exc.location or "patient"] = (
            t.gettext("Enter a patient id (Patient/<id>).")
            if exc.location == "patient"
            else t.gettext("Enter a date and time.")
        )
    filters = {
        "patient": patient or "",
        "user": user or "",
        "from": since or "",
        "to": until or "",
        "action": action if action in AUDIT_ACTIONS else "",
        "resource": resource or "",
    }
    worklist_events = (
        []
        if errors
        else _worklist_events(session, principal, patient or None, user or None, resource)
    )
    return render(
        request,
        "audit.html",
        {
            "page": page,
            "filters": filters,
            "errors": errors,
            "offset": offset,
            "audit_actions": AUDIT_ACTIONS,
            "worklist_events": worklist_events,
        },
        status_code=422 if errors else 200,
    )


@router.get("/audit/access-report.csv", name="web_audit_export")
def web_audit_export(
    request: Request,
    principal: CurrentPrincipal,
    session: ReadSession,
    patient: Annotated[str, Query(max_length=44)],
) -> Response:
    """A patient's access log as CSV (pasientjournalloven § 18), from the API's report."""
    from service.api.audit import audit_access_report

    report = audit_access_report(
        request, principal, session, patient=patient, since=None, until=None
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow(["time", "who", "role", "organisation", "what", "purpose", "outcome"])
    for line in report.accesses:
        writer.writerow(
            [
                line.at.isoformat(),
                line.who,
                line.role,
                line.organisation or "",
                line.what,
                line.purpose,
                line.outcome,
            ]
        )
    writer.writerow([])
    writer.writerow(["refused_attempts", report.refused_attempts])
    name = f"access-log-{report.patient_id}.csv"
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
