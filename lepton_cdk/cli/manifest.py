"""`lepton manifest ...`: inspect and verify model manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Inspect and verify model manifests.", no_args_is_help=True)


@app.command("verify")
def manifest_verify(
    path: Annotated[Path, typer.Argument(help="manifest.json, or the folder holding it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Validate a manifest against its schema and re-hash every artifact it lists."""
    from lepton_cdk.contract import read_manifest

    manifest = read_manifest(path, verify=True)
    result = {
        "manifest": str(manifest.base_dir),
        "model": f"{manifest.model_name}:{manifest.model_version}",
        "schema_version": manifest.schema_version,
        "artifacts_verified": [a.name for a in manifest.artifacts],
        "parity_passed": manifest.parity.passed,
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo(f"ok: {result['model']} (schema {manifest.schema_version}), "
                   f"{len(manifest.artifacts)} artifacts match their sha256/crc32c")
