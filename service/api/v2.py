"""Open Inference Protocol (KServe V2) REST for the risk model.

Any V2 client (tritonclient, KServe's InferenceRESTClient, curl) can call the model that scores
the worklist, and the same ONNX file can later move to KServe or Triton unchanged. The one input
is ``features`` FP32 [-1, F] in ``models.features.FEATURE_NAMES`` order (NaN or null = missing);
the outputs are ``probability`` [-1], ``logit`` [-1] and ``contributions`` [-1, F] (FP64, exact
additive terms: ``intercept + Σ contributions == logit``).

JSON tensors (nested or flat ``data``) and Triton's binary tensor extension are both accepted.
Inference is benchmarked against ``mlflow models serve`` (bench/bench_v2.py), so it stays lean:
no pydantic on the request, no thread hop for small bodies, one reference to the loaded model
per request. create_app installs `V2InferFastPath`, which answers the infer calls before the
routed stack; the infer routes below describe them in OpenAPI and serve them where the fast path
is not installed. Errors answer ``{"error": "..."}`` with 400, 401, 403 or 404.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import numpy as np
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from models.additive import INPUT_NAME, OUTPUT_NAMES
from models.features import FEATURE_NAMES, N_FEATURES
from models.runtime import OnnxRiskModel
from service.errors import BadRequest, NotFound, TriageError

try:  # msgspec parses and writes numeric JSON ~10x faster than the standard library.
    import msgspec

    _decode_fast: Any = msgspec.json.decode
    _encode_fast: Any = msgspec.json.encode
    _DecodeError: type[Exception] = msgspec.DecodeError
except ImportError:  # pragma: no cover - the standard library is correct, only slower
    _decode_fast, _encode_fast, _DecodeError = json.loads, None, ValueError

router = APIRouter(prefix="/v2", tags=["open-inference-protocol"])

SERVER_NAME = "home-followup-triage"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ("binary_tensor_data",)
PLATFORM = "onnxruntime_onnx"
BINARY_HEADER = "inference-header-content-length"
OUTPUT_SHAPES = {"probability": [-1], "logit": [-1], "contributions": [-1, N_FEATURES]}
# Wire datatypes the V2 protocol names, for the ones we accept as input.
# Bodies above this are parsed and scored in the thread pool (about 500 JSON rows).
INLINE_MAX_BODY_BYTES = 64 * 1024
ACCEPTED_INPUT_DTYPES = {"FP32": np.float32, "FP64": np.float64}

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": 'Malformed request: {"error": "..."}'},
    401: {"description": "Missing or invalid bearer token"},
    403: {"description": "The caller's role may not use this route"},
    404: {"description": 'Unknown model or version: {"error": "..."}'},
    503: {"description": 'No model loaded: {"error": "..."}'},
}
_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype"],
                                "properties": {
                                    "name": {"const": INPUT_NAME},
                                    "shape": {"type": "array", "items": {"type": "integer"}},
                                    "datatype": {"enum": ["FP32", "FP64"]},
                                    "data": {"type": "array"},
                                },
                            },
                        },
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"name": {"enum": OUTPUT_NAMES}},
                            },
                        },
                    },
                }
            }
        },
    }
}


# Response shapes for the OpenAPI description (the routes write JSON bytes directly).
class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any]


class OutputTensor(TensorMetadata):
    data: list[float] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]
    parameters: dict[str, Any]


def _ok(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model}, **_ERRORS}


def _json(body: Any, status: int = 200) -> Response:
    raw = _encode_fast(body) if _encode_fast else json.dumps(body).encode()
    return Response(raw, status_code=status, media_type="application/json")


def _model(request: Request, name: str, version: str | None = None) -> OnnxRiskModel:
    model: OnnxRiskModel = request.app.state.models.current().model
    _check_model(model, name, version)
    return model


# ---- health and metadata ------------------------------------------------------------------


@router.get("", name="v2_server_metadata", responses=_ok(ServerMetadata))
def v2_server_metadata() -> Response:
    """Server metadata: name, version and protocol extensions."""
    return _json({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})


@router.get("/health/live", name="v2_live", responses={200: {"description": "Live"}})
def v2_live() -> Response:
    """200 while the process serves requests."""
    return _json({"live": True})


@router.get(
    "/health/ready",
    name="v2_ready",
    responses={200: {"description": "Ready"}, 400: {"description": "Not ready"}},
)
def v2_ready(request: Request) -> Response:
    """200 when the model is loaded; the protocol answers "false" with a 4xx."""
    ready = request.app.state.models.ready
    return _json({"ready": ready}, 200 if ready else 400)


def _metadata(model: OnnxRiskModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, N_FEATURES]}],
        "outputs": [
            {"name": n, "datatype": "FP64", "shape": OUTPUT_SHAPES[n]} for n in OUTPUT_NAMES
        ],
        # Not in the core protocol, but a client needs the order of the columns it sends.
        "parameters": {
            "feature_names": list(FEATURE_NAMES),
            "intercept": model.manifest.intercept if model.manifest else None,
        },
    }


@router.get("/models/{name}", name="v2_model_metadata", responses=_ok(ModelMetadata))
def v2_model_metadata(name: str, request: Request) -> Response:
    """Inputs and outputs with names, datatypes and shapes (-1 = any batch size)."""
    return _json(_metadata(_model(request, name)))


@router.get(
    "/models/{name}/versions/{version}",
    name="v2_model_version_metadata",
    responses=_ok(ModelMetadata),
)
def v2_model_version_metadata(name: str, version: str, request: Request) -> Response:
    return _json(_metadata(_model(request, name, version)))


@router.get("/models/{name}/ready", name="v2_model_ready", responses=_ERRORS)
def v2_model_ready(name: str, request: Request) -> Response:
    model = _model(request, name)
    return _json({"name": model.name, "ready": model.ready}, 200 if model.ready else 400)


@router.get(
    "/models/{name}/versions/{version}/ready", name="v2_model_version_ready", responses=_ERRORS
)
def v2_model_version_ready(name: str, version: str, request: Request) -> Response:
    model = _model(request, name, version)
    return _json({"name": model.name, "ready": model.ready}, 200 if model.ready else 400)


# ---- inference ------------------------------------------------------------------------------


@dataclass
class InferRequest:
    id: str | None
    features: np.ndarray  # float32 [N, F]
    outputs: list[str]
    binary_outputs: set[str]


def _tensor_data(
    spec: dict[str, Any], binary: memoryview | None, offset: int
) -> tuple[np.ndarray, int]:
    """The input's values as float32 [N, F]; returns the next binary offset."""
    if spec.get("name") != INPUT_NAME:
        raise BadRequest(f"unknown input '{spec.get('name')}'; the model takes '{INPUT_NAME}'")
    datatype = spec.get("datatype")
    dtype = ACCEPTED_INPUT_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise BadRequest(
            f"input '{INPUT_NAME}' must have datatype FP32 (or FP64), not {spec.get('datatype')!r}"
        )
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or shape[1] != N_FEATURES
        or not isinstance(shape[0], int)
        or shape[0] < 1
    ):
        raise BadRequest(
            f"input '{INPUT_NAME}' must have shape [N, {N_FEATURES}] with N >= 1, not {shape!r}"
        )
    rows = shape[0]
    size = _parameters(spec, "inputs[0].parameters").get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        raise BadRequest("'inputs[0].parameters.binary_data_size' must be an integer")
    if size is not None:
        itemsize = np.dtype(dtype).itemsize
        if binary is None or size != rows * N_FEATURES * itemsize or offset + size > len(binary):
            raise BadRequest(f"binary data for '{INPUT_NAME}' does not match shape {shape}")
        values = np.frombuffer(
            binary[offset : offset + size], dtype=np.dtype(dtype).newbyteorder("<")
        ).reshape(rows, N_FEATURES)
        return values.astype(np.float32, copy=False), offset + size
    data = spec.get("data")
    if not isinstance(data, list):
        raise BadRequest(f"input '{INPUT_NAME}' needs a 'data' array")
    try:
        values = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError):
        values = _with_nulls(data)
    if values.size != rows * N_FEATURES or values.ndim not in (1, 2):
        raise BadRequest(
            f"input '{INPUT_NAME}' data holds {values.size} values in "
            f"{values.ndim} dimensions; shape {shape} needs {rows * N_FEATURES}"
        )
    return values.reshape(rows, N_FEATURES), offset


