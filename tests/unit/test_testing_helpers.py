"""lepton_cdk.testing, the helpers users test their own stacks with (and the project's tests use): the emulator
settings, the profile, the synth helpers, the placeholder manifest, the emulator starters and the Terraform runner.

The starters run real servers, so those tests are marked ``integration``; the rest synthesize in-process.
"""

from __future__ import annotations

import ast
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_cdk.checks import PolicyChecks
from lepton_cdk.contract import read_manifest
from lepton_cdk.core import framework
from lepton_cdk.core.framework import Annotations, TerraformStack, aws
from lepton_cdk.testing import (
    AWS_SERVICES,
    DEFAULT_MOTO_URL,
    MOTO_IMAGE,
    AwsEmulator,
    EmulatorError,
    ProfileError,
    SynthError,
    Terraform,
    TerraformError,
    at,
    boto3_client,
    only,
    resources,
    start_gcs_emulator,
    start_moto,
    synth,
    synth_stack,
    write_test_manifest,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MOTO = "http://127.0.0.1:5999"

# Which AWS service (the provider's endpoint name) each provider submodule the constructs use calls.
SERVICE_OF_SUBMODULE = {
    "s3_": "s3", "kms_": "kms", "iam_": "iam", "autoscaling_": "autoscaling", "ssm_": "ssm", "data_aws_ssm_": "ssm",
    "launch_template": "ec2", "vpc": "ec2", "subnet": "ec2", "route_table": "ec2", "security_group": "ec2", "default_security_group": "ec2",
    "data_aws_availability_zones": "ec2", "data_aws_region": "ec2", "data_aws_vpc": "ec2", "data_aws_subnet": "ec2",
    "lb": "elbv2", "cloudwatch_metric_alarm": "cloudwatch", "cloudwatch_event_": "events", "cloudwatch_log_": "logs",
    "sns_": "sns", "sagemaker_": "sagemaker", "data_aws_sagemaker_": "sagemaker", "data_aws_caller_identity": "sts",
    "data_aws_partition": "sts", "datasync_": "datasync", "secretsmanager_": "secretsmanager", "data_aws_secretsmanager_": "secretsmanager",
    "route53_": "route53", "data_aws_route53_": "route53",
}


def _service_of(submodule: str) -> str | None:
    # "vpc" covers vpc, vpc_endpoint ...; "s3_" covers s3_bucket ...; the longest match wins (data_aws_ssm_ over ...)
    matches = [p for p in SERVICE_OF_SUBMODULE if submodule == p.rstrip("_") or submodule.startswith(p if p.endswith("_") else p + "_")]
    return SERVICE_OF_SUBMODULE[max(matches, key=len)] if matches else None


def test_the_moto_provider_reaches_every_service_the_aws_constructs_call():
    """A service missing from AWS_SERVICES would go to real AWS from an emulator stack (a bare 403 with dummy keys)."""
    import cdktf_cdktf_provider_aws

    submodules = set(cdktf_cdktf_provider_aws.__all__) - {"provider"}
    used: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / "lepton_cdk").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            # aws.<submodule> on the provider bindings (lepton_cdk.core.framework.aws)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "aws" and node.attr in submodules:
                used.setdefault(node.attr, set()).add(path.relative_to(REPO_ROOT).as_posix())
    assert len(used) > 20, f"found only {sorted(used)}: the scan no longer sees the constructs' provider calls"
    unknown = sorted(s for s in used if _service_of(s) is None)
    assert unknown == [], f"map these provider submodules to their AWS service here, then check AWS_SERVICES: {unknown}"
    missing = {s: sorted(used[s]) for s in used if _service_of(s) not in AWS_SERVICES}
    assert missing == {}, f"lepton_cdk.testing.AWS_SERVICES lacks the services of {missing}"


