"""The manifest's signature as the server and the client apply it: Open Inference
Protocol (v2) JSON tensors in, numpy arrays out, and back.

Generic over the signature: any number of inputs and outputs, numeric, bool
and string dtypes, a dynamic first dimension read as the batch. Raw CSV
columns map to an input through its ``columns`` list, or, for a single input,
through the signature's ``feature_names``; a text model's string input reads
the CSV column its ``columns`` name, else the column named like the input.
A text model's strings are bounded per text (:data:`MAX_TEXT_CHARS`) as well
as per request, so one huge string cannot cost the server a long tokenization.
"""

from __future__ import annotations

from lepton_cdk.extras import require_extra

require_extra("lepton_cdk.serve", "serve")

import itertools
import math
import reprlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lepton_cdk.contract import Manifest
from lepton_cdk.contract.serving import TENSOR_TYPES, TensorType, is_batched, tensor_columns, tensor_type

from . import binary as binary_ext
from .errors import ClientError, InferenceRequestError

_OIP_TO_TYPE: dict[str, TensorType] = {t.oip: t for t in TENSOR_TYPES.values()}
# Python types a JSON value may decode to, per OIP datatype family
_NUMBER = frozenset({int, float})
_INTEGER = frozenset({int})
# Types an OIP ``parameters`` value may have (the protocol's $parameter: string, number or boolean)
_PARAMETER_VALUE = (str, int, float, bool)
# Characters one text may have: far past any model's max_length (a token is a few characters), small enough
# that tokenizing a whole request stays cheap. Texts longer than max_length tokens are truncated, not refused.
MAX_TEXT_CHARS = 100_000
# The model metadata / Triton config parameters that describe a text model to a client
TEXT_PARAMETER = "lepton.text."


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
    text_input: str | None = None  # a text model's string input (signature.text.input); None for tabular models
    max_text_chars: int = MAX_TEXT_CHARS

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ModelSignature:
        """The signature recorded in ``manifest``."""
        columns = tensor_columns(manifest)
        text = manifest.signature.text
        if text is not None and not columns.get(text.input):
            columns[text.input] = [text.input]  # no column recorded: the CSV column is named like the input

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
            text_input=text.input if text is not None else None,
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
        first problem. :meth:`decode_inference` also reads binary tensors.
        """
        request = self.decode_inference(doc)
        return request.feeds, request.outputs

    def decode_inference(self, doc: Any, *, binary: memoryview | bytes | None = None,
                         raw_inputs: Sequence[bytes] | None = None) -> InferenceRequest:
        """Validate an inference request against the signature: JSON ``data``, binary tensors or gRPC raw contents.

        ``binary`` is what followed the JSON object in an HTTP body sent with the binary tensor data extension
        (each input with ``parameters.binary_data_size`` takes its bytes from it, in order, and the sizes must
        add up to all of it); ``raw_inputs`` is gRPC's ``raw_input_contents``, one entry per input in order.
        Raises :class:`InferenceRequestError` (400) naming the first problem.
        """
        if not isinstance(doc, dict):
            raise InferenceRequestError("the request body must be a JSON object with an 'inputs' list")
        if "id" in doc and not isinstance(doc["id"], str):
            raise InferenceRequestError(f"'id' is {shown(doc['id'])}; the protocol's request id is a string, or leave it out")
        _check_parameters(doc, "the request")
        all_binary = _flag(doc, binary_ext.ALL_OUTPUTS_PARAMETER, "the request")
        items = doc.get("inputs")
        if not isinstance(items, list) or not items:
            raise InferenceRequestError(f"the request has no 'inputs' list; send {self._expected_inputs()}")
        if raw_inputs is not None and len(raw_inputs) != len(items):
            raise InferenceRequestError(f"the request has {len(items)} inputs but {len(raw_inputs)} raw_input_contents; send one raw "
                                        "content per input, in the inputs' order, or none")
        feeds: dict[str, np.ndarray] = {}
        batch_sizes: dict[str, int] = {}
        offset = 0
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
            raw = raw_inputs[index] if raw_inputs is not None else None
            size = (item.get("parameters") or {}).get(binary_ext.SIZE_PARAMETER)
            if size is not None:
                if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                    raise InferenceRequestError(f"input {name!r}: {binary_ext.SIZE_PARAMETER} is {shown(size)}; give the tensor's size in bytes")
                if binary is None:
                    raise InferenceRequestError(f"input {name!r} has {binary_ext.SIZE_PARAMETER} but the request carries no binary data; "
                                                f"send the {binary_ext.HEADER_LENGTH} header and the tensor's bytes after the JSON")
                if offset + size > len(binary):
                    raise InferenceRequestError(f"input {name!r} says {size} bytes of binary data but only {len(binary) - offset} remain "
                                                "after the JSON and the inputs before it; send each tensor's true size")
                raw = binary[offset:offset + size]
                offset += size
            feeds[name] = _decode_tensor(binding, item, self.batched, raw)
            if name == self.text_input:
                _check_text_lengths(name, feeds[name], self.max_text_chars)
            if self.batched:
                batch_sizes[name] = int(feeds[name].shape[0])
        if binary is not None and offset != len(binary):
            raise InferenceRequestError(f"the request carries {len(binary)} bytes of binary data after the JSON but its inputs' "
                                        f"{binary_ext.SIZE_PARAMETER} add up to {offset}; send exactly the inputs' bytes")
        missing = [b.name for b in self.inputs if b.name not in feeds]
        if missing:
            raise InferenceRequestError(f"the request lacks input(s) {', '.join(missing)}; this model takes {self._expected_inputs()}")
        rows = 1
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
        outputs, binary_outputs = self._requested_outputs(doc.get("outputs"), all_binary)
        return InferenceRequest(feeds=feeds, outputs=outputs, binary_outputs=binary_outputs, request_id=doc.get("id"), rows=rows)

    def _requested_outputs(self, outputs: Any, all_binary: bool) -> tuple[list[str], frozenset[str]]:
        if outputs is None:
            names = self.output_names()
            return names, frozenset(names) if all_binary else frozenset()
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
            raise InferenceRequestError("'outputs' must be a list of objects with a 'name'; leave it out to get every output")
        binary = set()
        for output in outputs:
            where = _Named("output", output["name"])
            _check_parameters(output, where)
            if "class_count" in (output.get("parameters") or {}):
                raise InferenceRequestError(f"{where}: the classification extension (class_count) is not supported; ask for the output "
                                            "itself and rank its values in the client")
            if _flag(output, binary_ext.OUTPUT_PARAMETER, where, default=all_binary):
                binary.add(output["name"])
        names = [o["name"] for o in outputs]
        known = self.output_names()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InferenceRequestError(f"output(s) {', '.join(map(shown, unknown[:6]))} do not exist; this model returns {', '.join(known)}")
        return list(dict.fromkeys(names)), frozenset(binary)

    def _expected_inputs(self) -> str:
        return ", ".join(b.describe() for b in self.inputs)

    def encode_response(self, results: Mapping[str, np.ndarray], *, request_id: str | None = None) -> dict[str, Any]:
        """The OIP inference response for ``results`` (output name -> array), every output as JSON ``data``."""
        return self.encode_response_parts(results, request_id=request_id)[0]

    def encode_response_parts(self, results: Mapping[str, np.ndarray], *, request_id: str | None = None,
                              binary: Collection[str] = ()) -> tuple[dict[str, Any], list[bytes]]:
        """The OIP inference response for ``results``, and the binary tensors that follow it.

        The outputs named in ``binary`` carry ``parameters.binary_data_size`` instead of ``data``; their
        bytes are returned in the response's output order (the binary tensor data extension).
        """
        by_name = {b.name: b for b in self.outputs}
        body: dict[str, Any] = {"model_name": self.name, "model_version": self.version}
        if request_id is not None:
            body["id"] = request_id
        tensors, chunks = [], []
        for name, array in results.items():
            binding = by_name[name]
            if name in binary:
                raw = binary_ext.raw_from_array(binding.datatype, array)
                tensors.append({"name": name, "datatype": binding.datatype, "shape": list(array.shape),
                                "parameters": {binary_ext.SIZE_PARAMETER: len(raw)}})
                chunks.append(raw)
            else:
                tensors.append(encode_tensor(binding, array))
        body["outputs"] = tensors
        return body, chunks


@dataclass
class InferenceRequest:
    """A validated inference request: the feeds, the outputs asked for (and which of them go back as binary)."""

    feeds: dict[str, np.ndarray]
    outputs: list[str]
    binary_outputs: frozenset[str] = frozenset()
    request_id: str | None = None
    rows: int = 1  # batch entries (1 for a model without a batch dimension)


def encode_tensor(binding: TensorBinding, array: np.ndarray) -> dict[str, Any]:
    """One OIP output tensor: flat row-major data."""
    if binding.datatype == "BYTES":
        data = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.ravel().tolist()]
    else:
        data = array.ravel().tolist()
    return {"name": binding.name, "datatype": binding.datatype, "shape": list(array.shape), "data": data}


def _check_parameters(holder: dict, where: str | _Named) -> None:
    """``parameters``, where present, must be an object of scalars; Triton's shared-memory extension is refused by name."""
    parameters = holder.get("parameters")
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise InferenceRequestError(f"{where}: 'parameters' is {shown(parameters)}; it must be a JSON object of strings, numbers and booleans")
    for key, value in parameters.items():
        if not isinstance(value, _PARAMETER_VALUE):
            raise InferenceRequestError(f"{where}: parameter {shown(key)} is {shown(value)}; a parameter's value must be a string, number or boolean")
    if "shared_memory_region" in parameters:
        # the tensor would be in a memory region registered with the server; this server has no such regions
        raise InferenceRequestError(f"{where}: the shared-memory extension (shared_memory_region) is not supported; send the tensor in "
                                    f"the request, as JSON 'data' or binary ({binary_ext.SIZE_PARAMETER})")


