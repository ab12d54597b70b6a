"""``lepton init``: a new CDK for Terraform project of your own that uses lepton-cdk's constructs.

Like a ``cdktf init`` template, the project is a handful of plain files you
own from then on:

==========================  ========================================================================
file                        what it is
==========================  ========================================================================
``cdktf.json``              the cdktf project file: ``app`` runs ``main.py`` with the Python that ran
                            ``lepton init`` (or ``python=``), so ``cdktf synth`` finds lepton-cdk
``main.py``                 the stack: the cloud's provider, a ``ModelBucket`` holding a model's
                            artifacts and a ``GpuNodeGroup`` serving them, their outputs, the policy
                            checks; on AWS the ``LEPTON_PROFILE=local`` profile deploys it to moto
``test_main.py``            tests of that stack with :mod:`lepton_cdk.testing` (``python -m pytest``)
``requirements.txt``        ``lepton-cdk[aws]`` or ``[gcp]``, as a range of compatible versions
``requirements-dev.txt``    pytest, and moto's server on AWS
``README.md``               how to set up, get a model, deploy locally (AWS) and for real, test
``.gitignore``              ``cdktf.out/``, state files, virtualenvs, caches
==========================  ========================================================================

Why ``ModelBucket`` + ``GpuNodeGroup`` rather than ``MigrationTarget``: a
project of your own starts from the building blocks, each line of ``main.py``
one resource group you can read in the plan and change (a bigger disk, your
own subnets), the way cdktf's templates start small. ``MigrationTarget``
adds serving behind a load balancer, alarms and a data transfer in one
construct; the project's README shows the one-line switch.

The folder must be new or empty, so nothing of yours is ever overwritten;
if writing fails half-way, what was written is removed again.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from importlib import resources
from pathlib import Path

from lepton_cdk import __version__

CLOUDS = ("aws", "gcp")
"""The clouds a project can target."""

# {written as: template} from templates/<cloud>/, else templates/common/. Templates end in .tmpl: they are the
# user's files, not lepton-cdk modules (nothing imports or lints them as such; examples/*-constructs hold the same
# main.py and test_main.py as real files, which the repo lints and tests). The dot of .gitignore is dropped in the
# package because packaging tools skip dotfiles.
_TEMPLATES = {"main.py": "main.py.tmpl", "test_main.py": "test_main.py.tmpl", "README.md": "README.md.tmpl",
              ".gitignore": "gitignore.tmpl"}


class ScaffoldError(ValueError):
    """The project cannot be written where asked; the message is one line naming the problem and the fix."""


def requirement(cloud: str, version: str = __version__) -> str:
    """The ``lepton-cdk`` requirement for ``cloud``: its extra, from this version up to the next minor (0.x) or major."""
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
    major, minor = (parts + [0, 0])[:2]
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"lepton-cdk[{cloud}]>={major}.{minor},<{upper}"


def _template(cloud: str, name: str) -> str | None:
    for folder in (cloud, "common"):
        entry = resources.files(__name__).joinpath("templates", folder, name)
        if entry.is_file():
            return entry.read_text(encoding="utf-8")
    return None


def project_files(cloud: str, *, name: str, python: str = sys.executable) -> dict[str, str]:
    """Every file of a new ``cloud`` project named ``name``: ``{relative path: content}``.

    :param cloud: ``"aws"`` or ``"gcp"``.
    :param name: the project's name (its README's title).
    :param python: the Python command ``cdktf.json`` runs ``main.py`` with. Default: the running one.
    """
    if cloud not in CLOUDS:
        raise ScaffoldError(f"cloud {cloud!r} is not one lepton-cdk targets: use {' or '.join(CLOUDS)}")
    files: dict[str, str] = {}
    for written_as, template in _TEMPLATES.items():
        text = _template(cloud, template)
        if text is None:
            raise ScaffoldError(f"the {cloud} project template lacks {template}: reinstall lepton-cdk")
        files[written_as] = text.replace("{{ name }}", name).replace("{{ requirement }}", requirement(cloud))
    files["cdktf.json"] = json.dumps({
        "language": "python",
        "app": f"{shlex.quote(python)} main.py",
        "output": "cdktf.out",
        "sendCrashReports": "false",
        "terraformProviders": [],  # prebuilt: the provider comes with lepton-cdk[<cloud>], not `cdktf get`
        "terraformModules": [],
        "context": {},
    }, indent=2) + "\n"
    files["requirements.txt"] = requirement(cloud) + "\n"
    dev = ["-r requirements.txt", "pytest>=8"] + (["moto[server]>=5.0"] if cloud == "aws" else [])
    files["requirements-dev.txt"] = "\n".join(dev) + "\n"
    return dict(sorted(files.items()))


def write_project(directory: str | os.PathLike[str], *, cloud: str = "aws", python: str = sys.executable) -> list[Path]:
    """Write a new ``cloud`` project into ``directory`` (created if missing; it must be empty); returns the files written.

    Nothing is left behind on failure: files and folders this call created
    are removed again before the error is raised.

    :raises ScaffoldError: ``directory`` is a file or not empty, ``cloud`` is
        unknown, or a file cannot be written.
    """
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} is a file: pass a new or empty folder for the project")
    if target.is_dir():
        entries = sorted(p.name for p in target.iterdir())
        if entries:
            raise ScaffoldError(f"{target} is not empty ({len(entries)} entries, e.g. {entries[0]!r}): lepton init writes only into a "
                                "new or empty folder, so nothing of yours is overwritten; pass another folder")
    name = target.resolve().name or "lepton-project"
    files = project_files(cloud, name=name, python=python)

    created_dirs: list[Path] = []
    written: list[Path] = []
    try:
        missing = [p for p in (target, *target.parents) if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir()
            created_dirs.append(folder)
        for rel, content in files.items():
            path = target / rel
            with open(path, "x", encoding="utf-8") as out:  # "x": never replace a file that appeared meanwhile
                written.append(path)
                out.write(content)
    except BaseException as exc:
        for path in reversed(written):
            path.unlink(missing_ok=True)
        for folder in reversed(created_dirs):
            try:
                folder.rmdir()
            except OSError:
                pass
        if isinstance(exc, OSError):
            where = exc.filename or target
            raise ScaffoldError(f"cannot write the project into {target}: {where}: {exc.strerror or exc}; nothing was left behind") from None
        raise
    return written