def test_importing_the_helpers_starts_neither_cdktf_nor_pytest():
    code = ("import sys, lepton_cdk.testing; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'cdktf', 'jsii', 'constructs', 'pytest', 'boto3', 'botocore', 'torch'}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]", "users' unittest suites must not need pytest, and the profile check must not start jsii"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_test_manifest(tmp_path_factory.mktemp("model"), name="tiny", version="3.1.0")


def _emulator_stack(stack, emulator: AwsEmulator, manifest: Path):
    from lepton_cdk.aws import GpuNodeGroup, ModelBucket

    PolicyChecks.apply(stack)
    bucket = ModelBucket(stack, "ModelBucket", enforce_tls=emulator.enforce_tls, retain_on_destroy=False)
    emulator.suppress_tls_policy(bucket)
    PolicyChecks.suppress(bucket, "LEP-RETAIN-1", reason="a test stack")
    GpuNodeGroup(stack, "GpuNodes", model=bucket.upload_artifacts(manifest), image=emulator.image)
    return bucket


def test_the_emulator_provider_has_every_setting_moto_needs_and_no_credentials(manifest):
    emulator = AwsEmulator(MOTO + "/", region="eu-west-1")
    doc, _ = synth_stack(lambda s: _emulator_stack(s, emulator, manifest), provider=emulator.provider)

    (provider,) = doc["provider"]["aws"]
    assert provider["endpoints"] == [dict.fromkeys(AWS_SERVICES, MOTO)], "the trailing / must go: the provider appends paths"
    assert provider["region"] == "eu-west-1"
    assert provider["s3_use_path_style"] is True and provider["max_retries"] == 4
    assert provider["skip_credentials_validation"] is True and provider["skip_region_validation"] is True
    assert provider["skip_metadata_api_check"] == "true"
    # with these the re-plan after apply drifts against moto (see aws_emulator's docstring)
    assert "skip_requesting_account_id" not in provider and "default_tags" not in provider
    assert not set(provider) & {"access_key", "secret_key", "token", "profile", "shared_credentials_files", "assume_role"}
    # the AMI moto knows, so no SSM lookup of the Deep Learning AMI
    assert only(doc, "aws_launch_template")["image_id"] == MOTO_IMAGE
    assert "aws_ssm_parameter" not in doc.get("data", {})
    # plain HTTP: no TLS-only policy on the model bucket (the log bucket keeps its log-delivery grant)
    assert [name for name in resources(doc, "aws_s3_bucket_policy") if not name.startswith("ModelBucket_AccessLogs_")] == []


def test_plain_http_suppresses_the_tls_rule_with_its_reason_and_https_keeps_the_policy(manifest, tmp_path):
    plain, secure = AwsEmulator(MOTO), AwsEmulator("https://localhost:4566")
    assert (plain.enforce_tls, secure.enforce_tls) == (False, True)

    app = framework.Testing.app()
    stack = TerraformStack(app, "plain")
    plain.provider(stack)
    _emulator_stack(stack, plain, manifest)
    findings = [f for f in PolicyChecks.synth(app) if f.rule == "LEP-S3-1"]
    assert findings and all(f.suppressed and MOTO in f.reason and "plain-HTTP" in f.reason for f in findings), findings

    doc, _ = synth_stack(lambda s: _emulator_stack(s, secure, manifest), provider=secure.provider)
    statements = json.loads(at(doc, "aws_s3_bucket_policy", "ModelBucket/Policy")["policy"])["Statement"]
    assert statements[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, None),
    ({"LEPTON_PROFILE": "cloud"}, None),
    ({"LEPTON_PROFILE": " Local "}, DEFAULT_MOTO_URL),
    ({"LEPTON_PROFILE": "local", "LEPTON_AWS_ENDPOINT": "http://10.0.0.5:4566/"}, "http://10.0.0.5:4566"),
    ({"LEPTON_AWS_ENDPOINT": "http://10.0.0.5:4566"}, None),  # the endpoint alone does not leave the real cloud's profile
])
def test_the_profile_selects_the_emulator(environ, expected):
    emulator = AwsEmulator.from_env(environ, region="us-west-2")
    assert (emulator.endpoint if emulator else None) == expected
    assert emulator is None or emulator.region == "us-west-2"


@pytest.mark.parametrize(("environ", "named"), [
    ({"LEPTON_PROFILE": "locale"}, "LEPTON_PROFILE='locale'"),
    ({"LEPTON_PROFILE": "local", "LEPTON_AWS_ENDPOINT": "127.0.0.1:5000"}, "LEPTON_AWS_ENDPOINT='127.0.0.1:5000'"),
    ({"LEPTON_PROFILE": "local", "LEPTON_AWS_ENDPOINT": "http://127.0.0.1:5000/s3"}, "LEPTON_AWS_ENDPOINT="),
])
def test_a_bad_profile_setting_is_one_line_naming_the_variable_and_the_fix(environ, named):
    with pytest.raises(ProfileError) as caught:
        AwsEmulator.from_env(environ)
    message = str(caught.value)
    assert named in message and "use " in message and "\n" not in message