class _Named:
    """``"<kind> <shown(name)>"`` for an error message, written only when one is raised: reprlib costs microseconds per
    call, and a request that is valid (nearly every one) never needs the text."""

    __slots__ = ("kind", "name")

    def __init__(self, kind: str, name: object) -> None:
        self.kind, self.name = kind, name

    def __str__(self) -> str:
        return f"{self.kind} {shown(self.name)}"


def _flag(holder: dict, key: str, where: str | _Named, *, default: bool = False) -> bool:
    """A boolean parameter of ``holder`` (``default`` when absent); anything but true/false is refused."""
    value = (holder.get("parameters") or {}).get(key, default)
    if not isinstance(value, bool):
        raise InferenceRequestError(f"{where}: parameter {key!r} is {shown(value)}; it must be true or false")
    return value


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


def _decode_tensor(binding: TensorBinding, item: dict, batched: bool, raw: memoryview | bytes | None = None) -> np.ndarray:
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
    if raw is not None:
        if "data" in item:
            raise InferenceRequestError(f"input {name!r} has both 'data' and binary data; send its values one way")
        array = binary_ext.array_from_raw(name, binding.datatype, raw, shape)
        if array.dtype.kind == "f" and np.isinf(array).any():
            raise InferenceRequestError(f"input {name!r} ({binding.datatype}) holds an infinite value; send finite values, or NaN for a "
                                        "missing one")
        return array  # BYTES elements were decoded as strict UTF-8, which has no lone surrogates
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