def _with_nulls(data: list[Any]) -> np.ndarray:
    """JSON has no NaN: null stands for a missing feature."""
    try:
        raw = np.array(data, dtype=object)
        raw[np.frompyfunc(lambda v: v is None, 1, 1)(raw).astype(bool)] = np.nan
        return raw.astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise BadRequest(
            f"input '{INPUT_NAME}' data must be numbers (or null for missing), "
            "as a flat array or one array per row"
        ) from exc


def _parameters(spec: dict[str, Any], location: str) -> dict[str, Any]:
    """A tensor's optional `parameters`, which the protocol defines as a JSON object."""
    params = spec.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadRequest(f"'{location}' must be an object")
    return params


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """JSON (or JSON header + binary tensors) -> validated request; BadRequest names the fault."""
    binary: memoryview | None = None
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError as exc:
            raise BadRequest("Inference-Header-Content-Length must be an integer") from exc
        if not 0 < split <= len(body):
            raise BadRequest("Inference-Header-Content-Length exceeds the body")
        binary = memoryview(body)[split:]
        body = body[:split]
    try:
        doc = _decode_fast(body)
    except RecursionError as exc:  # the input guard does not cover this path: bound it here
        raise BadRequest("JSON nesting is deeper than allowed") from exc
    except _DecodeError:
        try:  # the fast decoder is strict JSON; Python clients may send NaN literals
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequest("the inference request must be a JSON object")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest(f"'inputs' must hold exactly one tensor, '{INPUT_NAME}'")
    features, _ = _tensor_data(inputs[0], binary, 0)
    params = doc.get("parameters") or {}
    all_binary = bool(params.get("binary_data_output")) if isinstance(params, dict) else False
    requested = doc.get("outputs")
    if requested is None:
        names = list(OUTPUT_NAMES)
        binary_outputs = set(names) if all_binary else set()
    else:
        if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
            raise BadRequest("'outputs' must be an array of {\"name\": ...} objects")
        names, binary_outputs = [], set()
        for i, spec in enumerate(requested):
            name = spec.get("name")
            if not isinstance(name, str) or name not in OUTPUT_SHAPES:
                raise BadRequest(f"unknown output '{name}'; outputs are {', '.join(OUTPUT_NAMES)}")
            names.append(name)
            if all_binary or _parameters(spec, f"outputs[{i}].parameters").get("binary_data"):
                binary_outputs.add(name)
    request_id = doc.get("id")
    return InferRequest(
        str(request_id) if request_id is not None else None, features, names, binary_outputs
    )