def test_synth_runs_validations_so_an_error_annotation_fails():
    """cdktf's plain Testing.synth passes a stack with error annotations; the helpers must not."""
    def build(stack):
        aws.s3_bucket.S3Bucket(stack, "Bucket")
        Annotations.of(stack).add_error("a construct found a problem")

    with pytest.raises(SynthError, match=r"^1 error annotation\(s\), which cdktf synth refuses: \[test\] a construct found a problem$"):
        synth_stack(build, provider=lambda s: aws.provider.AwsProvider(s, "aws", region="us-east-1"))


def test_lookups_find_resources_by_type_properties_and_construct_path():
    def build(stack):
        for name, versioned in (("Logs", False), ("Models", True)):
            bucket = aws.s3_bucket.S3Bucket(stack, name, bucket_prefix=name.lower())
            aws.s3_bucket_versioning.S3BucketVersioningA(
                stack, f"{name}Versioning", bucket=bucket.id,
                versioning_configuration=aws.s3_bucket_versioning.S3BucketVersioningVersioningConfiguration(
                    status="Enabled" if versioned else "Suspended"))

    doc, _ = synth_stack(build, provider=lambda s: aws.provider.AwsProvider(s, "aws", region="us-east-1"))
    assert len(resources(doc, "aws_s3_bucket")) == 2 and resources(doc, "aws_sqs_queue") == {}
    enabled = resources(doc, "aws_s3_bucket_versioning", {"versioning_configuration": {"status": "Enabled"}})
    assert list(enabled) == [n for n in resources(doc, "aws_s3_bucket_versioning") if n.startswith("ModelsVersioning")]
    assert at(doc, "aws_s3_bucket", "Models")["bucket_prefix"] == "models"
    with pytest.raises(AssertionError, match="expected exactly one aws_s3_bucket, found"):
        only(doc, "aws_s3_bucket")
    with pytest.raises(AssertionError, match="expected one aws_s3_bucket at Nowhere"):
        at(doc, "aws_s3_bucket", "Nowhere")
    assert "resource" not in synth(TerraformStack(framework.Testing.app(), "empty"))


def test_the_test_manifest_is_valid_and_the_same_every_time(tmp_path):
    first = read_manifest(write_test_manifest(tmp_path / "a"))  # read_manifest re-hashes every artifact
    second = read_manifest(write_test_manifest(tmp_path / "b"))
    assert [a.sha256 for a in first.artifacts] == [a.sha256 for a in second.artifacts]
    assert first.model_artifact.path == "model.onnx" and len(first.artifacts) == 2


def test_starting_moto_without_its_server_package_is_one_line_with_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flask" else real(name, *a))
    with pytest.raises(EmulatorError, match=r"^start_moto needs flask: pip install 'moto\[server\]'$"):
        start_moto()


def test_a_failing_terraform_command_raises_with_terraforms_own_output(tmp_path):
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH")
    tf = Terraform(tmp_path, {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "CHECKPOINT_DISABLE": "1"})
    with pytest.raises(TerraformError, match=r"terraform no-such-command exited 1 \(expected \[0\]\)") as caught:
        tf("no-such-command")
    assert "no-such-command" in str(caught.value).split("\n", 1)[1], "Terraform's own words must follow the first line"
    assert tf("version", "-json").returncode == 0 and "apply" not in tf.timings


def _listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


@pytest.mark.integration
def test_moto_starts_on_loopback_resets_and_is_gone_after_the_block():
    with start_moto() as moto:
        assert moto.url.startswith("http://127.0.0.1:") and _listening(moto.url)
        s3 = boto3_client("s3", moto.url)
        s3.create_bucket(Bucket="kept-until-reset")
        moto.reset()
        assert s3.list_buckets()["Buckets"] == []
        assert moto.emulator().endpoint == moto.url
        log = moto.log
    assert moto.proc.poll() is not None and not _listening(moto.url)
    assert not log.exists(), "the temporary log of a server that started fine is removed with it"


@pytest.mark.integration
def test_the_gcs_emulator_starts_serves_the_json_api_and_stops(tmp_path):
    import urllib.request

    with start_gcs_emulator(log=tmp_path / "gcs.log") as gcs:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{gcs.url}/storage/v1/b?project=test", timeout=5) as r:
            assert json.loads(r.read())["kind"] == "storage#buckets"
    assert gcs.proc.poll() is not None and (tmp_path / "gcs.log").exists(), "a log the caller named is kept"
