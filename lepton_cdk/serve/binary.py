"""Triton's binary tensor data extension, both ways, and the raw tensor bytes gRPC carries.

A tensor sent as binary is its elements in little-endian byte order,
row-major, with no padding; a BOOL element is one byte (0 or 1), a BYTES
element a 4-byte little-endian unsigned length followed by that many bytes.
Over HTTP the request (or response) body is the JSON object followed by the
binary tensors in the order the JSON lists them; the
``Inference-Header-Content-Length`` header gives the JSON object's length,
each binary tensor says its size in ``parameters.binary_data_size``, an output
is asked for as binary with ``parameters.binary_data: true`` (or every output
with the request parameter ``binary_data_output: true``). gRPC's
``raw_input_contents`` / ``raw_output_contents`` hold the same bytes, one
entry per tensor. (Triton's ``docs/protocol/extension_binary_data.md``.)

Server side: :func:`split_body` and :func:`array_from_raw` refuse, with a 400
naming the tensor and the fix, a header length that does not fit the body,
sizes that do not add up, a BOOL byte other than 0/1, a BYTES element running
past its tensor or not UTF-8. Client side: :func:`raw_from_array` and
:func:`read_binary_response`.
"""

from __future__ import annotations

from lepton_cdk.extras import require_extra

require_extra("lepton_cdk.serve", "serve")

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from lepton_cdk.contract.serving import TENSOR_TYPES

from .errors import ClientError, InferenceRequestError

EXTENSION = "binary_tensor_data"
HEADER_LENGTH = "Inference-Header-Content-Length"
SIZE_PARAMETER = "binary_data_size"
OUTPUT_PARAMETER = "binary_data"
ALL_OUTPUTS_PARAMETER = "binary_data_output"
MEDIA_TYPE = "application/octet-stream"
# little-endian dtypes per OIP datatype (BYTES has none: it is length-prefixed)
WIRE_DTYPES: dict[str, np.dtype] = {t.oip: np.dtype(t.numpy).newbyteorder("<") for t in TENSOR_TYPES.values() if t.oip != "BYTES"}
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str) -> tuple[bytes, memoryview]:
    """The JSON object and the binary tensor bytes after it, per the ``Inference-Header-Content-Length`` value.

    Raises :class:`InferenceRequestError` (400) when the value is not a length within the body.
    """
    text = header_length.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:  # str.isdigit alone passes '²', which int() refuses
        raise InferenceRequestError(f"{HEADER_LENGTH} is {header_length[:40]!r}; give the length in bytes of the JSON object that "
                                    "starts the body")
    length = int(text)
    if length > len(body):
        raise InferenceRequestError(f"{HEADER_LENGTH} is {length} but the body has only {len(body)} bytes; give the length of the JSON "
                                    "object that starts the body")
    view = memoryview(body)
    return bytes(view[:length]), view[length:]


def element_count(shape: Sequence[int]) -> int:
    """Elements in a tensor of ``shape`` (exact: a hostile shape's product is never allocated)."""
    return math.prod(shape)


def array_from_raw(name: str, datatype: str, raw: memoryview | bytes, shape: list[int]) -> np.ndarray:
    """The array that ``raw`` (one tensor's binary bytes) holds, as the protocol lays it out.

    BYTES elements come back as ``str`` (UTF-8 decoded) in an object array. Raises
    :class:`InferenceRequestError` (400) naming the tensor when the bytes do not match the shape and datatype.
    """
    count = element_count(shape)
    if datatype == "BYTES":
        return np.array(_bytes_elements(name, raw, count), dtype=object).reshape(shape)
    dtype = WIRE_DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InferenceRequestError(f"input {name!r} has {len(raw)} bytes of binary data but shape {_shown_shape(shape)} of {datatype} "
                                    f"needs {_shown_int(count * dtype.itemsize)}; send exactly the tensor's bytes")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if datatype == "BOOL":
        as_bytes = np.frombuffer(raw, dtype=np.uint8)
        if as_bytes.size and int(as_bytes.max()) > 1:
            raise InferenceRequestError(f"input {name!r} (BOOL) holds the byte {int(as_bytes.max())}; a binary BOOL element is one byte, 0 or 1")
    return array