def infer_response(model: OnnxRiskModel, req: InferRequest) -> tuple[bytes, int | None]:
    """Run the model; returns the body and, for binary outputs, the JSON header length."""
    prediction = model.predict(req.features)
    arrays = {
        "probability": prediction.probability,
        "logit": prediction.logit,
        "contributions": prediction.contributions,
    }
    outputs, blobs = [], []
    for name in req.outputs:
        array = np.ascontiguousarray(arrays[name], dtype="<f8")
        tensor: dict[str, Any] = {"name": name, "datatype": "FP64", "shape": list(array.shape)}
        if name in req.binary_outputs:
            blob = array.tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = array.ravel().tolist()
        outputs.append(tensor)
    body: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": outputs,
        "parameters": {"intercept": prediction.intercept},
    }
    if req.id is not None:
        body["id"] = req.id
    header = _encode_fast(body) if _encode_fast else json.dumps(body).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _parse_and_run(
    model: OnnxRiskModel, raw: bytes, header_length: str | None
) -> tuple[bytes, int | None]:
    return infer_response(model, parse_infer_request(raw, header_length))


async def _infer(request: Request, name: str, version: str | None) -> Response:
    model = _model(request, name, version)  # one reference: a reload cannot swap it mid-request
    raw = await request.body()
    binary_header = request.headers.get(BINARY_HEADER)
    if len(raw) < INLINE_MAX_BODY_BYTES:
        # A few rows take tens of microseconds: a thread hop would cost more than it saves.
        body, json_length = _parse_and_run(model, raw, binary_header)
    else:  # a large batch would stall every other request on the event loop
        body, json_length = await run_in_threadpool(_parse_and_run, model, raw, binary_header)
    if json_length is None:
        return Response(body, media_type="application/json")
    return Response(
        body,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(json_length)},
    )


@router.post(
    "/models/{name}/infer", name="v2_infer", responses=_ok(InferResponse), openapi_extra=_INFER_BODY
)
async def v2_infer(name: str, request: Request) -> Response:
    """Risk probability, logit and exact per-feature contributions for each row."""
    return await _infer(request, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer",
    name="v2_version_infer",
    responses=_ok(InferResponse),
    openapi_extra=_INFER_BODY,
)
async def v2_version_infer(name: str, version: str, request: Request) -> Response:
    return await _infer(request, name, version)


# ---- the lean path for inference -------------------------------------------------------------

_INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_TOKEN_CACHE_MAX = 1024


