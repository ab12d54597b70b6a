"""The AWS examples for real against moto, the way their READMEs say: the project `lepton init --cloud aws` writes
(whose main.py is examples/aws-constructs/main.py, byte for byte) and examples/existing-bucket (the MigrationTarget
pattern), each with ``LEPTON_PROFILE=local``: synthesize with the app command of its cdktf.json, then Terraform
init, validate, apply, re-plan (no drift but moto's one known gap), check what moto holds, destroy.

The two deployments run side by side against one moto server: most of each apply is Terraform waiting on moto
(the provider polls ~55 s for a bucket's lifecycle rules and ~60 s for a load balancer), not CPU, so together
they take about as long as the slower one alone.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lepton_cdk.contract import read_manifest
from lepton_cdk.testing import MOTO_IMAGE, AwsEmulator, Terraform, planned_changes, write_test_manifest
from tests.support.hostile import run_lepton
from tests.support.terraform import REPO_ROOT, tool_env

pytestmark = pytest.mark.integration

# moto's DescribeSecurityGroupRules drops the description of a rule that references a security group or a prefix list
# (tests/integration/test_aws_apply.py names the same gap), so the re-plan wants to set it again on exactly these rules.
SCAFFOLD_DRIFT = {
    "aws_vpc_security_group_egress_rule.GpuNodes_SecurityGroupEgress_9EC3D488": (("update",), ("description",)),
}
PATTERN_DRIFT = {
    "aws_vpc_security_group_egress_rule.Target_GpuNodes_SecurityGroupEgress_302613DB": (("update",), ("description",)),
    "aws_vpc_security_group_egress_rule.Target_Serving_SecurityGroupEgress-0_9CD164BD": (("update",), ("description",)),
    "aws_vpc_security_group_ingress_rule.Target_Serving_NodeIngress-0_480EDE4F": (("update",), ("description",)),
}
EXISTING_BUCKET = "acme-models"


def _synth(app_command: list[str], cwd: Path, outdir: Path, env: dict[str, str]) -> Path:
    """Run a cdktf app command (what ``cdktf synth`` runs) into ``outdir``; returns ``outdir``."""
    proc = subprocess.run(app_command, cwd=cwd, env=tool_env({**env, "CDKTF_OUTDIR": str(outdir)}), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, f"{shlex.join(app_command)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return outdir


def _deploy(stack_dir: Path, emulator: AwsEmulator, tf_cli_config: Path, drift: dict) -> tuple[Terraform, dict]:
    """init, validate, apply, re-plan (only ``drift`` allowed); returns (the runner, the outputs)."""
    tf = Terraform(stack_dir, tool_env({**emulator.env(), "TF_CLI_CONFIG_FILE": str(tf_cli_config)}))
    tf("init", "-input=false", "-no-color")
    tf("validate", "-no-color")
    tf("apply", "-auto-approve", "-input=false", "-no-color")
    plan = tf("plan", "-detailed-exitcode", "-input=false", "-no-color", "-out=replan.bin", ok_codes=(0, 2))
    assert planned_changes(tf, "replan.bin") == drift, f"{stack_dir.name}: a re-plan right after apply wants changes:\n{plan.stdout[-4000:]}"
    outputs = {name: o["value"] for name, o in json.loads(tf("output", "-json").stdout).items()}
    return tf, outputs


def _assert_artifacts_uploaded(s3, uri: str, manifest_path: Path) -> tuple[str, str]:
    """Every artifact of the manifest is in the bucket under the model URI's folder, byte for byte; returns (bucket, prefix)."""
    manifest = read_manifest(manifest_path)
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    prefix = key.removesuffix(manifest.model_artifact.path)
    assert prefix == f"models/{manifest.model_name}/{manifest.model_version}/"
    for art in manifest.artifacts:
        body = s3.get_object(Bucket=bucket, Key=prefix + art.path)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == art.sha256, f"{art.path} in the bucket does not match the manifest"
    return bucket, prefix


def _launch_template_image(emulator: AwsEmulator, group_name: str) -> str:
    (group,) = emulator.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])["AutoScalingGroups"]
    template = group["LaunchTemplate"]["LaunchTemplateId"]
    (version,) = emulator.client("ec2").describe_launch_template_versions(LaunchTemplateId=template, Versions=["$Latest"])[
        "LaunchTemplateVersions"]
    return version["LaunchTemplateData"]["ImageId"]


def init_the_scaffold(project: Path) -> Path:
    """`lepton init --cloud aws PROJECT` (in-process, before any thread starts: it swaps sys.stdout while it runs)."""
    outcome = run_lepton("init", "--cloud", "aws", str(project))
    assert outcome.code == 0, outcome.stderr
    assert (project / "main.py").read_bytes() == (REPO_ROOT / "examples" / "aws-constructs" / "main.py").read_bytes()
    return project


