"""A user's own CDKTF stack: lepton-cdk's MigrationTarget serving a model from a bucket that already exists.

The bucket (and its KMS key) belong to another team or stack, so they are
wrapped with ``ModelBucket.from_bucket_name`` (nothing about them is
declared or changed) and passed to the pattern, which uploads the
manifest's artifacts into it and builds GPU nodes, a private load balancer
and alarms around it. Settings come from the environment so the same file
serves the README walkthrough and the tests:

=========================  ==========================  ================================
variable                   default                     meaning
=========================  ==========================  ================================
EXAMPLE_MANIFEST           ../../build/demo/manifest.json   the model's manifest.json
EXAMPLE_BUCKET             acme-models                 the existing S3 bucket
EXAMPLE_KMS_KEY_ARN        (none)                      the key encrypting it, if SSE-KMS
EXAMPLE_ALERT_EMAIL        (none)                      subscribed to the alarm topic
EXAMPLE_AWS_REGION         us-east-1                   the provider's region
LEPTON_PROFILE             cloud                       local: deploy to moto instead
=========================  ==========================  ================================

``LEPTON_PROFILE=local`` deploys it to moto instead (at ``LEPTON_AWS_ENDPOINT``,
default ``http://127.0.0.1:5000``) with lepton_cdk.testing's emulator settings.

Run it with ``cdktf synth`` in this folder (see ``cdktf.json``) or
``python main.py``; ``cdktf deploy`` needs AWS credentials (or the local profile).
"""

import lepton_cdk  # noqa: F401  first: the provider import below then loads only the submodules in use (~1 s, not ~20 s)

# isort: split

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from cdktf import App, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider
from constructs import Construct

from lepton_cdk.aws import ModelBucket
from lepton_cdk.checks import PolicyChecks, PolicyError
from lepton_cdk.contract import ContractError
from lepton_cdk.core import ConstructValidationError
from lepton_cdk.patterns import MigrationTarget
from lepton_cdk.testing import AwsEmulator, ProfileError

HERE = Path(__file__).resolve().parent


class ExistingBucketStack(TerraformStack):
    """The provider, the existing bucket, a MigrationTarget on it, and its outputs."""

    def __init__(self, scope: Construct, id: str, *, manifest: str | os.PathLike[str], bucket_name: str,
                 kms_key_id: str | None = None, alert_emails: tuple[str, ...] = (), region: str = "us-east-1",
                 emulator: AwsEmulator | None = None) -> None:
        super().__init__(scope, id)
        if emulator is None:
            AwsProvider(self, "aws", region=region)
        else:
            emulator.provider(self)  # every endpoint on moto, no credential checks
        PolicyChecks.apply(self)  # lepton-cdk's policy rules; synth fails on an unsuppressed error

        models = ModelBucket.from_bucket_name(self, "ExistingModels", bucket_name, kms_key_id=kms_key_id)
        local = emulator is not None
        self.target = MigrationTarget(self, "Target", cloud="aws", manifest=manifest, bucket=models, alert_emails=alert_emails,
                                      image=emulator.image if emulator else None, retain_data=not local)
        # The nodes (and nothing else) are granted read on this model version's prefix of the bucket only.
        if local:
            PolicyChecks.suppress(self.target, "LEP-RETAIN-1", reason="local profile: the stack lives in moto, which forgets it")

        TerraformOutput(self, "model_uri", value=self.target.model_uri, description="s3:// URI of the uploaded model")
        TerraformOutput(self, "node_group_name", value=self.target.node_group_name, description="Name of the GPU auto scaling group")
        for name, (value, description) in self.target.outputs.items():
            TerraformOutput(self, name, value=value, description=description)


def build_app(outdir: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> App:
    """The app with one stack, ``existing-bucket``, configured from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    email = env.get("EXAMPLE_ALERT_EMAIL")
    region = env.get("EXAMPLE_AWS_REGION") or "us-east-1"
    emulator = AwsEmulator.from_env(env, region=region)  # None unless LEPTON_PROFILE=local; checked before anything is written
    app = App(outdir=str(outdir) if outdir is not None else None)
    ExistingBucketStack(
        app, "existing-bucket",
        manifest=env.get("EXAMPLE_MANIFEST") or HERE.parents[1] / "build" / "demo" / "manifest.json",
        bucket_name=env.get("EXAMPLE_BUCKET") or "acme-models",
        kms_key_id=env.get("EXAMPLE_KMS_KEY_ARN") or None,
        alert_emails=(email,) if email else (),
        region=region,
        emulator=emulator,
    )
    return app


def main() -> int:
    """Synthesize into ``$CDKTF_OUTDIR`` (set by ``cdktf synth``) or ``cdktf.out``; a known problem prints one line."""
    try:
        PolicyChecks.synth(build_app(os.environ.get("CDKTF_OUTDIR") or "cdktf.out"))
    except (ContractError, ConstructValidationError, PolicyError, ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