@dataclass(frozen=True)
class _RouteLabel:
    """What RequestGuard reads from scope["route"] for the latency histogram."""

    path: str
    name: str


class V2InferFastPath:
    """Pure-ASGI handler for ``POST /v2/models/{name}[/versions/{v}]/infer``; all else passes on.

    The routed FastAPI endpoint costs ~1 ms of CPU per call in this app, mostly outside the
    model: a thread hop for the app-wide sync `authorize` dependency, an RS256 verification of
    the same token on every call, the JSON input guard (which also refuses the binary tensor
    extension's octet-stream bodies) and ~40 route matches. This path keeps every control that
    matters for a call that carries no patient data, in one place:
    - the same TokenVerifier and the same route x role table (`v2_infer`), guardian-proxy tokens
      refused; a verified token is cached by its exact bytes until its own `exp`, so a key
      rotation affects cached tokens only until they expire;
    - the same audit trail: one event per call through the app's AuditWriter;
    - the body-size limit and latency histogram of RequestGuard, which stays outside it;
    - errors in the protocol's {"error": ...} shape, counted in triage_errors_total.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._tokens: dict[str, tuple[Any, float]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = _INFER_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        version = match.group(2)
        route = (
            "/v2/models/{name}/infer"
            if version is None
            else ("/v2/models/{name}/versions/{version}/infer")
        )
        scope["route"] = _RouteLabel(route, "v2_infer" if version is None else "v2_version_infer")
        headers = dict(scope["headers"])
        principal = None
        try:
            principal = self._principal(state, headers)
            _authorise(principal, scope["route"].name)
            raw = await _read_body(receive)
            model: OnnxRiskModel = state.models.current().model
            _check_model(model, unquote(match.group(1)), version and unquote(version))
            binary_header = headers.get(BINARY_HEADER.encode())
            args = (model, raw, binary_header.decode("latin-1") if binary_header else None)
            if len(raw) < INLINE_MAX_BODY_BYTES:
                body, json_length = _parse_and_run(*args)
            else:
                body, json_length = await run_in_threadpool(_parse_and_run, *args)
            status, extra = 200, []
            if json_length is None:
                media = b"application/json"
            else:
                media = b"application/octet-stream"
                extra = [(b"inference-header-content-length", str(json_length).encode())]
        except TriageError as exc:
            status, media, extra = exc.status_code, b"application/json", []
            body = json.dumps({"error": exc.message}).encode()
            if status == 401:
                extra = [(b"www-authenticate", b'Bearer error="invalid_token"')]
            state.metrics.errors.labels(type=exc.code, status=str(status)).inc()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", media),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self._audit(state, route, status, principal)

    def _principal(self, state: Any, headers: dict[bytes, bytes]) -> Any:
        from service.errors import Unauthorised

        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorised("a bearer token is required")
        cached = self._tokens.get(token)
        if cached is None or cached[1] <= time.time():
            principal = state.verifier.verify(token)  # raises Unauthorised
            if len(self._tokens) >= _TOKEN_CACHE_MAX:
                self._tokens.clear()
            self._tokens[token] = cached = (principal, _expiry(token))
        return cached[0]

    @staticmethod
    def _audit(state: Any, route: str, status: int, principal: Any) -> None:
        writer = getattr(state, "audit", None)
        if writer is None:
            return
        from service.security.audit import build_events

        writer.submit(
            build_events(
                method="POST",
                route_path=route,
                status=status,
                principal=principal,
                patient_ids=set(),
                purpose=None,
            )
        )


def _authorise(principal: Any, route_name: str) -> None:
    """The route x role table, as the app-wide `authorize` dependency applies it."""
    from service.errors import Forbidden
    from service.security.policy import allowed_roles

    roles = allowed_roles(route_name)
    if roles is not None and principal.role not in roles:
        raise Forbidden(f"role '{principal.role.value}' may not call {route_name}")
    if getattr(principal, "guardian_proxy", False):
        raise Forbidden("this route is not available when acting for a parent or guardian")


def _check_model(model: OnnxRiskModel, name: str, version: str | None) -> None:
    if name != model.name:
        raise NotFound(f"unknown model '{name}'; this server serves '{model.name}'")
    if version is not None and version != model.version:
        raise NotFound(f"model '{name}' has no version '{version}'; loaded: {model.version}")


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _expiry(token: str) -> float:
    """The verified token's own `exp` (its payload was just verified; no second check needed)."""
    import base64

    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return 0.0  # unknown expiry: verify again next time
