"""Your CDK for Terraform app: a model's artifacts in an encrypted S3 bucket, and private GPU nodes that serve them.

Written by ``lepton init --cloud aws``; it is yours to change. ``cdktf synth``
(or ``cdktf deploy``) runs it through ``cdktf.json``; ``python main.py``
synthesizes into ``cdktf.out/`` as well.

Settings, from the environment:

- ``LEPTON_MANIFEST``: the model to deploy (its ``manifest.json``, or the
  folder holding it). Default: ``model/manifest.json`` beside this file.
- ``LEPTON_PROFILE``: ``cloud`` (the default) deploys to the AWS account
  your credentials name; ``local`` deploys to moto at
  ``LEPTON_AWS_ENDPOINT`` (default ``http://127.0.0.1:5000``) with
  lepton_cdk.testing's emulator settings, and lets ``cdktf destroy`` delete
  the bucket.

A missing manifest, a tampered artifact, a bad prop or a policy finding
prints one ``error: ...`` line and exits 1.
"""

import lepton_cdk  # noqa: F401  first: the provider imports below then load only the submodules in use (~1 s, not ~20 s)

# isort: split

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from cdktf import App, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider
from constructs import Construct

from lepton_cdk.aws import GpuNodeGroup, ModelBucket
from lepton_cdk.checks import PolicyChecks, PolicyError
from lepton_cdk.contract import ContractError
from lepton_cdk.core import ConstructValidationError
from lepton_cdk.testing import AwsEmulator, ProfileError

REGION = "us-east-1"
STACK = "models"
HERE = Path(__file__).resolve().parent
LOCAL_RETAIN_REASON = "local profile: the stack lives in moto, which forgets it; destroy must be able to delete the bucket"


class ModelStack(TerraformStack):
    """The AWS provider, a ModelBucket holding the manifest's artifacts, GPU nodes that serve them, and outputs."""

    def __init__(self, scope: Construct, id: str, *, manifest: str | os.PathLike[str], emulator: AwsEmulator | None = None) -> None:
        super().__init__(scope, id)
        PolicyChecks.apply(self)  # lepton-cdk's policy rules; synth fails on an unsuppressed error
        if emulator is None:
            AwsProvider(self, "aws", region=REGION)  # credentials: environment, profile or instance role
            bucket = ModelBucket(self, "ModelBucket")  # KMS-encrypted, versioned, private, TLS-only, retained on destroy
            image = None  # the Deep Learning AMI, looked up at plan time
        else:
            emulator.provider(self)  # every endpoint on moto, no credential checks
            bucket = ModelBucket(self, "ModelBucket", enforce_tls=emulator.enforce_tls, retain_on_destroy=False)
            emulator.suppress_tls_policy(bucket)  # plain-HTTP moto: no TLS-only policy, and the reason why
            PolicyChecks.suppress(bucket, "LEP-RETAIN-1", reason=LOCAL_RETAIN_REASON)
            image = emulator.image  # an AMI moto knows
        artifacts = bucket.upload_artifacts(manifest)  # re-hashed against the manifest, then models/<name>/<version>/...
        nodes = GpuNodeGroup(self, "GpuNodes", model=artifacts, image=image)  # private; may read only that prefix

        TerraformOutput(self, "bucket_name", value=bucket.bucket_name, description="The S3 bucket holding the model artifacts")
        TerraformOutput(self, "model_uri", value=artifacts.model_uri, description="s3:// URI of the primary model artifact")
        TerraformOutput(self, "node_group_name", value=nodes.node_group_name, description="The GPU auto scaling group")


def build_app(outdir: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> App:
    """The app with one stack, configured from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    emulator = AwsEmulator.from_env(env, region=REGION)  # None unless LEPTON_PROFILE=local
    manifest = Path(env.get("LEPTON_MANIFEST") or HERE / "model" / "manifest.json")
    if not manifest.exists():
        raise ContractError(f"no model manifest at {manifest}: set LEPTON_MANIFEST to your model's manifest.json (see README.md)")
    app = App(outdir=str(outdir)) if outdir is not None else App()  # cdktf synth passes CDKTF_OUTDIR
    ModelStack(app, STACK, manifest=manifest, emulator=emulator)
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
