"""The manifest's signature as the server and the client apply it: Open Inference
Protocol (v2) JSON tensors in, numpy arrays out, and back.

Generic over the signature: any number of inputs and outputs, numeric, bool
and string dtypes, a dynamic first dimension read as the batch. Raw CSV
columns map to an input through its ``columns`` list, or, for a single input,
through the signature's ``feature_names``.
"""

from __future__ import annotations

import itertools
import math
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lepton_cdk.contract import Manifest
from lepton_cdk.contract.serving import TENSOR_TYPES, TensorType, is_batched, tensor_columns, tensor_type

from .errors import ClientError, InferenceRequestError

_OIP_TO_TYPE: dict[str, TensorType] = {t.oip: t for t in TENSOR_TYPES.values()}
# Python types a JSON value may decode to, per OIP datatype family
_NUMBER = frozenset({int, float})
_INTEGER = frozenset({int})
# Types an OIP ``parameters`` value may have (the protocol's $parameter: string, number or boolean)
_PARAMETER_VALUE = (str, int, float, bool)


class _Echo(reprlib.Repr):
    """How much of a client's value an error message repeats: enough to recognise it, never the whole body."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 60
        self.maxlist = self.maxdict = 6
        self.maxlevel = 2

    def repr_int(self, x: int, level: int) -> str:
        # counted, not printed: repr() of an integer over 4300 digits raises ValueError, and a product of shape dims gets there
        digits = int(x.bit_length() * math.log10(2)) + 1
        return repr(x) if digits <= self.maxstring else f"<an integer of about {digits} digits>"


_ECHO = _Echo()


def shown(value: Any) -> str:
    """``repr(value)`` bounded in length and depth, for repeating a client's value in a one-line error message."""
    return _ECHO.repr(value)


