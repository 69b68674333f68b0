"""Model artifact folder: ``model.onnx`` + ``manifest.json`` (+ model card, reference data).

A model is served by adding files, not code. The manifest names the model and carries the
hashes the service checks before it will score anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.features import FEATURE_NAMES, feature_spec_hash

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
MODEL_CARD_FILE = "model_card.md"
REFERENCE_FILE = "reference.npz"  # training feature sample for drift monitoring
SHIPPED_ARTIFACT_DIR = Path(__file__).parent / "artifacts" / "default"


class ArtifactError(Exception):
    """The artifact is missing, corrupt, or built for another feature contract."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Manifest:
    name: str
    version: str
    kind: str  # "additive" (exact contributions in the graph)
    sha256: str  # of model.onnx
    feature_spec_hash: str
    feature_names: list[str]
    intercept: float
    created: str
    metrics: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ArtifactError(f"no {MANIFEST_FILE} in model artifact folder {folder}") from exc
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
        known = {k: raw.pop(k) for k in list(raw) if k in cls.__dataclass_fields__}
        missing = [
            k
            for k in (
                "name",
                "version",
                "kind",
                "sha256",
                "feature_spec_hash",
                "feature_names",
                "intercept",
                "created",
            )
            if k not in known
        ]
        if missing:
            raise ArtifactError(f"{path} lacks required fields: {', '.join(missing)}")
        known.setdefault("extra", {}).update(raw)
        return cls(**known)

    def write(self, folder: Path) -> None:
        data = dict(self.__dict__)
        extra = data.pop("extra")
        data.update(extra)
        (folder / MANIFEST_FILE).write_text(
            json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    def verify(self, folder: Path) -> None:
        """Refuse an artifact whose bytes or feature contract differ from what it claims."""
        model_path = folder / MODEL_FILE
        if not model_path.is_file():
            raise ArtifactError(f"no {MODEL_FILE} in model artifact folder {folder}")
        actual = sha256_file(model_path)
        if actual != self.sha256:
            raise ArtifactError(
                f"{model_path} has sha256 {actual[:12]}…, but the manifest says "
                f"{self.sha256[:12]}…: the file was changed or the manifest is stale"
            )
        current = feature_spec_hash()
        if self.feature_spec_hash != current:
            raise ArtifactError(
                f"model {self.name} {self.version} was built for feature spec "
                f"{self.feature_spec_hash[:12]}…, but this code defines {current[:12]}…: "
                "retrain it (triage train) or deploy the matching service version"
            )
        if list(self.feature_names) != list(FEATURE_NAMES):
            raise ArtifactError(
                f"model {self.name} {self.version} lists features in another order than "
                "models/features.py"
            )
