"""The managed serving and its monitoring for real against moto: validate, apply, re-plan (no drift but
moto's known gaps), check what moto holds, destroy.

The reference app (tests/integration/test_aws_apply.py) applies GpuNodeGroup behind ModelServing
(internal ALB, target group, listener, security group rules) and Monitoring of both (node and load
balancer alarms, the SNS topic with its KMS key, an e-mail subscription). This stack covers what the app
does not build by default: an existing bucket (``ModelBucket.from_bucket_name``) + artifacts,
ManagedModelServing (SageMaker model, endpoint configuration, endpoint) in a PrivateNetwork, and
Monitoring of the endpoint and of a transfer (endpoint alarms, a topic, the DataSync failure rule).

Where moto falls short, the test says so and checks the synthesized JSON instead:
- moto's SageMaker rejects ``ml.g5.*``, so the endpoint uses ``ml.g4dn.xlarge``;
- moto's CreateModel drops ``EnableNetworkIsolation`` (it always reads back false), which would show
  as drift, so it is off here (its default, on, is asserted in the unit tests' synthesized JSON);
- moto returns an empty ``VpcConfig`` for a model created without one, which also reads back as drift,
  so the model is attached to a private network's subnets (the default, no VPC, is unit-tested);
- moto returns an empty DataCaptureConfig for an endpoint configuration created without one, so the
  re-plan after apply shows exactly that change (asserted by address and attribute, see MOTO_DRIFT) and
  nothing else (moto's other drift, descriptions of rules that reference a security group or prefix list,
  is named in test_aws_apply.py);
- there is no DataSync task: moto lacks DataSync's tag calls (see ARCHITECTURE.md), so the rule
  watches a task ARN written out by hand; EventBridge itself is real.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lepton_cdk.aws import ManagedModelServing, ModelBucket, Monitoring, PrivateNetwork
from lepton_cdk.checks.aspect import PolicyChecks
from lepton_cdk.core.framework import App, LocalBackend, TerraformOutput, TerraformStack, aws
from lepton_cdk.testing import AwsEmulator
from tests.support.emulators import aws_env, boto3_client
from tests.support.manifests import write_fake_manifest
from tests.support.terraform import Terraform, planned_changes, tool_env

pytestmark = pytest.mark.integration

STACK = "serving"
EXISTING_BUCKET = "acme-existing-models"
TASK_ARN = "arn:aws:datasync:us-east-1:123456789012:task/task-0123456789abcdef0"


@dataclass(frozen=True)
class HandTask:
    """Stands in for a DataTransferJob: moto cannot create a DataSync task (see the module docstring)."""

    transfer_id: str = TASK_ARN
    mode: str = "full"


def build_stack(outdir: Path, endpoint: str, manifest: Path) -> tuple[Path, dict]:
    """Synthesize the serving stack against ``endpoint``; returns (stack folder, constructs)."""
    app = App(outdir=str(outdir))
    stack = TerraformStack(app, STACK)
    # cdktf's default local backend writes into the current folder (the repo root): keep the state in the test's folder.
    LocalBackend(stack, path=str(outdir.parent / f"terraform.{STACK}.tfstate"))
    AwsEmulator(endpoint).provider(stack)  # us-east-1, every service on moto, moto's retry budget
    checks = PolicyChecks.apply(stack)
    # An existing bucket (test_aws_apply.py covers ModelBucket itself; its lifecycle rules alone take ~55 s on moto).
    bucket = ModelBucket.from_bucket_name(stack, "ModelBucket", EXISTING_BUCKET)
    artifacts = bucket.upload_artifacts(manifest)
    network = PrivateNetwork(stack, "Network")
    group = aws.security_group.SecurityGroup(stack, "EndpointSecurityGroup", name_prefix="lepton-endpoint-", vpc_id=network.vpc_id,
                                             description="SageMaker endpoint containers: no ingress, no egress")
    managed = ManagedModelServing(stack, "Managed", model=artifacts, instance_type="ml.g4dn.xlarge", network_isolation=False,
                                  subnets=network.subnets, security_groups=[group])
    watch = Monitoring(stack, "EndpointAlarms", serving=managed, transfer_job=HandTask(), notification_emails=["oncall@example.com"],
                       retain_on_destroy=False)
    PolicyChecks.suppress(watch, "LEP-RETAIN-1", reason="test stack against moto: destroyed at the end")
    for name, value in {
        "sagemaker_endpoint_name": managed.endpoint_name, "sagemaker_endpoint_url": managed.endpoint_url, "alarm_topic_arn": watch.topic_arn,
    }.items():
        TerraformOutput(stack, name, value=value)
    app.synth()
    PolicyChecks.check(app)
    return outdir / "stacks" / STACK, {"checks": checks}


# What moto gets wrong, and only that, may show up in the re-plan:
# - DescribeEndpointConfig returns an empty DataCaptureConfig for a configuration created without one
#   (real SageMaker omits it); the provider reads it as a data_capture_config block to remove, which
#   forces a new configuration and the endpoint's switch to it;
MOTO_DRIFT = {
    "aws_sagemaker_endpoint_configuration.Managed_EndpointConfig_848720FD": (("create", "delete"), (("data_capture_config",),)),
    "aws_sagemaker_endpoint.Managed_658ACE2E": (("update",), ("endpoint_config_name",)),
}


def test_managed_serving_and_monitoring_apply_replan_clean_and_destroy(moto, tf_cli_config, tmp_path):
    manifest = write_fake_manifest(tmp_path / "model")
    started = time.monotonic()
    stack_dir, _ = build_stack(tmp_path / "cdktf.out", moto, manifest)
    synth_s = round(time.monotonic() - started, 1)
    doc = json.loads((stack_dir / "cdk.tf.json").read_text())
    assert "testing" not in json.dumps(doc), "credentials leaked into the synthesized JSON"

    tf = Terraform(stack_dir, tool_env({**aws_env(moto), "TF_CLI_CONFIG_FILE": str(tf_cli_config)}))
    boto3_client("s3", moto).create_bucket(Bucket=EXISTING_BUCKET)
    tf("init", "-input=false", "-no-color")
    tf("validate", "-no-color")
    tf("apply", "-auto-approve", "-input=false", "-no-color")
    plan = tf("plan", "-detailed-exitcode", "-input=false", "-no-color", "-out=replan.bin", ok_codes=(0, 2))
    assert planned_changes(tf, "replan.bin") == MOTO_DRIFT, f"a re-plan right after apply wants changes (drift):\n{plan.stdout[-6000:]}"
    outputs = {k: v["value"] for k, v in json.loads(tf("output", "-json").stdout).items()}

    # -- SageMaker: model on the version's prefix, config with a name prefix, endpoint in service ---------------------
    sagemaker = boto3_client("sagemaker", moto)
    endpoint = sagemaker.describe_endpoint(EndpointName=outputs["sagemaker_endpoint_name"])
    assert endpoint["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["EndpointConfigName"].startswith("lepton-")
    (variant,) = config["ProductionVariants"]
    assert (variant["VariantName"], variant["InstanceType"], variant["InitialInstanceCount"]) == ("primary", "ml.g4dn.xlarge", 1)
    assert "KmsKeyId" not in config, "ml.g4dn has NVMe instance storage: SageMaker refuses a volume key for it"
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    source = model["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]
    assert source["S3DataType"] == "S3Prefix" and source["CompressionType"] == "None"
    assert source["S3Uri"] == f"s3://{EXISTING_BUCKET}/models/credit-risk/1.0.0/"
    assert ".dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:" in model["PrimaryContainer"]["Image"]
    assert outputs["sagemaker_endpoint_url"] == (
        f"https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/{outputs['sagemaker_endpoint_name']}/invocations")
    iam = boto3_client("iam", moto)
    role_name = model["ExecutionRoleArn"].rsplit("/", 1)[1]
    (policy_name,) = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    by_action = {a: s for s in document["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert set(by_action) == {"s3:GetObject", "s3:ListBucket", "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                              "logs:DescribeLogStreams"}
    assert by_action["s3:GetObject"]["Resource"] == f"arn:aws:s3:::{EXISTING_BUCKET}/models/credit-risk/1.0.0/*"
    assert by_action["s3:ListBucket"]["Resource"] == f"arn:aws:s3:::{EXISTING_BUCKET}"
    assert by_action["s3:ListBucket"]["Condition"] == {"StringLike": {"s3:prefix": ["models/credit-risk/1.0.0/*"]}}
    assert by_action["logs:PutLogEvents"]["Resource"] == "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/*"

    # -- alarms, topic, subscription, transfer rule ---------------------------------------------------------------------
    cloudwatch = boto3_client("cloudwatch", moto)
    alarms = {a["AlarmName"].split("-")[1]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert set(alarms) == {"EndpointErrors", "EndpointLatency"}
    assert all(a["AlarmActions"] == [outputs["alarm_topic_arn"]] and a["OKActions"] == [outputs["alarm_topic_arn"]] for a in alarms.values())
    assert alarms["EndpointErrors"]["MetricName"] == "Invocation5XXErrors"
    assert alarms["EndpointLatency"]["MetricName"] == "ModelLatency" and alarms["EndpointLatency"]["Threshold"] == 1_000_000
    sns = boto3_client("sns", moto)
    topic = sns.get_topic_attributes(TopicArn=outputs["alarm_topic_arn"])["Attributes"]
    assert topic["KmsMasterKeyId"].startswith("arn:aws:kms:us-east-1:")
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=outputs["alarm_topic_arn"])["Subscriptions"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "oncall@example.com")
    events = boto3_client("events", moto)
    (rule,) = events.list_rules(NamePrefix="lepton-transfer-failed-")["Rules"]
    assert json.loads(rule["EventPattern"])["resources"] == [{"prefix": f"{TASK_ARN}/execution/"}]
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"] == outputs["alarm_topic_arn"]

    # -- what moto cannot hold, checked in the synthesized JSON --------------------------------------------------------
    (model_json,) = doc["resource"]["aws_sagemaker_model"].values()
    assert model_json["lifecycle"] == {"create_before_destroy": True}
    (config_json,) = doc["resource"]["aws_sagemaker_endpoint_configuration"].values()
    assert config_json["lifecycle"] == {"create_before_destroy": True} and config_json["name_prefix"] == "lepton-"

    tf("destroy", "-auto-approve", "-input=false", "-no-color")
    assert sagemaker.list_endpoints()["Endpoints"] == [] and sagemaker.list_models()["Models"] == []
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []
    print(f"\nserving stack against moto, seconds: {json.dumps({'synth': synth_s, **tf.timings})}")
