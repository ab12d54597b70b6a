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
