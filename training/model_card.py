"""Model card (Markdown) generated for every trained or registered model version."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from models.features import FEATURES

# Why a slice can fall behind, from how the simulator and the features work (for the card).
SLICE_EXPLANATIONS = {
    "pathway=oncology": "neutropenic fever has a 1–3 day prodrome in the simulator (it rises "
    "within hours to days, Klastersky 2016), so rows 2–3 days before onset "
    "carry almost no signal under a 72 h label; chemotherapy days also "
    "raise fatigue and diarrhoea without an event.",
    "pathway=paediatric": "benign viral fevers are frequent and look like an early prodrome "
    "(fever and tachycardia); children's vitals vary more day to day.",
    "pathway=post-operative": "post-operative recovery moves HR and pain for two weeks, so the "
    "personal baseline is still settling when infections start.",
    "age_band=0": "all children; see pathway=paediatric (few rows, wide interval).",
    "age_band=1-4": "all children; see pathway=paediatric.",
    "age_band=5-11": "all children; see pathway=paediatric.",
    "age_band=12-17": "all children; see pathway=paediatric (few rows, wide interval).",
    "age_band=18-64": "dominated by oncology and post-operative patients (see those pathways).",
}


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, list):
        return f"[{_f(value[0], digits)}, {_f(value[1], digits)}]"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:.{digits}f}"
    return str(value)


def _row(name: str, fig: dict[str, Any], probability: bool) -> str:
    return (
        f"| {name} | {fig['rows']} | {fig['positives']} | {_f(fig['auroc'])} "
        f"{_f(fig.get('auroc_ci')) if 'auroc_ci' in fig else ''} | {_f(fig['auprc'])} "
        f"{_f(fig.get('auprc_ci')) if 'auprc_ci' in fig else ''} | "
        f"{_f(fig.get('brier')) if probability else '–'} | "
        f"{_f(fig.get('ece')) if probability else '–'} | {_f(fig['sensitivity'], 2)} | "
        f"{_f(fig['ppv'], 2)} | {_f(fig['alerts_per_100_patient_days'], 1)} | "
        f"{_f(fig['event_sensitivity'], 2)} | {_f(fig['median_warning_h'], 0)} |"
    )


def performance_table(evaluation: dict[str, Any]) -> str:
    """Overall table: model, tree challenger and every rule baseline on the same hold-out."""
    head = (
        "| system | rows | positives | AUROC [95 % CI] | AUPRC [95 % CI] | Brier | ECE | "
        "sensitivity | PPV | alerts /100 patient-days | events detected | "
        "median warning (h) |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head, _row("**Additive model (served)**", evaluation["model"]["overall"], True)]
    if "challenger" in evaluation:
        lines.append(_row("Tree ensemble (comparison)", evaluation["challenger"]["overall"], True))
    for name, res in evaluation["baselines"].items():
        scope = "" if res.get("rows_scope", "all") == "all" else " (heart-failure rows)"
        lines.append(_row(name + scope, res["overall"], False))
    return "\n".join(lines)


def slice_table(evaluation: dict[str, Any]) -> str:
    news2 = evaluation["baselines"].get("NEWS2 ≥ 5", {}).get("slices", {})
    tree = evaluation.get("challenger", {}).get("slices", {})
    lines = [
        "| slice | rows | positives | model AUROC [95 % CI] | model ECE | sensitivity | "
        "alerts /100 pd | events detected | tree AUROC | NEWS2 AUROC |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, fig in evaluation["model"]["slices"].items():
        lines.append(
            f"| {name} | {fig['rows']} | {fig['positives']} | {_f(fig['auroc'])} "
            f"{_f(fig.get('auroc_ci'))} | {_f(fig.get('ece'))} | {_f(fig['sensitivity'], 2)} | "
            f"{_f(fig['alerts_per_100_patient_days'], 1)} | {_f(fig['event_sensitivity'], 2)} | "
            f"{_f(tree.get(name, {}).get('auroc'))} | {_f(news2.get(name, {}).get('auroc'))} |"
        )
    return "\n".join(lines)


def targets_table(evaluation: dict[str, Any]) -> str:
    t = evaluation["targets"]
    cmp = evaluation["at_baseline_sensitivity"]["NEWS2 ≥ 5"]
    gap_text = ", ".join(f"{k} ({v})" for k, v in t["slices_below_gap"].items()) or "none"
    return "\n".join(
        [
            "| target (issue 3) | measured | met |",
            "|---|---|---|",
            f"| AUROC ≥ best full-cohort rule + 0.10 (best rule: {t['best_rule']}, "
            f"{_f(t['best_rule_auroc'])}) | margin {_f(t['auroc_margin'])} | "
            f"{_f(t['auroc_margin_met'])} |",
            f"| at NEWS2 ≥ 5's sensitivity ({_f(cmp['baseline_sensitivity'], 2)}), at most half its "
            f"alerts | model {_f(cmp['model_alerts_per_100_patient_days'], 1)} vs NEWS2 "
            f"{_f(cmp['baseline_alerts_per_100_patient_days'], 1)} per 100 patient-days (ratio "
            f"{_f(t['alert_ratio_at_news2_sensitivity'], 2)}) | {_f(t['alert_ratio_met'])} |",
            f"| ECE ≤ 0.05 | {_f(t['ece'])} | {_f(t['ece_met'])} |",
            f"| no slice more than 0.07 AUROC below overall | below: {gap_text} | "
            f"{_f(t['slice_gap_met'])} |",
        ]
    )


def plot_shapes(model: Any, path: Path) -> Path:
    """Every feature's shape function (contribution to the logit) over its bins, and the
    contribution of a missing value as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(FEATURES)
    cols = 6
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 1.7), dpi=70)
    for j, (f, ax) in enumerate(zip(FEATURES, np.ravel(axes), strict=False)):
        thr, vals = model.thresholds[j], model.values[j]
        if len(thr):
            pad = max(float(thr[-1] - thr[0]) * 0.1, 1.0)
            xs = np.r_[thr[0] - pad, np.repeat(thr, 2), thr[-1] + pad]
            ys = np.repeat(vals, 2)
            ax.plot(xs, ys, "-", lw=1.2)
        else:
            ax.axhline(float(vals[0]), lw=1.2)
        ax.axhline(float(model.missing_values[j]), ls="--", lw=0.8, color="grey")
        if f.never_falls_above is not None:
            ax.axvline(f.never_falls_above, ls=":", lw=0.8, color="red")
        ax.set_title(f.name, fontsize=6)
        ax.tick_params(labelsize=5)
    for ax in np.ravel(axes)[n:]:
        ax.axis("off")
    fig.suptitle(
        "Shape functions (logit contribution; dashed: missing; dotted: rises only)", fontsize=8
    )
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