def deploy_the_scaffold(project: Path, emulator: AwsEmulator, tf_cli_config: Path) -> dict[str, float]:
    """The scaffold with a model at its default place and LEPTON_PROFILE=local: apply, check, destroy."""
    manifest = write_test_manifest(project / "model", name="scaffolded", version="1.2.3")  # where main.py looks by default

    app = shlex.split(json.loads((project / "cdktf.json").read_text())["app"])
    out = _synth(app, project, project / "cdktf.out", {"LEPTON_PROFILE": "local", "LEPTON_AWS_ENDPOINT": emulator.endpoint})
    assert "testing" not in (out / "stacks" / "models" / "cdk.tf.json").read_text(), "credentials leaked into the synthesized JSON"
    tf, outputs = _deploy(out / "stacks" / "models", emulator, tf_cli_config, SCAFFOLD_DRIFT)

    s3 = emulator.client("s3")
    bucket, _ = _assert_artifacts_uploaded(s3, outputs["model_uri"], manifest)
    assert bucket == outputs["bucket_name"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert _launch_template_image(emulator, outputs["node_group_name"]) == MOTO_IMAGE
    assert (project / "terraform.models.tfstate").is_file(), "the state belongs in the project folder, as with cdktf deploy"

    tf("destroy", "-auto-approve", "-input=false", "-no-color")
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]], "the local profile lets destroy delete the bucket"
    groups = emulator.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert outputs["node_group_name"] not in [g["AutoScalingGroupName"] for g in groups]
    return tf.timings


def deploy_the_pattern_example(root: Path, emulator: AwsEmulator, tf_cli_config: Path) -> dict[str, float]:
    """examples/existing-bucket on a bucket that already exists in moto: apply, check, destroy; the bucket stays."""
    s3 = emulator.client("s3")
    s3.create_bucket(Bucket=EXISTING_BUCKET)
    manifest = write_test_manifest(root / "model", name="pattern", version="2.0.0")
    # Run from a folder of the test's: the local backend's state lands in the working directory, not the checkout.
    work = root / "work"
    work.mkdir(parents=True)
    out = _synth([sys.executable, str(REPO_ROOT / "examples" / "existing-bucket" / "main.py")], work, root / "cdktf.out",
                 {"LEPTON_PROFILE": "local", "LEPTON_AWS_ENDPOINT": emulator.endpoint, "EXAMPLE_MANIFEST": str(manifest),
                  "EXAMPLE_BUCKET": EXISTING_BUCKET, "EXAMPLE_ALERT_EMAIL": "oncall@example.com"})
    tf, outputs = _deploy(out / "stacks" / "existing-bucket", emulator, tf_cli_config, PATTERN_DRIFT)

    bucket, prefix = _assert_artifacts_uploaded(s3, outputs["model_uri"], manifest)
    assert bucket == EXISTING_BUCKET
    (lb,) = [lb for lb in emulator.client("elbv2").describe_load_balancers()["LoadBalancers"]
             if outputs["serving_load_balancer_dns_name"] == lb["DNSName"]]
    assert lb["Scheme"] == "internal"
    assert _launch_template_image(emulator, outputs["node_group_name"]) == MOTO_IMAGE
    (subscription,) = emulator.client("sns").list_subscriptions_by_topic(TopicArn=outputs["alarm_topic_arn"])["Subscriptions"]
    assert subscription["Endpoint"] == "oncall@example.com"

    tf("destroy", "-auto-approve", "-input=false", "-no-color")
    assert EXISTING_BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]], "destroy must leave the existing bucket alone"
    assert s3.list_objects_v2(Bucket=EXISTING_BUCKET, Prefix=prefix)["KeyCount"] == 0, "what the stack uploaded goes with it"
    assert not [b for b in emulator.client("elbv2").describe_load_balancers()["LoadBalancers"] if b["DNSName"] == lb["DNSName"]]
    return tf.timings


def test_the_aws_examples_apply_replan_clean_and_destroy_on_moto(moto, tf_cli_config, tmp_path):
    emulator = AwsEmulator(moto)
    project = init_the_scaffold(tmp_path / "my-models")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {"scaffold (examples/aws-constructs)": pool.submit(deploy_the_scaffold, project, emulator, tf_cli_config),
                "examples/existing-bucket": pool.submit(deploy_the_pattern_example, tmp_path / "pattern", emulator, tf_cli_config)}
        failures = {name: run.exception() for name, run in runs.items() if run.exception() is not None}
    if len(failures) == 1:
        raise next(iter(failures.values()))
    assert not failures, "both deployments failed:\n" + "\n\n".join(f"{name}: {exc}" for name, exc in failures.items())
    for name, run in runs.items():
        print(f"\n{name} against moto, seconds: {json.dumps(run.result())}")
