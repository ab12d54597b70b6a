"""`lepton init`: a new CDK for Terraform project of your own, using lepton-cdk's constructs."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class Cloud(StrEnum):
    """Clouds a new project can target."""

    aws = "aws"
    gcp = "gcp"


def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the project: a new or an empty one (nothing is ever overwritten).")],
    cloud: Annotated[Cloud, typer.Option("--cloud", help="The cloud the project deploys to.")] = Cloud.aws,
    python: Annotated[str | None, typer.Option(
        "--python", help="The Python command cdktf.json runs main.py with (e.g. python3 in an activated virtualenv). "
                         "Default: the Python running lepton.")] = None,
) -> None:
    """Scaffold your own CDK for Terraform project that uses lepton-cdk's constructs.

    Writes cdktf.json, main.py (the cloud's provider, a ModelBucket holding a
    model's artifacts and a GpuNodeGroup serving them, the policy checks),
    test_main.py (tests with lepton_cdk.testing), requirements.txt,
    requirements-dev.txt, a README and a .gitignore, the way `cdktf init`
    templates do. On AWS, LEPTON_PROFILE=local deploys the stack to moto; the
    README says how. DIRECTORY must be new or empty; on failure nothing is
    left behind.
    """
    from lepton_cdk.scaffold import write_project

    written = write_project(directory, cloud=cloud.value, python=python or sys.executable)
    typer.echo(f"wrote {directory} ({cloud.value.upper()} project): {', '.join(p.name for p in written)}")
    local = "; LEPTON_PROFILE=local cdktf deploy puts it on moto" if cloud is Cloud.aws else ""
    typer.echo(f"next: cd {directory}, pip install -r requirements-dev.txt, python -m pytest, then cdktf synth{local} (README.md)")
