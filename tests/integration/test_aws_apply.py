"""The AWS stack (a MigrationTarget) for real against moto: init, validate, apply, re-plan (no drift but
moto's one known gap), outputs, the uploaded model checked against the manifest, the bucket's guard
rails, lifecycle rules and access-log bucket, the nodes' permissions and boot script, the internal load
balancer the nodes are registered with, the alarms and their topic, destroy.

The stack is synthesized by ``python -m infra`` (what cdktf runs) from a real
pipeline run's manifest, with LEPTON_RETAIN_DATA=false so it can be destroyed.
tests/integration/test_aws_apply_serving.py covers what the reference app
does not build by default (the SageMaker endpoint and its alarms, the
transfer-failure rule).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lepton_cdk.contract import digest_bytes, read_manifest, read_outputs
from tests.support.emulators import MOTO_AMI_ID, aws_env, boto3_client
from tests.support.terraform import Terraform, planned_changes, synth_infra, tool_env

pytestmark = pytest.mark.integration

STACK = "lepton-aws"

# moto's DescribeSecurityGroupRules drops the description of a rule that references another security group or a
# prefix list (it keeps it beside the group, not the rule; rules with a CIDR keep theirs), so the re-plan wants to set
# it again on exactly these three rules (load balancer <-> nodes, nodes -> S3 endpoint); real AWS keeps it.
# Nothing else may change.
MOTO_DRIFT = {
    "aws_vpc_security_group_egress_rule.GpuNodes_SecurityGroupEgress_9EC3D488": (("update",), ("description",)),
    "aws_vpc_security_group_egress_rule.Serving_SecurityGroupEgress-0_C1029013": (("update",), ("description",)),
    "aws_vpc_security_group_ingress_rule.Serving_NodeIngress-0_AFA789EC": (("update",), ("description",)),
}

# Stands in for the AWS CLI on a node: `aws s3 cp [--only-show-errors] [--region R] s3://bucket/key dest`, served by moto.
FAKE_AWS_CLI = """#!{python}
import os, sys
import boto3
args = sys.argv[1:]
assert args[:2] == ["s3", "cp"], args
rest, positional, i = args[2:], [], 0
while i < len(rest):
    if rest[i] == "--region":
        i += 2
        continue
    if rest[i].startswith("--"):
        i += 1
        continue
    positional.append(rest[i])
    i += 1
src, dest = positional
bucket, key = src.removeprefix("s3://").split("/", 1)
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
try:
    s3.download_file(bucket, key, dest)
except Exception as exc:
    print(f"fake aws: {{exc}}", file=sys.stderr)
    sys.exit(1)