def _shown_int(value: int) -> str:
    digits = int(value.bit_length() * math.log10(2)) + 1 if value else 1
    return str(value) if digits <= 60 else f"<an integer of about {digits} digits>"


def _shown_shape(shape: list[int]) -> str:
    text = "[" + ", ".join(_shown_int(d) for d in shape[:8]) + (", ..." if len(shape) > 8 else "") + "]"
    return text if len(text) <= 200 else text[:200] + "...]"


def _bytes_elements(name: str, raw: memoryview | bytes, count: int) -> list[str]:
    items: list[str] = []
    offset, end = 0, len(raw)
    # each element costs at least its 4-byte length: more elements than that cannot be in the buffer
    if count * 4 > end:
        raise InferenceRequestError(f"input {name!r} has {end} bytes of binary data, too few for {_shown_int(count)} BYTES elements "
                                    "(each is a 4-byte length, then its bytes); send every element")
    raw = bytes(raw) if isinstance(raw, memoryview) else raw
    for index in range(count):
        if offset + 4 > end:
            raise InferenceRequestError(f"input {name!r}: BYTES element #{index} has no 4-byte length (the tensor's binary data ends at "
                                        f"byte {end}); send every element as a length and its bytes")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > end:
            raise InferenceRequestError(f"input {name!r}: BYTES element #{index} says {size} bytes but only {end - offset} remain in the "
                                        "tensor's binary data; send each element's true length")
        try:
            items.append(raw[offset:offset + size].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InferenceRequestError(f"input {name!r}: BYTES element #{index} is not UTF-8 (byte {exc.start}); send UTF-8 text") from None
        offset += size
    if offset != end:
        raise InferenceRequestError(f"input {name!r} has {end - offset} bytes of binary data after its {count} BYTES elements; "
                                    f"make {SIZE_PARAMETER} the size of the elements alone")
    return items


def raw_from_array(datatype: str, array: np.ndarray) -> bytes:
    """The binary bytes of ``array`` as ``datatype`` (BYTES: each element length-prefixed, ``str`` as UTF-8)."""
    if datatype == "BYTES":
        parts = []
        for item in np.asarray(array, dtype=object).ravel().tolist():
            data = item if isinstance(item, bytes) else str(item).encode("utf-8", "surrogatepass")
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=WIRE_DTYPES[datatype]).tobytes()


def read_binary_response(body: bytes, header_length: str | None) -> dict[str, Any]:
    """An inference response whose outputs may be binary: the JSON object with each binary output's ``data`` filled in
    as a numpy array (BYTES: an object array of ``bytes``). Raises :class:`ClientError` for a body that does not add up."""
    import json

    if header_length is None:
        return json.loads(body)
    try:
        length = int(header_length)
        doc = json.loads(body[:length])
    except ValueError as exc:
        raise ClientError(f"the server's binary response does not parse ({exc}); is it an OIP v2 endpoint?") from None
    offset = length
    for tensor in doc.get("outputs", []):
        size = (tensor.get("parameters") or {}).get(SIZE_PARAMETER)
        if size is None:
            continue
        raw = body[offset:offset + int(size)]
        if len(raw) != int(size):
            raise ClientError(f"output {tensor.get('name')!r} says {size} bytes of binary data but the response ends first")
        offset += int(size)
        tensor["data"] = _response_array(tensor, raw)
    return doc


def _response_array(tensor: dict[str, Any], raw: bytes) -> np.ndarray:
    datatype, shape = tensor.get("datatype"), [int(d) for d in tensor.get("shape", [])]
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(raw):
            (size,) = _LENGTH.unpack_from(raw, offset)
            items.append(raw[offset + 4:offset + 4 + size])
            offset += 4 + size
        return np.array(items, dtype=object).reshape(shape)
    if datatype not in WIRE_DTYPES:
        raise ClientError(f"output {tensor.get('name')!r} has datatype {datatype!r}, which this client cannot read")
    return np.frombuffer(raw, dtype=WIRE_DTYPES[datatype]).reshape(shape)
