"""The reference stacks against checkov's reviewed baseline, and the DataSync stack against ``terraform validate``.

Synthesizes the infra app (AWS and GCP MigrationTarget stacks, real-cloud
settings) with ``python -m infra`` twice: with the defaults, and with every
option on (``lepton-full-*``: alert e-mails, the SageMaker endpoint, spot
nodes, a DataSync copy from a gs:// source); the DataTransferJob stacks of
``tests/support/transfer_stacks.py``; and ``examples/existing-bucket``
(in-process, as tests/unit/test_examples.py does); then runs checkov
(``--framework terraform_json --skip-download``, one process for every
stack) and compares with ``tests/checkov-baseline.yaml``: no failure may be
outside the baseline and no baseline entry may be stale.

DataSync is not applied against moto: moto lacks DataSync's tag calls (the
AWS provider tags every DataSync location and task), so the AWS transfer
stack is checked by ``terraform validate`` with the real AWS provider
5.100.0 from the filesystem mirror, which checks every argument name, type
and enum value (verify_mode, transfer_mode, object_tags, log_level ...),
on top of the JSON assertions in tests/unit/test_constructs_transfer.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from lepton_cdk.checks.checkov_baseline import check_stacks
from lepton_cdk.review.policy import checkov_executable
from tests.support.manifests import write_fake_manifest
from tests.support.terraform import REPO_ROOT, Terraform, synth_infra, tool_env
from tests.support.transfer_stacks import AWS_STACK, GCP_STACK, synth_transfer_app

pytestmark = pytest.mark.integration

BASELINE = REPO_ROOT / "tests" / "checkov-baseline.yaml"


EXAMPLE_STACK = "existing-bucket"
FULL_OPTIONS = {
    "LEPTON_STACK_PREFIX": "lepton-full", "LEPTON_ALERT_EMAILS": "oncall@example.com", "LEPTON_MANAGED_ENDPOINT": "true",
    "LEPTON_SPOT": "true", "LEPTON_SOURCE_URI": "gs://acme-raw/tables/", "LEPTON_SOURCE_HMAC_SECRET": "lepton/gcs-hmac",
    "LEPTON_DATASYNC_AGENTS": "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0",
}


def _synth_example(outdir: Path, manifest: Path) -> Path:
    spec = importlib.util.spec_from_file_location("example_existing_bucket", REPO_ROOT / "examples" / "existing-bucket" / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_app(outdir, {"EXAMPLE_MANIFEST": str(manifest), "EXAMPLE_ALERT_EMAIL": "oncall@example.com",
                              "EXAMPLE_KMS_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-0b0a-0908-0706-050403020100"}).synth()
    return outdir


@pytest.fixture(scope="module")
def reference_outs(tmp_path_factory) -> dict[str, Path]:
    """{"infra": the infra app (both clouds), "full": the infra app with every option on, "transfer": the transfer
    stacks, "example": examples/existing-bucket}, each a cdktf.out folder.

    To put another stack under checkov, synthesize it into one more folder here and add its stack names to
    the test's expected list.
    """
    root = tmp_path_factory.mktemp("reference")
    manifest = write_fake_manifest(root / "model")
    base = {"LEPTON_MANIFEST": str(manifest), "LEPTON_TARGET": "all", "LEPTON_GCP_PROJECT": "lepton-demo",
            "LEPTON_STATE_DIR": str(root / "state")}
    synth_infra(root / "infra", base)
    synth_infra(root / "full", {**base, **FULL_OPTIONS})
    return {"infra": root / "infra", "full": root / "full", "transfer": synth_transfer_app(root / "transfer"),
            "example": _synth_example(root / "example", manifest)}


def test_reference_stacks_pass_checkov_except_the_reviewed_baseline(reference_outs):
    if checkov_executable() is None:
        pytest.fail("checkov is not installed; it is a dev dependency (pip install -e '.[dev]')")
    result = check_stacks(reference_outs.values(), BASELINE)
    print(f"\n{result.summary()}")
    for stack in result.stacks:
        failed = [f for f in result.failures if f.stack == stack]
        print(f"  {stack}: {len(failed)} failed, {len([f for f in failed if f not in result.unexpected])} of them baselined"
              f" ({', '.join(sorted({f.check_id for f in failed}))})")
    assert sorted(result.stacks) == sorted(["lepton-aws", "lepton-gcp", "lepton-full-aws", "lepton-full-gcp", AWS_STACK, GCP_STACK,
                                            EXAMPLE_STACK])
    assert result.passed > 100, result.summary()  # checkov really evaluated the stacks
    assert result.ok, result.summary()


def test_datasync_stack_passes_terraform_validate_with_the_real_aws_provider(reference_outs, tf_cli_config):
    stack_dir = reference_outs["transfer"] / "stacks" / AWS_STACK
    doc = json.loads((stack_dir / "cdk.tf.json").read_text())
    assert {"aws_datasync_task", "aws_datasync_location_object_storage", "aws_datasync_location_s3"} <= set(doc["resource"])
    tf = Terraform(stack_dir, tool_env({"TF_CLI_CONFIG_FILE": str(tf_cli_config)}))
    tf("init", "-input=false", "-no-color", "-backend=false")
    proc = tf("validate", "-json", "-no-color")
    report = json.loads(proc.stdout)
    assert report["valid"] is True and report["error_count"] == 0, report["diagnostics"]
    assert not [d for d in report["diagnostics"] if "datasync" in json.dumps(d).lower()], report["diagnostics"]