def render_model_card(
    *,
    name: str,
    version: str,
    created: str,
    config: dict[str, Any],
    training_data: dict[str, Any],
    evaluation: dict[str, Any],
    code_version: str,
    run_id: str | None,
) -> str:
    """The model card as Markdown (sections of issue 3 §5)."""
    low = evaluation["targets"]["slices_below_gap"]
    why = (
        "\n".join(
            f"- **{k}** (AUROC {v}): {SLICE_EXPLANATIONS.get(k, 'few positive rows; wide interval.')}"
            for k, v in low.items()
        )
        or "- none"
    )
    from training.model_fit import monotonic_constraints

    words = {1: "higher = more risk", -1: "lower = more risk", 0: "either"}

    def constraint(f: Any, direction: int) -> str:
        if f.never_falls_above is not None:
            return f"either below {f.never_falls_above:g}; a rise above it never lowers the risk"
        return words[direction]

    features = "\n".join(
        f"| `{f.name}` | {f.label_en} | {f.unit} | {constraint(f, direction)} |"
        for f, direction in zip(FEATURES, monotonic_constraints(), strict=True)
    )
    from training.operating_points import operating_points_table

    points_section = (
        operating_points_table(
            evaluation["operating_points"], evaluation.get("operating_points_test", {})
        )
        if "operating_points" in evaluation
        else "(none chosen)"
    )
    wh = evaluation["at_baseline_sensitivity"]
    hf = wh.get("Weight gain > 2 kg in 3 days")
    hf_line = (
        (
            f"On heart-failure rows, at the weight rule's sensitivity "
            f"({_f(hf['baseline_sensitivity'], 2)}) the model raises "
            f"{_f(hf['model_alerts_per_100_patient_days'], 1)} alerts per 100 patient-days against "
            f"the rule's {_f(hf['baseline_alerts_per_100_patient_days'], 1)}."
        )
        if hf
        else ""
    )
    rows = training_data["rows"]
    threshold = _f(evaluation["alert_threshold"], 4)
    parity = evaluation["parity"]["additive"]
    return f"""# Model card: {name} {version}

> **Trained and evaluated on synthetic data only.** This model must be validated on local
> data (retrospective, then silent prospective use) before any clinical use. Every figure
> below comes from the simulator's hold-out, not from patients.

| | |
|---|---|
| model | `{name}` version `{version}` (ONNX, additive: exact per-feature contributions) |
| created | {created} |
| code version | {code_version} |
| MLflow run | {run_id or "– (shipped build: rebuild with `triage train --shipped`)"} |
| label | deterioration needing hospital contact within the next 72 hours |
| alert threshold | probability ≥ {threshold} (chosen on the validation split) |
| ONNX vs scikit-learn | max abs difference {parity:.2e} in probability on the hold-out \
(limit 1e-5) |

## Intended use and users

Decision support for nurses and physicians in digital home follow-up teams (COPD, heart
failure, after abdominal surgery, chemotherapy, children with respiratory illness). The score
ranks patients on the worklist and explains itself; the pathway's clinician-configured rules
still run and the clinician decides. Users also include ML engineers (retraining, promotion)
and compliance officers (this card, drift reports).

## Out of scope

- Diagnosis, treatment decisions or replacing the clinician's assessment.
- Patients in hospital, emergency triage, or pathways other than the five above.
- Any use on real patients before local validation; the absolute probabilities are calibrated
  to an enriched synthetic event rate and will not match a real population.
- Children under the NEWS2 comparison: NEWS2 is not validated under 16 years.

## Training data

Synthetic cohort from `training/simulator.py` (seed {training_data["seed"]},
{training_data["n_patients"]} patients, {training_data["days"]} days, pathways
{", ".join(training_data["pathways"])}): personal baselines from published distributions,
imperfect adherence, device artefacts (SpO2 misreads, weight in clothes, duplicate sends),
prodromes of 1–7 days with pathway-specific changes of varying strength before each
deterioration, and benign look-alike fluctuations. Rows: one per patient-day, at the day's
newest reading or at the end of a day without readings (train {rows.get("train")},
validation {rows.get("validation")}, test {rows.get("test")}; split by patient). Positive rate
{_f(training_data["positive_rate"])}; {training_data["events"]} deteriorations. Dataset sha256
`{training_data["dataset_sha256"][:16]}…`. Sources of the parameters: `training/README.md`.

Limits: event rates are enriched; prodromes follow simple shapes; comorbidities do not change
physiology beyond oxygen use and hypercapnia; no medication changes, no seasonal effects, no
device brand differences; the model has never seen a real patient.

## Model

Boosted stumps (`HistGradientBoostingClassifier(max_depth=1)`, {config["stump_max_iter"]}
iterations, learning rate {config["stump_learning_rate"]}) with monotonic constraints from the
clinical risk direction of each feature, converted exactly to step functions, Platt-calibrated
on the validation split and centred on the training data. The ONNX graph returns probability,
logit and per-feature contributions that sum exactly to the logit.

Shapes a clinician can believe: besides the monotonic constraints while fitting, the shapes of
the latest pulse (above 60 /min), respiratory rate (above 12 /min) and temperature (above
37.0 °C) are projected so that a rise there never lowers the risk (weighted isotonic fit), and
a missing value never contributes less than the typical patient (0), so "no heart rate for 6
days" can never read as reassuring. `tests/models/test_shapes.py` walks every feature's shape.

![Shape functions](shapes.png)

## Operating points and how rules and model combine

The probability alone is not a level. On the validation split, training chose per pathway the
threshold of each named operating point: `budget-N` allows at most N new alerts per 100
patient-days (an alert that stays raised counts once), `sensitivity-N` finds N % of
deteriorations within 72 h before onset. Pathways name a point per level (shipped: red
`budget-2`, yellow `budget-5`); the service resolves the names against the model it has
loaded. Rules stay the hard safety limits (a red rule such as NEWS2 ≥ 7 or SpO2 < 85 % is red
whatever the model says); the model gives the early warning and can raise a level, never lower
one. Every assessment and worklist item says whether its level came from a rule, the model, or
both.

{points_section}

![Alerts against sensitivity per pathway](operating_points.png)

## Features

| feature | meaning | unit | constraint |
|---|---|---|---|
{features}

## Performance (synthetic hold-out)

{performance_table(evaluation)}

NEWS2 scored by: {evaluation.get("news2_source", "training/baselines.py")}. Sensitivity, PPV
and alerts are per patient-day row at the alert threshold (rules: when they
fire). "Events detected": share of deteriorations with at least one alert in the 72 h before
onset; the warning time runs from the first such alert to onset.

### Against the targets

{targets_table(evaluation)}

{hf_line}

### Per slice

{slice_table(evaluation)}

Slices more than 0.07 AUROC below the overall figure, and why:

{why}

### Plots

![Reliability](reliability.png)

![ROC and precision–recall](roc_pr.png)

## Known failure modes

- Sudden events without a prodrome (about 15 % of simulated events are nearly silent) are
  missed by design: the model can only see what the home readings show.
- Patients with few readings: baselines need 3 readings in 14 days; until then deviations are
  "missing" and the score leans on latest values, symptom score and adherence.
- A run of device artefacts (cold fingers, weighing in clothes) can raise the score; the
  explanation shows which reading did it.
- Benign fluctuations (colds, salty meals, viral fevers in children) produce false alerts.
- Calibration is to the simulator's enriched event rate: recalibrate on local data.

## Before clinical use

This model must be validated on local data before any clinical use: retrospective evaluation
on the hospital's own home-monitoring records, a silent prospective period, and
recalibration. It is a component of a medical device under the EU MDR and requires the
manufacturer's conformity assessment.
"""


def write_governance_card(
    folder: Path, name: str, version: str, card: str, images: dict[str, Path]
) -> Path:
    """Copy the card and its plots to governance/model-cards/<name>-<version>/ and index it."""
    target = Path(folder) / f"{name}-{version}"
    target.mkdir(parents=True, exist_ok=True)
    (target / "model_card.md").write_text(card, encoding="utf-8")
    for fname, src in images.items():
        shutil.copyfile(src, target / fname)
    cards = sorted(p.parent.name for p in Path(folder).glob("*/model_card.md"))
    index = [
        "# Model cards",
        "",
        "Generated by `triage train` for every trained or registered model version "
        "(trained on synthetic data; see each card).",
        "",
    ]
    index += [f"- [{c}]({c}/model_card.md)" for c in cards]
    (Path(folder) / "README.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    return target
