"""What a drift report compares: a model's reference sample and a window of scored rows.

Plain numpy containers, no pandas: the service builds a :class:`MonitoringFrame` from its own
store and hands it over; monitoring never opens that store (docs/architecture.md §1).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.artifact import REFERENCE_FILE
from models.features import FEATURE_NAMES, HISTORY_CHANNELS, N_FEATURES

# Raw per-measurement values kept beside the features, for range checks: the latest reading of
# each history channel in its canonical unit (FeatureContext.latest), NaN when there is none.
RAW_CHANNELS: tuple[str, ...] = HISTORY_CHANNELS
RAW_PREFIX = "raw_"


class ReferenceMissingError(FileNotFoundError):
    """The model artifact carries no reference sample, so drift cannot be computed against it."""


@dataclass
class MonitoringFrame:
    """Rows scored by one model: features, predictions, slice labels and optional outcomes."""

    X: np.ndarray  # [n, F] float64 in models.features.FEATURE_NAMES order, NaN = missing
    probability: np.ndarray  # [n] model probability of deterioration
    pathway: np.ndarray  # [n] str pathway id (copd, heart-failure, …)
    organisation: np.ndarray  # [n] str organisation number (the hospital)
    scored_at: np.ndarray  # [n] int64 epoch seconds of the assessment
    outcome: np.ndarray | None = None  # [n] 1 deteriorated, 0 not, NaN not yet known
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # channel -> [n] latest value
    # [n] str patient key per row (a pseudonymous id, never a fødselsnummer); None when rows are
    # of distinct patients (the training sample), so clustering is counted per row.
    patient: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float64)
        if self.X.ndim != 2 or self.X.shape[1] != N_FEATURES:
            raise ValueError(
                f"X must be [n, {N_FEATURES}] in models.features.FEATURE_NAMES order; "
                f"got shape {self.X.shape}"
            )
        n = self.X.shape[0]
        self.probability = np.asarray(self.probability, dtype=np.float64)
        self.pathway = np.asarray(self.pathway, dtype=str)
        self.organisation = np.asarray(self.organisation, dtype=str)
        self.scored_at = np.asarray(self.scored_at, dtype=np.int64)
        if self.outcome is not None:
            self.outcome = np.asarray(self.outcome, dtype=np.float64)
        self.raw = {k: np.asarray(v, dtype=np.float64) for k, v in self.raw.items()}
        if self.patient is not None:
            self.patient = np.asarray(self.patient, dtype=str)
        unknown = sorted(set(self.raw) - set(RAW_CHANNELS))
        if unknown:
            raise ValueError(f"raw values for unknown channels {unknown}; known: {RAW_CHANNELS}")
        columns = {
            "probability": self.probability,
            "pathway": self.pathway,
            "organisation": self.organisation,
            "scored_at": self.scored_at,
            **({"outcome": self.outcome} if self.outcome is not None else {}),
            **({"patient": self.patient} if self.patient is not None else {}),
            **{RAW_PREFIX + k: v for k, v in self.raw.items()},
        }
        wrong = {name: len(v) for name, v in columns.items() if v.shape != (n,)}
        if wrong:
            raise ValueError(f"columns must have {n} rows like X; got {wrong}")

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def has_outcomes(self) -> bool:
        return self.outcome is not None and bool(np.isfinite(self.outcome).any())

    def take(self, rows: np.ndarray) -> MonitoringFrame:
        """The rows selected by a boolean mask or an index array."""
        return MonitoringFrame(
            X=self.X[rows],
            probability=self.probability[rows],
            pathway=self.pathway[rows],
            organisation=self.organisation[rows],
            scored_at=self.scored_at[rows],
            outcome=None if self.outcome is None else self.outcome[rows],
            raw={k: v[rows] for k, v in self.raw.items()},
            patient=None if self.patient is None else self.patient[rows],
        )

    def to_npz(self, path: Path) -> None:
        """Write the exchange format the service exports and ``triage drift --current`` reads."""
        arrays: dict[str, np.ndarray] = {
            "X": self.X,
            "feature_names": np.asarray(FEATURE_NAMES),
            "probability": self.probability,
            "pathway": self.pathway,
            "organisation": self.organisation,
            "scored_at": self.scored_at,
        }
        if self.outcome is not None:
            arrays["outcome"] = self.outcome
        if self.patient is not None:
            arrays["patient"] = self.patient
        arrays.update({RAW_PREFIX + k: v for k, v in self.raw.items()})
        with Path(path).open("wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], *, source: str) -> MonitoringFrame:
        """Build from named arrays (an npz file or parquet columns); feature order is checked."""
        X = _features_from(arrays, source)
        n = X.shape[0]

        def column(*names: str, default: object = None) -> np.ndarray | None:
            for name in names:
                if name in arrays:
                    return np.asarray(arrays[name])
            return None if default is None else np.full(n, default)

        # A reference saved without model scores still serves feature drift; prediction drift
        # is then reported as not computable rather than guessed.
        probability = column("probability", "prediction", default=np.nan)
        scored_at = column("scored_at", default=0)
        outcome = column("outcome", "label", "y")
        return cls(
            X=X,
            probability=probability,  # type: ignore[arg-type]
            pathway=column("pathway", default="unknown"),  # type: ignore[arg-type]
            organisation=column("organisation", default="unknown"),  # type: ignore[arg-type]
            scored_at=scored_at,  # type: ignore[arg-type]
            outcome=outcome,
            raw={
                ch: np.asarray(arrays[RAW_PREFIX + ch])
                for ch in RAW_CHANNELS
                if RAW_PREFIX + ch in arrays
            },
            patient=column("patient"),
        )


def _features_from(arrays: dict[str, np.ndarray], source: str) -> np.ndarray:
    """The [n, F] matrix from one ``X`` (or ``features``) array or one column per feature."""
    matrix_key = next((k for k in ("X", "features") if k in arrays), None)
    if matrix_key is not None:
        X = np.asarray(arrays[matrix_key], dtype=np.float64)
        if "feature_names" in arrays:
            names = [str(s) for s in np.asarray(arrays["feature_names"]).tolist()]
            if names != list(FEATURE_NAMES):
                raise ValueError(
                    f"{source} was written for another feature vector than models/features.py "
                    f"(first difference: {_first_difference(names)})"
                )
        return X
    missing = [name for name in FEATURE_NAMES if name not in arrays]
    if missing:
        more = "…" if len(missing) > 5 else ""
        raise ValueError(f"{source} lacks feature columns {missing[:5]}{more}")
    return np.column_stack([np.asarray(arrays[name], dtype=np.float64) for name in FEATURE_NAMES])


def _first_difference(names: list[str]) -> str:
    for i, (got, want) in enumerate(zip(names, FEATURE_NAMES, strict=False)):
        if got != want:
            return f"position {i}: '{got}' instead of '{want}'"
    return f"{len(names)} names instead of {len(FEATURE_NAMES)}"


def read_frame(path: Path) -> MonitoringFrame:
    """Read a window exported by the service: ``.npz`` (numpy) or ``.parquet`` (one column each)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return MonitoringFrame.from_arrays({k: data[k] for k in data.files}, source=str(path))
    if path.suffix == ".parquet":
        import pandas as pd  # monitoring jobs only; never on the request path

        df = pd.read_parquet(path)
        return MonitoringFrame.from_arrays(
            {c: df[c].to_numpy() for c in df.columns}, source=str(path)
        )
    raise ValueError(f"{path}: expected a .npz or .parquet file")


