"""The cdktf app: read the config and the manifest, build one stack per target, synthesize.

``cdktf synth`` / ``deploy`` run it as ``.venv/bin/python -m infra`` (see
``cdktf.json``); it writes to ``$CDKTF_OUTDIR`` when the CLI sets it, else
``cdktf.out``. Known problems (a bad ``LEPTON_*`` value, a missing or
tampered manifest, invalid construct props, an unsuppressed policy error
found by :class:`lepton_cdk.checks.PolicyChecks`) print one ``error: ...``
line and exit with status 1, without a traceback (set ``LEPTON_DEBUG=1`` for
one). The policy report is written to the output folder either way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lepton_cdk.checks import PolicyError
from lepton_cdk.contract import ContractError, read_manifest
from lepton_cdk.core.errors import ConstructValidationError
from lepton_cdk.extras import MissingExtraError, require_extra

from .config import ConfigError, InfraConfig

if TYPE_CHECKING:
    from lepton_cdk.core.framework import App


def build_app(config: InfraConfig, outdir: str | os.PathLike[str] | None = None) -> App:
    """Build the app for ``config`` (the manifest is read and every artifact re-hashed first).

    Returns the cdktf ``App``; call ``.synth()`` to write ``outdir``.
    """
    manifest = read_manifest(config.manifest_path, verify=True)
    for target in config.targets:  # one line naming the missing extra, before jsii starts
        require_extra(f"the {target} stack", target)

    from lepton_cdk.core.framework import App  # jsii starts here, after the cheap checks passed

    app = App(outdir=str(outdir) if outdir is not None else None)
    for target in config.targets:
        if target == "aws":
            from .stacks.aws import AwsTargetStack

            AwsTargetStack(app, config.stack_name("aws"), config=config, manifest=manifest)
        else:
            from .stacks.gcp import GcpTargetStack

            GcpTargetStack(app, config.stack_name("gcp"), config=config, manifest=manifest)
    return app


def main(argv: list[str] | None = None) -> int:
    """Synthesize from the environment; returns the exit status."""
    del argv  # configured by LEPTON_* variables, as cdktf runs the app without arguments
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    outdir = os.environ.get("CDKTF_OUTDIR") or "cdktf.out"
    try:
        config = InfraConfig.from_env()
        app = build_app(config, Path(outdir))
        from lepton_cdk.checks.aspect import PolicyChecks

        PolicyChecks.synth(app)  # app.synth(); an unsuppressed policy error raises PolicyViolationError (one line)
    except (ConfigError, ContractError, ConstructValidationError, PolicyError, MissingExtraError) as exc:
        if os.environ.get("LEPTON_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
