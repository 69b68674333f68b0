"""The shipped ONNX model as a Triton model repository, and a KServe InferenceService serving it.

Our `/v2` endpoint already speaks the Open Inference Protocol, so a platform team can move the same
`model.onnx` onto Triton (or KServe with the Triton runtime) without a line of ours in the path.
Everything in `config.pbtxt` is read from the ONNX graph itself, never typed by hand, so it cannot
disagree with the file beside it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from models.artifact import Manifest

# ONNX TensorProto element types to Triton data types (Triton model configuration, "Datatypes").
ONNX_TO_TRITON: dict[int, str] = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
}
# Largest batch Triton may form: the nightly re-score sends chunks of 500 patients (service/jobs.py).
DEFAULT_MAX_BATCH_SIZE = 1024


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str
    dims: tuple[int, ...]  # without the batch dimension; () is one value per row


def graph_tensors(model_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of the graph, the first (batch) dimension taken off."""
    graph = onnx.load(str(model_path), load_external_data=False).graph

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor = value.type.tensor_type
        if tensor.elem_type not in ONNX_TO_TRITON:
            raise ValueError(f"{value.name}: ONNX element type {tensor.elem_type} has no mapping")
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        if not dims or dims[0] != -1:
            raise ValueError(f"{value.name}: the first dimension must be the (symbolic) batch")
        return TensorSpec(value.name, ONNX_TO_TRITON[tensor.elem_type], tuple(dims[1:]))

    return [spec(v) for v in graph.input], [spec(v) for v in graph.output]


def _tensor_block(spec: TensorSpec) -> str:
    if spec.dims:
        dims = ", ".join(str(d) for d in spec.dims)
        return f'  {{\n    name: "{spec.name}"\n    data_type: {spec.data_type}\n    dims: [ {dims} ]\n  }}'
    # One value per row ([N] in the graph): Triton wants a dimension, so [1] reshaped to [].
    return (
        f'  {{\n    name: "{spec.name}"\n    data_type: {spec.data_type}\n    dims: [ 1 ]\n'
        "    reshape: { shape: [ ] }\n  }"
    )


def config_pbtxt(
    name: str, model_path: Path, manifest: Manifest, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
) -> str:
    inputs, outputs = graph_tensors(model_path)
    return "\n".join(
        [
            f'name: "{name}"',
            'platform: "onnxruntime_onnx"',
            f"max_batch_size: {max_batch_size}",
            "input [",
            ",\n".join(_tensor_block(s) for s in inputs),
            "]",
            "output [",
            ",\n".join(_tensor_block(s) for s in outputs),
            "]",
            "dynamic_batching { }",
            # Our own version string and checksum, so a served number traces back to the manifest.
            f'parameters: {{ key: "model_version" value: {{ string_value: "{manifest.version}" }} }}',
            f'parameters: {{ key: "sha256" value: {{ string_value: "{manifest.sha256}" }} }}',
            f'parameters: {{ key: "feature_spec_hash" value: {{ string_value: "{manifest.feature_spec_hash}" }} }}',
            "",
        ]
    )


def inference_service_yaml(name: str, storage_uri: str) -> str:
    """A KServe v1beta1 InferenceService on the Triton runtime, speaking the V2 protocol."""
    return f"""apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
  labels:
    app.kubernetes.io/part-of: home-followup-triage
spec:
  predictor:
    model:
      modelFormat:
        name: onnx
      runtime: kserve-tritonserver
      protocolVersion: v2
      storageUri: {storage_uri}
      resources:
        requests:
          cpu: 500m
          memory: 512Mi
        limits:
          cpu: "1"
          memory: 1Gi
"""


def export_triton(
    artifact_dir: Path,
    out: Path,
    *,
    triton_version: int = 1,
    storage_uri: str = "pvc://triage-models/triton",
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> Path:
    """Write `<out>/<name>/<triton_version>/model.onnx`, its `config.pbtxt` and the KServe YAML."""
    if triton_version < 1:
        raise ValueError("Triton model versions are positive integers")
    manifest = Manifest.read(artifact_dir)
    model_dir = out / manifest.name
    version_dir = model_dir / str(triton_version)
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact_dir / "model.onnx", version_dir / "model.onnx")
    (model_dir / "config.pbtxt").write_text(
        config_pbtxt(manifest.name, version_dir / "model.onnx", manifest, max_batch_size),
        encoding="utf-8",
    )
    (out / "inference-service.yaml").write_text(
        inference_service_yaml(manifest.name, storage_uri), encoding="utf-8"
    )
    return model_dir
