"""An Open Inference Protocol (v2) client: raw CSV rows in, predictions out.

It speaks only the protocol (plus Triton's ``/v2/repository/index`` and
``/config`` extensions, which ``lepton serve`` answers too), so the same code
talks to ``lepton serve`` and to Triton. The model's signature comes from the
endpoint's own metadata; the CSV columns of each input come from the
``lepton.columns.<input>`` parameter (model metadata on ``lepton serve``,
the model config on Triton). A text model's string input is named by the
``lepton.text.input`` parameter; its CSV cells are sent exactly as written.
Tensors travel as binary (Triton's binary tensor data extension, both ways)
when the server lists ``binary_tensor_data`` in ``GET /v2``, as JSON otherwise.
"""

from __future__ import annotations

from lepton_cdk.extras import require_extra

require_extra("lepton_cdk.serve", "serve")

import csv
import json
import math
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from lepton_cdk.contract.serving import COLUMNS_PARAMETER

from . import binary as binary_ext
from .errors import ClientError, ServingMismatchError
from .tensors import TEXT_PARAMETER, TensorBinding, rows_to_inputs
from .triton_repo import ONNX_STEP_SUFFIX, TOKENIZER_STEP_SUFFIX

DEFAULT_BATCH_SIZE = 256
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RemoteModel:
    """A model as an endpoint describes it."""

    url: str
    name: str
    version: str
    inputs: tuple[TensorBinding, ...]
    outputs: tuple[TensorBinding, ...]
    max_batch_size: int | None
    text_inputs: tuple[str, ...] = ()  # inputs that take raw text (a text model's strings)
    binary: bool = False  # the server speaks the binary tensor data extension (GET /v2 lists it)


@dataclass
class Predictions:
    """Every output for every row, from one endpoint."""

    model: RemoteModel
    rows: int
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    provider: str | None = None

    def per_row(self) -> list[dict[str, Any]]:
        """One dict per row: output name -> value (a scalar when the output has one value a row)."""
        result = []
        for i in range(self.rows):
            row = {}
            for name, array in self.outputs.items():
                values = array[i].ravel().tolist()
                row[name] = values[0] if len(values) == 1 else values
            result.append(row)
        return result

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``lepton predict --json``)."""
        return {"url": self.model.url, "model": self.model.name, "model_version": self.model.version,
                "execution_provider": self.provider, "rows": self.rows, "predictions": self.per_row()}


def http_client(timeout_s: float) -> httpx.Client:
    """An httpx client with TCP_NODELAY: httpx writes a request's headers and body in separate
    sends, and without it Nagle's algorithm holds the body until the server's delayed ACK
    (about 40 ms per request on a reused connection)."""
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(timeout=timeout_s, transport=transport)


def _call(client: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response:
    try:
        return client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {url} ({type(exc).__name__}: {exc}); check the URL and that the server is running") from None


def _json(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        try:
            detail = response.json().get("error", response.text)
        except (ValueError, AttributeError):
            detail = response.text.strip()[:200]
        raise ClientError(f"{what}: {response.request.url} answered {response.status_code}: {detail}")
    try:
        return response.json()
    except ValueError:
        raise ClientError(f"{what}: {response.request.url} did not answer JSON; is it an OIP v2 endpoint?") from None


def discover_model(client: httpx.Client, url: str, model: str | None = None) -> RemoteModel:
    """The model served at ``url`` (the only one, unless ``model`` names it), with each input's CSV columns."""
    base = url.rstrip("/")
    if model is None:
        index = _json(_call(client, "POST", f"{base}/v2/repository/index", json={}), "listing models")
        names = sorted({m.get("name") for m in index if isinstance(m, dict) and m.get("state", "READY") == "READY"} - {None})
        # a text model's ensemble steps (<name>-tokenizer, <name>-onnx beside <name>) are not what a client calls
        names = [n for n in names if not any(n == m + suffix for m in names for suffix in (TOKENIZER_STEP_SUFFIX, ONNX_STEP_SUFFIX))]
        if len(names) != 1:
            raise ClientError(f"{base} serves {len(names)} ready models ({', '.join(names) or 'none'}); pass --model NAME")
        model = names[0]
    meta = _json(_call(client, "GET", f"{base}/v2/models/{model}"), f"model metadata of {model!r}")
    parameters = meta.get("parameters") or {}
    max_batch = parameters.get("max_batch_size")
    columns: dict[str, list[str]] = {}
    text_inputs = [parameters[TEXT_PARAMETER + "input"]] if isinstance(parameters.get(TEXT_PARAMETER + "input"), str) else []
    for key, value in parameters.items():
        if key.startswith(COLUMNS_PARAMETER):
            columns[key.removeprefix(COLUMNS_PARAMETER)] = json.loads(value)
    if not columns:
        # Triton keeps the columns in the model config it was given (config.pbtxt parameters)
        config_response = _call(client, "GET", f"{base}/v2/models/{model}/config")
        if config_response.status_code < 400:
            config = config_response.json()
            max_batch = config.get("max_batch_size", max_batch)
            config_parameters = {key: value.get("string_value") for key, value in (config.get("parameters") or {}).items()
                                 if isinstance(value, dict)}
            for key, value in config_parameters.items():
                if key.startswith(COLUMNS_PARAMETER):
                    columns[key.removeprefix(COLUMNS_PARAMETER)] = json.loads(value or "[]")
            if config_parameters.get(TEXT_PARAMETER + "input"):
                text_inputs = [config_parameters[TEXT_PARAMETER + "input"]]
            # a text model's ensemble declares max_batch_size 0 (whole shapes) and states the model's own limit here
            max_batch = config_parameters.get("lepton.max_batch_size") or max_batch

    def binding(tensor: dict, with_columns: bool) -> TensorBinding:
        return TensorBinding(tensor["name"], tensor["datatype"], tuple(int(d) for d in tensor["shape"]),
                             tuple(columns.get(tensor["name"], ())) if with_columns else ())

    versions = meta.get("versions") or [""]
    server = _json(_call(client, "GET", f"{base}/v2"), "server metadata")
    extensions = server.get("extensions") if isinstance(server, dict) else None
    return RemoteModel(url=base, name=meta.get("name", model), version=str(versions[-1]),
                       inputs=tuple(binding(t, True) for t in meta["inputs"]), outputs=tuple(binding(t, False) for t in meta["outputs"]),
                       max_batch_size=int(max_batch) if max_batch else None, text_inputs=tuple(text_inputs),
                       binary=isinstance(extensions, list) and binary_ext.EXTENSION in extensions)


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line, as column -> text."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise ClientError(f"input file {path} does not exist; pass a CSV file with a header row") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ClientError(f"{path} is not a readable CSV file ({exc}); pass a UTF-8 CSV with a header row") from None
    if not rows:
        raise ClientError(f"{path} holds no data rows; pass a CSV with a header and at least one row")
    return rows