def _check_text_lengths(name: str, texts: np.ndarray, limit: int) -> None:
    for index, text in enumerate(texts.ravel().tolist()):
        if len(text) > limit:
            raise InferenceRequestError(f"input {name!r}: text #{index} has {len(text)} characters, over this server's limit of {limit}; "
                                        "send shorter texts (the model reads only its first max_length tokens of each)")


def rows_to_inputs(rows: Sequence[Mapping[str, str]], inputs: Iterable[TensorBinding], *, source: str = "input",
                   text_inputs: Iterable[str] = ()) -> list[dict[str, Any]]:
    """OIP request inputs for raw CSV ``rows`` (column name -> text), one row per batch entry.

    An empty cell or ``nan`` in a floating-point column becomes NaN, which the
    pipeline's models read as a missing value (imputed in the graph). The
    inputs named in ``text_inputs`` (a text model's strings) take each cell
    exactly as written, surrounding whitespace included, since a tokenizer may
    read it; other string cells are stripped.
    """
    text_inputs = frozenset(text_inputs)
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
                data.append(_cell(row.get(column), binding.datatype, column, f"{source} line {number}", strip=binding.name not in text_inputs))
        inner = [d if d >= 0 else len(binding.columns) for d in binding.shape[1:]]
        tensors.append({"name": binding.name, "datatype": binding.datatype, "shape": [len(rows), *inner], "data": data})
    return tensors


def _cell(text: str | None, datatype: str, column: str, where: str, *, strip: bool = True) -> Any:
    if text is None:
        raise ClientError(f"{where} has no value for column {column!r}; every row needs every model column")
    if datatype == "BYTES" and not strip:
        return text
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