@dataclass(frozen=True)
class TensorBinding:
    """One input or output: name, OIP datatype, shape (-1 for a dynamic dimension) and its CSV columns."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    columns: tuple[str, ...] = ()

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype of arrays for this tensor (``object`` for BYTES)."""
        return np.dtype(_OIP_TO_TYPE[self.datatype].numpy)

    def metadata(self) -> dict[str, Any]:
        """The tensor as OIP model metadata lists it."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def describe(self) -> str:
        """``name (FP32 [-1, 8])``, for error messages."""
        return f"{self.name} ({self.datatype} {list(self.shape)})"


@dataclass(frozen=True)
class ModelSignature:
    """What a model takes and returns, with the batch rules the server enforces."""

    name: str
    version: str
    inputs: tuple[TensorBinding, ...]
    outputs: tuple[TensorBinding, ...]
    batched: bool
    max_batch_size: int

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ModelSignature:
        """The signature recorded in ``manifest``."""
        columns = tensor_columns(manifest)

        def binding(spec) -> TensorBinding:
            kind = tensor_type(spec)
            shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in spec.shape)
            return TensorBinding(spec.name, kind.oip, shape, tuple(columns.get(spec.name, ())))

        return cls(
            name=manifest.model_name,
            version=manifest.model_version,
            inputs=tuple(binding(s) for s in manifest.signature.inputs),
            outputs=tuple(binding(s) for s in manifest.signature.outputs),
            batched=is_batched(manifest),
            max_batch_size=manifest.serving.max_batch_size,
        )

    def input(self, name: str) -> TensorBinding | None:
        """The input called ``name``, or None."""
        return next((b for b in self.inputs if b.name == name), None)

    def output_names(self) -> list[str]:
        """Every output name, in signature order."""
        return [b.name for b in self.outputs]

    def decode_request(self, doc: Any) -> tuple[dict[str, np.ndarray], list[str]]:
        """Validate an OIP inference request body against the signature.

        Returns the feeds (input name -> array of the model's dtype and the
        request's shape) and the output names asked for (all when the request
        names none). Raises :class:`InferenceRequestError` (400) naming the
        first problem.
        """
        if not isinstance(doc, dict):
            raise InferenceRequestError("the request body must be a JSON object with an 'inputs' list")
        if "id" in doc and not isinstance(doc["id"], str):
            raise InferenceRequestError(f"'id' is {shown(doc['id'])}; the protocol's request id is a string, or leave it out")
        _check_parameters(doc, "the request")
        items = doc.get("inputs")
        if not isinstance(items, list) or not items:
            raise InferenceRequestError(f"the request has no 'inputs' list; send {self._expected_inputs()}")
        feeds: dict[str, np.ndarray] = {}
        batch_sizes: dict[str, int] = {}
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise InferenceRequestError(f"inputs[{index}] is not an object; each input needs name, datatype, shape and data")
            name = item.get("name")
            binding = self.input(name) if isinstance(name, str) else None
            if binding is None:
                raise InferenceRequestError(f"inputs[{index}] has name {shown(name)}, which this model does not take; it takes {self._expected_inputs()}")
            if name in feeds:
                raise InferenceRequestError(f"input {name!r} is given twice; send each input once")
            _check_parameters(item, f"input {name!r}")
            feeds[name] = _decode_tensor(binding, item, self.batched)
            if self.batched:
                batch_sizes[name] = int(feeds[name].shape[0])
        missing = [b.name for b in self.inputs if b.name not in feeds]
        if missing:
            raise InferenceRequestError(f"the request lacks input(s) {', '.join(missing)}; this model takes {self._expected_inputs()}")
        if self.batched:
            sizes = set(batch_sizes.values())
            if len(sizes) > 1:
                raise InferenceRequestError(f"inputs disagree on the batch size ({batch_sizes}); send the same number of rows in each")
            rows = sizes.pop()
            if rows < 1:
                raise InferenceRequestError("the request holds 0 rows; send at least one")
            if rows > self.max_batch_size:
                raise InferenceRequestError(
                    f"the request holds {rows} rows, over this model's max_batch_size of {self.max_batch_size}; split it into smaller requests"
                )
        return feeds, self._requested_outputs(doc.get("outputs"))

    def _requested_outputs(self, outputs: Any) -> list[str]:
        if outputs is None:
            return self.output_names()
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
            raise InferenceRequestError("'outputs' must be a list of objects with a 'name'; leave it out to get every output")
        for output in outputs:
            _check_parameters(output, f"output {shown(output['name'])}")
        names = [o["name"] for o in outputs]
        unknown = [n for n in names if n not in self.output_names()]
        if unknown:
            raise InferenceRequestError(f"output(s) {', '.join(map(shown, unknown[:6]))} do not exist; this model returns {', '.join(self.output_names())}")
        return list(dict.fromkeys(names))

    def _expected_inputs(self) -> str:
        return ", ".join(b.describe() for b in self.inputs)

    def encode_response(self, results: Mapping[str, np.ndarray], *, request_id: str | None = None) -> dict[str, Any]:
        """The OIP inference response for ``results`` (output name -> array)."""
        by_name = {b.name: b for b in self.outputs}
        body: dict[str, Any] = {"model_name": self.name, "model_version": self.version}
        if request_id is not None:
            body["id"] = request_id
        body["outputs"] = [encode_tensor(by_name[name], array) for name, array in results.items()]
        return body


def encode_tensor(binding: TensorBinding, array: np.ndarray) -> dict[str, Any]:
    """One OIP output tensor: flat row-major data."""
    if binding.datatype == "BYTES":
        data = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.ravel().tolist()]
    else:
        data = array.ravel().tolist()
    return {"name": binding.name, "datatype": binding.datatype, "shape": list(array.shape), "data": data}


def _check_parameters(holder: dict, where: str) -> None:
    """``parameters``, where present, must be an object of scalars; the binary tensor extension is refused by name."""
    parameters = holder.get("parameters")
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise InferenceRequestError(f"{where}: 'parameters' is {shown(parameters)}; it must be a JSON object of strings, numbers and booleans")
    for key, value in parameters.items():
        if not isinstance(value, _PARAMETER_VALUE):
            raise InferenceRequestError(f"{where}: parameter {shown(key)} is {shown(value)}; a parameter's value must be a string, number or boolean")
    if "binary_data_size" in parameters:
        # Triton's binary tensor extension puts the bytes after the JSON header; this server reads JSON 'data' only
        raise InferenceRequestError(f"{where}: the binary tensor data extension ('binary_data_size') is not supported; send the values as JSON 'data'")


def _flatten(data: Any, name: str) -> list:
    """Row-major flat list of a (possibly nested) JSON array."""
    if not isinstance(data, list):
        raise InferenceRequestError(f"input {name!r}: 'data' must be a JSON array")
    flat = data
    while flat and isinstance(flat[0], list):
        if not all(isinstance(v, list) for v in flat):
            raise InferenceRequestError(f"input {name!r}: 'data' mixes arrays and scalars at one level; send a flat or regularly nested array")
        flat = list(itertools.chain.from_iterable(flat))
    return flat


def _decode_tensor(binding: TensorBinding, item: dict, batched: bool) -> np.ndarray:
    name = binding.name
    datatype = item.get("datatype")
    if datatype != binding.datatype:
        raise InferenceRequestError(f"input {name!r} has datatype {shown(datatype)} but the model takes {binding.datatype}; send {binding.describe()}")
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InferenceRequestError(f"input {name!r}: 'shape' must be a list of non-negative integers, like {_example_shape(binding)}")
    expected = binding.shape
    fixed = [(i, want) for i, want in enumerate(expected) if want >= 0 and not (batched and i == 0)]
    if len(shape) != len(expected) or any(shape[i] != want for i, want in fixed):
        raise InferenceRequestError(f"input {name!r} has shape {shown(shape)} but the model takes {list(expected)} (-1: any size); "
                                    f"send e.g. {_example_shape(binding)}")
    flat = _flatten(item.get("data"), name)
    # Python's exact integers: a shape like [10**30, 8] is compared with the data it came with, never allocated
    count = math.prod(shape)
    if len(flat) != count:
        raise InferenceRequestError(f"input {name!r} has {len(flat)} values but shape {shown(shape)} needs {shown(count)}; make 'data' match 'shape'")
    return _to_array(binding, flat, shape)


def _example_shape(binding: TensorBinding) -> list[int]:
    return [d if d >= 0 else 1 for d in binding.shape]


def _to_array(binding: TensorBinding, flat: list, shape: list[int]) -> np.ndarray:
    name, datatype = binding.name, binding.datatype
    kinds = set(map(type, flat))
    if datatype == "BYTES":
        allowed = {str}
    elif datatype == "BOOL":
        allowed = {bool}
    elif datatype.startswith(("INT", "UINT")):
        allowed = _INTEGER
    else:
        allowed = _NUMBER
    if not kinds <= allowed:
        bad = next(v for v in flat if type(v) not in allowed)
        want = {"BYTES": "strings", "BOOL": "true/false"}.get(datatype, "integers" if allowed is _INTEGER else "numbers")
        raise InferenceRequestError(f"input {name!r} ({datatype}) holds {shown(bad)}; its 'data' must hold only {want}")
    if datatype == "BYTES":
        _check_unicode(name, flat)
    try:
        # an overflowing cast becomes inf, refused just below, instead of a RuntimeWarning in the server's log
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(flat, dtype=binding.numpy_dtype)
    except (OverflowError, ValueError) as exc:
        raise InferenceRequestError(f"input {name!r}: a value does not fit {datatype} ({exc}); send values in the dtype's range") from None
    if array.dtype.kind == "f" and np.isinf(array).any():
        # NaN stays (a missing value the graph imputes); an infinity is Infinity, 1e400, or a number past the dtype's range
        bad = flat[int(np.flatnonzero(np.isinf(array))[0])]
        raise InferenceRequestError(f"input {name!r} ({datatype}) holds {shown(bad)}, which is infinite or outside {datatype}'s range "
                                    f"(largest {float(np.finfo(array.dtype).max):.4g}); send finite values, or NaN for a missing one")
    return array.reshape(shape)


def _check_unicode(name: str, flat: list[str]) -> None:
    # JSON escapes can spell lone surrogates ("\udc80"), which are not Unicode text and cannot reach the model as UTF-8
    for value in flat:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InferenceRequestError(f"input {name!r} holds {shown(value)}, which has a lone surrogate and is not valid Unicode; "
                                        "send UTF-8 text") from None


def rows_to_inputs(rows: Sequence[Mapping[str, str]], inputs: Iterable[TensorBinding], *, source: str = "input") -> list[dict[str, Any]]:
    """OIP request inputs for raw CSV ``rows`` (column name -> text), one row per batch entry.

    An empty cell or ``nan`` in a floating-point column becomes NaN, which the
    pipeline's models read as a missing value (imputed in the graph).
    """
    tensors = []
    for binding in inputs:
        if not binding.columns:
            raise ClientError(f"the model's input {binding.name!r} names no CSV columns; serve a manifest whose signature lists them")
        per_row = math.prod(d for d in binding.shape[1:] if d >= 0) if all(d >= 0 for d in binding.shape[1:]) else len(binding.columns)
        if per_row != len(binding.columns):
            raise ClientError(f"input {binding.name!r} takes {per_row} values a row but names {len(binding.columns)} columns; fix the manifest's columns")
        data: list[Any] = []
        for number, row in enumerate(rows, start=2):  # line 1 is the header
            for column in binding.columns:
                data.append(_cell(row.get(column), binding.datatype, column, f"{source} line {number}"))
        inner = [d if d >= 0 else len(binding.columns) for d in binding.shape[1:]]
        tensors.append({"name": binding.name, "datatype": binding.datatype, "shape": [len(rows), *inner], "data": data})
    return tensors


def _cell(text: str | None, datatype: str, column: str, where: str) -> Any:
    if text is None:
        raise ClientError(f"{where} has no value for column {column!r}; every row needs every model column")
    text = text.strip()
    try:
        if datatype == "BYTES":
            return text
        if datatype == "BOOL":
            if text.lower() in ("1", "true", "yes"):
                return True
            if text.lower() in ("0", "false", "no"):
                return False
            raise ValueError(text)
        if datatype.startswith(("INT", "UINT")):
            return int(text)
        return float(text) if text else math.nan
    except ValueError:
        raise ClientError(f"{where}, column {column!r}: {text!r} is not a valid {datatype} value; fix the CSV") from None