def _check_columns(remote: RemoteModel, header: list[str], source: str) -> None:
    for binding in remote.inputs:
        if not binding.columns:
            raise ClientError(f"{remote.url} does not say which CSV columns feed input {binding.name!r} "
                              f"(no {COLUMNS_PARAMETER}{binding.name} parameter); serve a model exported by lepton-cdk")
        missing = [c for c in binding.columns if c not in header]
        if missing and binding.name in remote.text_inputs:
            shown_header = ", ".join(map(repr, header[:8])) + (", ..." if len(header) > 8 else "")
            raise ClientError(f"{source} has no column {missing[0]!r}, which holds the texts the model reads (its columns: {shown_header}); "
                              f"add it, or rename the column holding the texts to {missing[0]!r}")
        if missing:
            raise ClientError(f"{source} lacks column(s) {', '.join(missing)} that input {binding.name!r} needs; add them to the CSV")


def inference_request(remote: RemoteModel, tensors: list[dict[str, Any]], request_id: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one inference request for ``tensors`` (OIP inputs with JSON ``data``).

    When the server speaks the binary tensor data extension, each tensor's values go as bytes after the
    JSON and every output is asked back as binary; otherwise the whole request is JSON.
    """
    if not remote.binary:
        return json.dumps({"id": request_id, "inputs": tensors}).encode(), {"content-type": "application/json"}
    by_name = {b.name: b for b in remote.inputs}
    inputs, chunks = [], []
    for tensor in tensors:
        binding = by_name[tensor["name"]]
        array = np.asarray(tensor["data"], dtype=object if binding.datatype == "BYTES" else binding.numpy_dtype)
        raw = binary_ext.raw_from_array(binding.datatype, array)
        inputs.append({"name": tensor["name"], "datatype": tensor["datatype"], "shape": tensor["shape"],
                       "parameters": {binary_ext.SIZE_PARAMETER: len(raw)}})
        chunks.append(raw)
    head = json.dumps({"id": request_id, "inputs": inputs, "parameters": {binary_ext.ALL_OUTPUTS_PARAMETER: True}}).encode()
    return b"".join([head, *chunks]), {"content-type": binary_ext.MEDIA_TYPE, binary_ext.HEADER_LENGTH: str(len(head))}


def _answer(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400 or binary_ext.HEADER_LENGTH.lower() not in response.headers:
        return _json(response, what)
    return binary_ext.read_binary_response(response.content, response.headers[binary_ext.HEADER_LENGTH])


def _output_array(tensor: dict[str, Any]) -> np.ndarray:
    data = tensor["data"]
    if tensor["datatype"] == "BYTES":
        # binary BYTES arrive as bytes, JSON ones as text: both become text, decoded as the server encodes JSON
        values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in np.asarray(data, dtype=object).ravel().tolist()]
        return np.array(values, dtype=object).reshape(tensor["shape"])
    return np.asarray(data, dtype=np.float64).reshape(tensor["shape"])


def infer_rows(client: httpx.Client, remote: RemoteModel, rows: list[dict[str, str]], *, batch_size: int = DEFAULT_BATCH_SIZE,
               source: str = "input") -> Predictions:
    """Send ``rows`` in batches and collect every output, in row order."""
    _check_columns(remote, list(rows[0].keys()), source)
    step = min(batch_size, remote.max_batch_size or batch_size)
    collected: dict[str, list[np.ndarray]] = {}
    provider = None
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        tensors = rows_to_inputs(chunk, remote.inputs, source=source, text_inputs=remote.text_inputs)
        body, headers = inference_request(remote, tensors, f"rows-{start}")
        response = _call(client, "POST", f"{remote.url}/v2/models/{remote.name}/infer", content=body, headers=headers)
        answer = _answer(response, f"inference on rows {start + 1}-{start + len(chunk)}")
        provider = response.headers.get("x-lepton-execution-provider", provider)
        for tensor in answer.get("outputs", []):
            collected.setdefault(tensor["name"], []).append(_output_array(tensor))
    outputs = {name: np.concatenate(parts) for name, parts in collected.items()}
    return Predictions(model=remote, rows=len(rows), outputs=outputs, provider=provider)


def predict(url: str, input_csv: str | Path, *, model: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> Predictions:
    """Predictions from the OIP endpoint at ``url`` for every row of ``input_csv``."""
    rows = read_csv_rows(input_csv)
    with http_client(timeout_s) as client:
        remote = discover_model(client, url, model)
        return infer_rows(client, remote, rows, batch_size=batch_size, source=str(input_csv))


@dataclass
class ServingComparison:
    """Two endpoints' answers on the same rows."""

    url_a: str
    url_b: str
    rows: int
    atol: float
    max_abs_diff: dict[str, float]

    @property
    def passed(self) -> bool:
        """True when every output agrees within ``atol``."""
        return all(d <= self.atol for d in self.max_abs_diff.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``lepton verify-serving --json``)."""
        return {"url_a": self.url_a, "url_b": self.url_b, "rows": self.rows, "atol": self.atol,
                "max_abs_diff": self.max_abs_diff, "passed": self.passed}

    def failure(self) -> ServingMismatchError:
        """The one-line error for a failed comparison."""
        worst = max(self.max_abs_diff, key=self.max_abs_diff.get)
        return ServingMismatchError(f"{self.url_a} and {self.url_b} disagree: output {worst!r} differs by up to "
                                    f"{self.max_abs_diff[worst]:.3g} > --atol {self.atol:g} on {self.rows} rows; "
                                    "serve the same manifest on both, or widen --atol if the runtimes differ by design")


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.dtype == object or b.dtype == object:
        return float(np.count_nonzero(a != b))  # strings: the number of rows that differ
    a, b = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), math.inf, diff)  # NaN on one side only is a disagreement
    return float(diff.max()) if diff.size else 0.0


def verify_serving(url_a: str, url_b: str, input_csv: str | Path, *, atol: float = 1e-5, model: str | None = None,
                   batch_size: int = DEFAULT_BATCH_SIZE, timeout_s: float = DEFAULT_TIMEOUT_S) -> ServingComparison:
    """Send the same rows to both endpoints and measure the largest difference per output."""
    rows = read_csv_rows(input_csv)
    results = []
    with http_client(timeout_s) as client:
        for url in (url_a, url_b):
            remote = discover_model(client, url, model)
            results.append(infer_rows(client, remote, rows, batch_size=batch_size, source=str(input_csv)))
    a, b = results
    if set(a.outputs) != set(b.outputs):
        raise ServingMismatchError(f"{url_a} returns outputs {sorted(a.outputs)} but {url_b} returns {sorted(b.outputs)}; serve the same model on both")
    diffs = {}
    for name in a.outputs:
        if a.outputs[name].shape != b.outputs[name].shape:
            raise ServingMismatchError(f"output {name!r} has shape {list(a.outputs[name].shape)} at {url_a} but "
                                       f"{list(b.outputs[name].shape)} at {url_b}; serve the same model on both")
        diffs[name] = _max_abs_diff(a.outputs[name], b.outputs[name])
    return ServingComparison(url_a=a.model.url, url_b=b.model.url, rows=len(rows), atol=atol, max_abs_diff=diffs)