"""


def _run_boot_script(script: str, workdir: Path, endpoint: str) -> subprocess.CompletedProcess:
    """Run the node's user data with its model/state folders moved under ``workdir`` and the fake AWS CLI on PATH."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    cli = bin_dir / "aws"
    cli.write_text(FAKE_AWS_CLI.format(python=sys.executable))
    cli.chmod(cli.stat().st_mode | stat.S_IEXEC)
    relocated = re.sub(r"^MODEL_DIR=/opt/lepton/models/", f"MODEL_DIR={workdir}/models/", script, count=1, flags=re.M)
    relocated = re.sub(r"^STATE_DIR=/var/lib/lepton$", f"STATE_DIR={workdir}/state", relocated, count=1, flags=re.M)
    assert relocated.count(str(workdir)) == 2, "the boot script no longer sets MODEL_DIR / STATE_DIR on their own lines"
    (workdir / "boot.sh").write_text(relocated)
    env = {**os.environ, **aws_env(endpoint), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["bash", str(workdir / "boot.sh")], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_aws_stack_applies_replans_clean_serves_the_verified_model_and_destroys(pipeline_out, moto, tf_cli_config, tmp_path):
    manifest = read_manifest(pipeline_out / "manifest.json")
    timings: dict[str, float] = {}

    started = time.monotonic()
    synth_infra(tmp_path / "cdktf.out", {
        "LEPTON_MANIFEST": str(pipeline_out / "manifest.json"), "LEPTON_TARGET": "aws", "LEPTON_AWS_ENDPOINT": moto,
        "LEPTON_RETAIN_DATA": "false", "LEPTON_IMAGE_ID": MOTO_AMI_ID, "LEPTON_STATE_DIR": str(tmp_path / "state"),
        "LEPTON_ALERT_EMAILS": "oncall@example.com",
    })
    timings["synth"] = round(time.monotonic() - started, 1)
    stack_dir = tmp_path / "cdktf.out" / "stacks" / STACK
    synthesized = (stack_dir / "cdk.tf.json").read_text()
    assert "testing" not in synthesized, "credentials leaked into the synthesized JSON"

    tf = Terraform(stack_dir, tool_env({**aws_env(moto), "TF_CLI_CONFIG_FILE": str(tf_cli_config)}))
    tf("init", "-input=false", "-no-color")
    tf("validate", "-no-color")
    tf("apply", "-auto-approve", "-input=false", "-no-color")
    plan = tf("plan", "-detailed-exitcode", "-input=false", "-no-color", "-out=replan.bin", ok_codes=(0, 2))
    assert planned_changes(tf, "replan.bin") == MOTO_DRIFT, f"a re-plan right after apply wants changes (drift):\n{plan.stdout[-6000:]}"
    applied_types = sorted({k.split(".")[0] for k in tf("state", "list").stdout.split() if not k.startswith("data.")})

    (tmp_path / "outputs.json").write_text(tf("output", "-json").stdout)
    outputs = read_outputs(tmp_path / "outputs.json", stack=STACK)[STACK]
    bucket = outputs.get("bucket_name")
    prefix = f"models/{manifest.model_name}/{manifest.model_version}/"
    assert outputs.get("model_uri") == f"s3://{bucket}/{prefix}{manifest.model_artifact.path}"
    assert outputs.get("model_prefix_uri") == f"s3://{bucket}/{prefix}"
    assert outputs.get("model_sha256") == manifest.model_artifact.sha256
    assert outputs.get("bucket_arn") == f"arn:aws:s3:::{bucket}"
    assert outputs.get("kms_key_arn").startswith("arn:aws:kms:us-east-1:")
    assert (outputs.get("model_name"), outputs.get("model_version")) == (manifest.model_name, manifest.model_version)

    # -- every artifact in the bucket is the one the manifest describes ----------------------------------------------
    s3 = boto3_client("s3", moto)
    for art in manifest.artifacts:
        key = prefix + art.path
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == art.sha256, f"{key} in the bucket does not match the manifest"
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert head["Metadata"] == {"sha256": art.sha256, "crc32c": art.crc32c}
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == outputs.get("kms_key_arn")
        assert head["ChecksumSHA256"] == digest_bytes(body).sha256_base64
        assert head["ContentType"] == art.media_type

    # -- the bucket's guard rails exist in the emulator, not just in the JSON -----------------------------------------
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": outputs.get("kms_key_arn")}
    assert rule["BucketKeyEnabled"] is True
    kms = boto3_client("kms", moto)
    assert kms.get_key_rotation_status(KeyId=outputs.get("kms_key_arn"))["KeyRotationEnabled"] is True
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    access_logging = s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]
    assert access_logging["TargetPrefix"] == f"{bucket}/"
    log_bucket = access_logging["TargetBucket"]
    assert log_bucket.startswith("lepton-access-logs-")
    (log_rule,) = s3.get_bucket_encryption(Bucket=log_bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert log_rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}, "log delivery cannot use SSE-KMS"
    assert s3.get_bucket_versioning(Bucket=log_bucket)["Status"] == "Enabled"
    log_rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=log_bucket)["Rules"]}
    assert log_rules["expire-objects"]["Expiration"] == {"Days": 365}

    # -- the node role can read this model version's prefix and nothing else -----------------------------------------
    iam = boto3_client("iam", moto)
    role_name = outputs.get("node_role_arn").rsplit("/", 1)[1]
    assert iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"] == []
    (policy_name,) = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    by_action = {s["Action"]: s for s in document["Statement"]}
    assert set(by_action) == {"s3:GetObject", "kms:Decrypt"}
    assert by_action["s3:GetObject"]["Resource"] == f"arn:aws:s3:::{bucket}/{prefix}*"
    assert by_action["kms:Decrypt"]["Resource"] == outputs.get("kms_key_arn")
    assert by_action["kms:Decrypt"]["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    profiles = iam.list_instance_profiles_for_role(RoleName=role_name)["InstanceProfiles"]
    assert len(profiles) == 1

    # -- the GPU node group and its launch template -------------------------------------------------------------------
    autoscaling = boto3_client("autoscaling", moto)
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[outputs.get("node_group_name")])["AutoScalingGroups"]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (1, 1, 1)
    # registered with the load balancer, and replaced when its readiness check fails after the 900 s grace period
    assert (group["HealthCheckType"], group["HealthCheckGracePeriod"]) == ("ELB", 900)
    ec2 = boto3_client("ec2", moto)
    template_id = group["LaunchTemplate"]["LaunchTemplateId"]
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=["$Latest"])["LaunchTemplateVersions"]
    data = version["LaunchTemplateData"]
    assert data["InstanceType"] == "g5.xlarge" and data["ImageId"] == MOTO_AMI_ID
    assert data["MetadataOptions"]["HttpTokens"] == "required" and data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert data["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is False
    assert data["IamInstanceProfile"]["Arn"] == profiles[0]["Arn"]
    (group_id,) = data["NetworkInterfaces"][0]["Groups"]
    (security_group,) = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]

    # -- serving: an internal load balancer on the nodes' port 8000; the nodes admit the load balancer only ------------
    elb = boto3_client("elbv2", moto)
    (lb,) = elb.describe_load_balancers()["LoadBalancers"]
    assert lb["Scheme"] == "internal" and outputs.get("serving_load_balancer_dns_name") == lb["DNSName"]
    assert outputs.get("serving_endpoint_url") == f"http://{lb['DNSName']}"
    (tg,) = elb.describe_target_groups()["TargetGroups"]
    assert (tg["Port"], tg["HealthCheckPath"]) == (8000, "/v2/health/ready") and group["TargetGroupARNs"] == [tg["TargetGroupArn"]]
    (permission,) = security_group["IpPermissions"]
    assert permission["FromPort"] == permission["ToPort"] == 8000 and permission["IpRanges"] == []
    assert [p["GroupId"] for p in permission["UserIdGroupPairs"]] == lb["SecurityGroups"]

    # -- monitoring: node and serving alarms notify the encrypted topic the e-mail address is subscribed to -----------
    cloudwatch = boto3_client("cloudwatch", moto)
    alarms = {a["AlarmName"].split("-")[1]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert set(alarms) == {"NodesBelowDesired", "UnhealthyNodes", "ServingErrors", "ServingLatency"}
    topic_arn = outputs.get("alarm_topic_arn")
    assert all(a["AlarmActions"] == [topic_arn] and a["OKActions"] == [topic_arn] for a in alarms.values())
    sns = boto3_client("sns", moto)
    assert sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"]["KmsMasterKeyId"].startswith("arn:aws:kms:us-east-1:")
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "oncall@example.com")

    # -- the boot script, exactly as the node receives it, fetches and verifies the model from the bucket ------------
    script = base64.b64decode(data["UserData"]).decode()
    assert f"fetch 's3://{bucket}/{prefix}{manifest.model_artifact.path}' {manifest.model_artifact.path} {manifest.model_artifact.sha256}" in script
    assert "\\n" in script.split("printf '", 1)[1].split("'", 1)[0], "backslashes in the script did not survive Terraform"
    proc = _run_boot_script(script, tmp_path / "node-ok", moto)
    assert proc.returncode == 0, proc.stderr
    ready = (tmp_path / "node-ok" / "state" / "model-ready").read_text()
    assert f"sha256={manifest.model_artifact.sha256}" in ready
    model_file = tmp_path / "node-ok" / "models" / manifest.model_name / manifest.model_version / manifest.model_artifact.path
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == manifest.model_artifact.sha256

    s3.put_object(Bucket=bucket, Key=prefix + manifest.model_artifact.path, Body=b"a model someone swapped in")
    proc = _run_boot_script(script, tmp_path / "node-tampered", moto)
    assert proc.returncode == 1 and "refusing to start" in proc.stderr
    assert not (tmp_path / "node-tampered" / "state" / "model-ready").exists()

    # -- destroy: the emulator is left empty -------------------------------------------------------------------------
    tf("destroy", "-auto-approve", "-input=false", "-no-color")
    remaining = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert bucket not in remaining and log_bucket not in remaining
    assert autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert elb.describe_load_balancers()["LoadBalancers"] == [] and cloudwatch.describe_alarms()["MetricAlarms"] == []

    timings.update(tf.timings)
    print(f"\naws stack against moto, seconds: {json.dumps(timings)}")
    print(f"resource types applied ({len(applied_types)}): {', '.join(applied_types)}")
