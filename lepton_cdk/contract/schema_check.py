"""A small JSON Schema checker for the subset of draft 2020-12 that the
shipped schemas use (type, required, properties, additionalProperties, items,
enum, pattern, minimum, maximum, minItems, $ref to ``#/$defs/...``).

The contract must stay standard-library only, so it cannot depend on the
``jsonschema`` package; the tests check this subset against ``jsonschema``
on the same documents.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ContractError, SchemaVersionError

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def schema_errors(doc: Any, schema: dict, root: dict | None = None, where: str = "$") -> list[str]:
    """Every violation of ``schema`` in ``doc``, as ``"<json path>: <problem>"``."""
    root = root if root is not None else schema
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {ref!r}")
        return schema_errors(doc, root["$defs"][ref.split("/")[-1]], root, where)
    errors: list[str] = []
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_is_type(doc, n) for n in names):
            return [f"{where}: expected {' or '.join(names)}, got {type(doc).__name__}"]
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{where}: {doc!r} is not one of {schema['enum']}")
    if isinstance(doc, str) and "pattern" in schema and not re.search(schema["pattern"], doc):
        errors.append(f"{where}: {doc!r} does not match {schema['pattern']}")
    if _is_type(doc, "number"):
        if "minimum" in schema and doc < schema["minimum"]:
            errors.append(f"{where}: {doc} is below the minimum {schema['minimum']}")
        if "maximum" in schema and doc > schema["maximum"]:
            errors.append(f"{where}: {doc} is above the maximum {schema['maximum']}")
    if isinstance(doc, dict):
        for key in schema.get("required", []):
            if key not in doc:
                errors.append(f"{where}: missing required field {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in doc.items():
            if key in props:
                errors.extend(schema_errors(value, props[key], root, f"{where}.{key}"))
            elif extra is False:
                errors.append(f"{where}: unknown field {key!r}")
            elif isinstance(extra, dict):
                errors.extend(schema_errors(value, extra, root, f"{where}.{key}"))
    if isinstance(doc, list):
        if len(doc) < schema.get("minItems", 0):
            errors.append(f"{where}: needs at least {schema['minItems']} item(s)")
        if "items" in schema:
            for i, item in enumerate(doc):
                errors.extend(schema_errors(item, schema["items"], root, f"{where}[{i}]"))
    return errors


def check_schema_version(version: Any, what: str, *, supported_major: int, regenerate: str) -> None:
    """Refuse a ``schema_version`` whose major part is not ``supported_major``.

    ``regenerate`` is the command that writes the document anew (named in the fix).
    """
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise ContractError(
            f"{what} has schema_version {version!r}, expected a semantic version like '{supported_major}.0.0'; "
            f"regenerate it with {regenerate}"
        ) from None
    if major != supported_major:
        fix = "upgrade lepton-cdk" if major > supported_major else f"regenerate it with {regenerate}"
        raise SchemaVersionError(
            f"{what} has schema_version {version} but this lepton-cdk reads major version {supported_major}; "
            f"{fix} so the versions match"
        )


def validate_document(doc: Any, schema: dict, *, what: str, kind: str, supported_major: int, regenerate: str) -> None:
    """The checks every versioned contract file gets, in order: a JSON object, a known major
    ``schema_version``, then every schema violation (the first five named) in one :class:`ContractError`."""
    if not isinstance(doc, dict):
        raise ContractError(f"{what} is not a JSON object; regenerate it with {regenerate}")
    check_schema_version(doc.get("schema_version"), what, supported_major=supported_major, regenerate=regenerate)
    errors = schema_errors(doc, schema)
    if errors:
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        raise ContractError(f"{what} does not match the {kind} schema: {shown}; regenerate it with {regenerate}")