def reference_hash(frame: MonitoringFrame) -> str:
    """sha256 over a frame's content: names the reference a report compared against, however
    it was stored (npz, parquet, a database export)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(FEATURE_NAMES)).encode())
    for array in (frame.X, frame.probability, frame.scored_at):
        digest.update(np.ascontiguousarray(array).tobytes())
    for labels in (frame.pathway, frame.organisation):
        digest.update("\x1f".join(labels.tolist()).encode())
    if frame.outcome is not None:
        digest.update(np.ascontiguousarray(frame.outcome).tobytes())
    for name in sorted(frame.raw):
        digest.update(name.encode() + np.ascontiguousarray(frame.raw[name]).tobytes())
    if frame.patient is not None:
        digest.update("\x1f".join(frame.patient.tolist()).encode())
    return digest.hexdigest()


def load_reference(artifact_dir: Path) -> MonitoringFrame:
    """The training/validation feature sample saved with a model as ``reference.npz``.

    Keys as training/artifacts.py writes them (REFERENCE_KEYS): ``features`` [n, F],
    ``feature_names``, ``probability``, ``label``, ``pathway`` (also ``logit``, ``age_band``,
    ``sex``, unused here). It carries no organisation, time or raw readings: organisation reads
    "unknown", and range checks use the clinical limits alone.

    Raises :class:`ReferenceMissingError` when the artifact has none: a drift report against an
    invented baseline would be worse than no report.
    """
    path = Path(artifact_dir) / REFERENCE_FILE
    if not path.is_file():
        raise ReferenceMissingError(
            f"no {REFERENCE_FILE} in model artifact folder {artifact_dir}: the model was saved "
            "without its reference sample, so drift cannot be computed (retrain or re-export it)"
        )
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return MonitoringFrame.from_arrays(arrays, source=str(path))
