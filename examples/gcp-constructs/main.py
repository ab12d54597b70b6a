"""Your CDK for Terraform app: a model's artifacts in a CMEK-encrypted Cloud Storage bucket, and private GPU nodes that serve them.

Written by ``lepton init --cloud gcp``; it is yours to change. ``cdktf synth``
(or ``cdktf deploy``) runs it through ``cdktf.json``; ``python main.py``
synthesizes into ``cdktf.out/`` as well.

Settings, from the environment:

- ``LEPTON_MANIFEST``: the model to deploy (its ``manifest.json``, or the
  folder holding it). Default: ``model/manifest.json`` beside this file.
- ``LEPTON_PROFILE``: ``cloud`` (the default) deploys to your project.
  ``local`` is refused: Compute Engine has no local emulator, so there is
  nothing local to deploy to (``cdktf synth`` checks the stack offline).

A missing manifest, a tampered artifact, a bad prop or a policy finding
prints one ``error: ...`` line and exits 1.
"""

import lepton_cdk  # noqa: F401  first: the provider imports below then load only the submodules in use (~1 s, not ~16 s)

# isort: split

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from cdktf import App, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_google.provider import GoogleProvider
from constructs import Construct

from lepton_cdk.checks import PolicyChecks, PolicyError
from lepton_cdk.contract import ContractError
from lepton_cdk.core import ConstructValidationError
from lepton_cdk.gcp import GpuNodeGroup, ModelBucket
from lepton_cdk.testing import ProfileError, profile_from_env

PROJECT: str | None = None  # your project id; None: the provider's default (GOOGLE_PROJECT, or gcloud's configured project)
REGION = "us-central1"
STACK = "models"
HERE = Path(__file__).resolve().parent


class ModelStack(TerraformStack):
    """The Google provider, a ModelBucket holding the manifest's artifacts, GPU nodes that serve them, and outputs."""

    def __init__(self, scope: Construct, id: str, *, manifest: str | os.PathLike[str]) -> None:
        super().__init__(scope, id)
        PolicyChecks.apply(self)  # lepton-cdk's policy rules; synth fails on an unsuppressed error
        GoogleProvider(self, "google", project=PROJECT, region=REGION)  # credentials: Application Default Credentials
        bucket = ModelBucket(self, "ModelBucket")  # CMEK-encrypted, versioned, private, retained on destroy
        artifacts = bucket.upload_artifacts(manifest)  # re-hashed against the manifest, then models/<name>/<version>/...
        nodes = GpuNodeGroup(self, "GpuNodes", model=artifacts)  # one L4, no external IP; may read only that prefix

        TerraformOutput(self, "bucket_name", value=bucket.bucket_name, description="The Cloud Storage bucket holding the model artifacts")
        TerraformOutput(self, "model_uri", value=artifacts.model_uri, description="gs:// URI of the primary model artifact")
        TerraformOutput(self, "node_group_name", value=nodes.node_group_name, description="The GPU managed instance group")


def build_app(outdir: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> App:
    """The app with one stack, configured from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    if profile_from_env(env) == "local":
        raise ProfileError("LEPTON_PROFILE=local: Compute Engine has no local emulator, so nothing can be deployed locally; "
                           "run `cdktf synth` to check the stack offline, or unset LEPTON_PROFILE to deploy to your project")
    manifest = Path(env.get("LEPTON_MANIFEST") or HERE / "model" / "manifest.json")
    if not manifest.exists():
        raise ContractError(f"no model manifest at {manifest}: set LEPTON_MANIFEST to your model's manifest.json (see README.md)")
    app = App(outdir=str(outdir)) if outdir is not None else App()  # cdktf synth passes CDKTF_OUTDIR
    ModelStack(app, STACK, manifest=manifest)
    return app


def main() -> int:
    """Synthesize; a known problem prints one line and returns 1."""
    try:
        PolicyChecks.synth(build_app())
    except (ContractError, ConstructValidationError, PolicyError, ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
