"""Reader for the deploy outputs file.

Accepts both shapes a user may hand us:

* ``cdktf deploy --outputs-file out.json``: ``{"<stack>": {"<output>": value}}``
* ``terraform output -json`` for one stack: ``{"<output>": {"value": v, "type": t, "sensitive": b}}``
  (pass ``stack=`` to name it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ContractError
from .files import read_json_document


@dataclass(frozen=True)
class StackOutputs:
    """The outputs of one deployed stack."""

    stack: str
    values: dict[str, Any]

    def get(self, name: str) -> Any:
        """The output ``name``; a clear error naming the known ones when absent."""
        if name not in self.values:
            known = ", ".join(sorted(self.values)) or "none"
            raise ContractError(f"stack {self.stack!r} has no output {name!r} (it has: {known}); redeploy with a current lepton-cdk")
        return self.values[name]


def _is_terraform_output_json(doc: dict) -> bool:
    return bool(doc) and all(isinstance(v, dict) and "value" in v and "type" in v for v in doc.values())


def read_outputs(path: str | Path, *, stack: str | None = None) -> dict[str, StackOutputs]:
    """Read an outputs file into ``{stack name: StackOutputs}``."""
    path = Path(path)
    doc = read_json_document(path, what="outputs file", fix=f"re-run `cdktf deploy --outputs-file {path}`",
                             missing=f"outputs file not found at {path}; run `cdktf deploy --outputs-file {path}` first")
    if not isinstance(doc, dict):
        raise ContractError(f"outputs file {path} is not a JSON object; re-run `cdktf deploy --outputs-file {path}`")
    if _is_terraform_output_json(doc):
        name = stack or path.stem
        return {name: StackOutputs(name, {k: v["value"] for k, v in doc.items()})}
    result = {}
    for name, values in doc.items():
        if not isinstance(values, dict):
            raise ContractError(f"outputs file {path}: stack {name!r} maps to {type(values).__name__}, expected an object of outputs")
        result[name] = StackOutputs(name, values)
    if stack is not None:
        if stack not in result:
            raise ContractError(f"outputs file {path} has no stack {stack!r} (it has: {', '.join(result) or 'none'})")
        return {stack: result[stack]}
    return result
