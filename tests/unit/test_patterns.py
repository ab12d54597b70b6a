"""MigrationTarget on both clouds: defaults, overrides, validation (every problem at once, cloud mismatches
included), pinned logical ids and zero LeptonCore findings, asserted on synthesized JSON.

Every stack lives in one App built once for the module (one jsii start, one synth per stack).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from lepton_cdk import aws as lepton_aws
from lepton_cdk import gcp as lepton_gcp
from lepton_cdk.checks import LEPTON_CORE, evaluate
from lepton_cdk.core import ConstructValidationError, TransferSchedule, framework
from lepton_cdk.core.framework import TerraformStack, aws, google
from lepton_cdk.patterns import GcsSource, MigrationTarget, S3Source
from tests.support.manifests import write_fake_manifest
from tests.support.synth import logical_ids, only, ref, resources

AGENT = "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0"
ROLE = "arn:aws:iam::123456789012:role/lepton-transfer"
GCS = GcsSource(bucket="acme-raw", hmac_secret_id="lepton/gcs-hmac", agent_arns=[AGENT], prefix="tables/")
S3 = S3Source(bucket="acme-raw", role_arn=ROLE, prefix="tables/")
CERT_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"


@dataclass(frozen=True)
class Certificate:
    """Anything with an ARN stands for an ACM certificate (ModelServing only reads .arn)."""

    arn: str = CERT_ARN


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    return write_fake_manifest(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def built(manifest_path):
    """{name: (synthesized JSON, the MigrationTarget)} for every scenario, all in one App."""
    app = framework.Testing.app()
    scenarios = {
        "aws-default": dict(cloud="aws"),
        "aws-full": dict(cloud="aws", instance_type="g6.xlarge", node_count=2, spot=True, image="ami-0123456789abcdef0",
                         managed_endpoint=True, managed_instance_type="ml.g4dn.xlarge", source=GCS, transfer_mode="full",
                         transfer_schedule=TransferSchedule.daily(dt.date(2027, 1, 4)), alert_emails=["oncall@acme.io"],
                         capacity_timeout_min=0, certificate=Certificate()),
        "aws-existing": "existing",
        "gcp-default": dict(cloud="gcp"),
        "gcp-full": dict(cloud="gcp", instance_type="g2-standard-8", node_count=3, spot=True, source=S3, alert_emails=["oncall@acme.io"]),
    }
    out = {}
    for name, props in scenarios.items():
        stack = TerraformStack(app, name)
        if name.startswith("aws"):
            aws.provider.AwsProvider(stack, "aws", region="us-east-1")
        else:
            google.provider.GoogleProvider(stack, "google", project="lepton-demo", region="us-central1")
        if props == "existing":
            bucket = lepton_aws.ModelBucket.from_bucket_name(stack, "Existing", "acme-models",
                                                             kms_key_id="arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-0b0a-0908-0706-050403020100")
            target = MigrationTarget(stack, "Target", cloud="aws", manifest=manifest_path, bucket=bucket, retain_data=False)
        else:
            target = MigrationTarget(stack, "Default", manifest=manifest_path, **props)
        out[name] = (json.loads(framework.Testing.synth(stack, True)), target)
    return out


# -- defaults --------------------------------------------------------------------------------------------------------


def test_aws_defaults_build_bucket_nodes_private_serving_and_alarms_with_pinned_ids(built):
    doc, target = built["aws-default"]
    ids = logical_ids(doc)
    # "Default" keeps the pattern out of the logical ids: the same ids as a stack built from the constructs directly
    assert {"aws_s3_bucket.ModelBucket_B33D855B", "aws_autoscaling_group.GpuNodes_319A5FAE", "aws_lb.Serving_7A42E1DA",
            "aws_lb_target_group.Serving_TargetGroup_A228DBF3", "aws_sns_topic.Monitoring_Topic_8F26FAED",
            "aws_cloudwatch_metric_alarm.Monitoring_UnhealthyNodes_5CB510D7"} <= ids
    assert doc["resource"]["aws_s3_bucket"]["ModelBucket_B33D855B"]["lifecycle"] == {"prevent_destroy": True}
    assert "aws_s3_bucket_policy" in doc["resource"]  # TLS-only
    template = only(doc, "aws_launch_template")
    assert template["instance_type"] == "g5.xlarge" and "instance_market_options" not in template
    group = doc["resource"]["aws_autoscaling_group"]["GpuNodes_319A5FAE"]
    assert (group["min_size"], group["desired_capacity"], group["max_size"]) == (1, 1, 1)
    assert (group["health_check_type"], group["health_check_grace_period"], group["wait_for_capacity_timeout"]) == ("ELB", 900, "10m")
    assert group["target_group_arns"] == [ref("aws_lb_target_group", "Serving_TargetGroup_A228DBF3", "arn")]
    assert only(doc, "aws_lb")["internal"] is True
    for absent in ("aws_sagemaker_endpoint", "aws_datasync_task", "aws_sns_topic_subscription", "aws_cloudwatch_event_rule"):
        assert absent not in doc["resource"]
    assert [k.split("_")[0] for k in resources(doc, "aws_s3_bucket")] == ["ModelBucket", "ModelBucket"]  # + its access logs
    assert (target.managed_serving, target.data_bucket, target.transfer, target.managed_monitoring) == (None, None, None, None)
    assert set(target.outputs) == {"serving_endpoint_url", "serving_load_balancer_dns_name", "alarm_topic_arn"}
    assert target.outputs["serving_endpoint_url"][0].startswith("http://${") and target.endpoint_url.startswith("http://${")
    assert target.alarm_topic_arn.startswith("${")
    assert target.model_uri.endswith("/models/credit-risk/1.0.0/model.onnx")


def test_gcp_defaults_build_bucket_nodes_and_private_serving_without_alerts(built):
    doc, target = built["gcp-default"]
    ids = logical_ids(doc)
    assert {"google_storage_bucket.ModelBucket_B33D855B", "google_compute_region_instance_group_manager.GpuNodes_319A5FAE",
            "google_compute_forwarding_rule.Serving_7A42E1DA"} <= ids
    rule = only(doc, "google_compute_forwarding_rule")
    assert rule["load_balancing_scheme"] == "INTERNAL_MANAGED"
    group = doc["resource"]["google_compute_region_instance_group_manager"]["GpuNodes_319A5FAE"]
    assert group["target_size"] == 1 and group["auto_healing_policies"]["initial_delay_sec"] == 900
    assert only(doc, "google_compute_instance_template")["machine_type"] == "g2-standard-4"
    assert "google_monitoring_alert_policy" not in doc["resource"] and "google_storage_transfer_job" not in doc["resource"]
    assert target.monitoring is None and target.alarm_topic_arn is None
    assert set(target.outputs) == {"serving_endpoint_url", "serving_ip_address"}


@pytest.mark.parametrize("name", ["aws-default", "aws-full", "gcp-default", "gcp-full"])
def test_targets_have_no_lepton_core_findings(built, name):
    doc, _ = built[name]
    assert evaluate(doc, stack=name, pack=LEPTON_CORE) == []


# -- overrides -------------------------------------------------------------------------------------------------------


def test_aws_overrides_reach_every_child(built):
    doc, target = built["aws-full"]
    template = only(doc, "aws_launch_template")
    assert (template["instance_type"], template["image_id"]) == ("g6.xlarge", "ami-0123456789abcdef0")
    assert template["instance_market_options"]["market_type"] == "spot"
    group = only(doc, "aws_autoscaling_group")
    assert (group["min_size"], group["desired_capacity"], group["max_size"], group["wait_for_capacity_timeout"]) == (2, 2, 2, "0m")
    listener = only(doc, "aws_lb_listener")
    assert (listener["port"], listener["protocol"], listener["certificate_arn"]) == (443, "HTTPS", CERT_ARN)
    assert target.endpoint_url.startswith("https://")
    variant = only(doc, "aws_sagemaker_endpoint_configuration")["production_variants"][0]
    assert variant["instance_type"] == "ml.g4dn.xlarge"
    # the endpoint's alarms share the node alarms' topic
    topic = ref("aws_sns_topic", "Monitoring_Topic_8F26FAED", "arn")
    endpoint_alarms = {k: v for k, v in resources(doc, "aws_cloudwatch_metric_alarm").items() if k.startswith("SageMakerMonitoring_")}
    assert len(endpoint_alarms) == 2 and all(a["alarm_actions"] == [topic] for a in endpoint_alarms.values())
    assert len(resources(doc, "aws_sns_topic")) == 1
    assert only(doc, "aws_sns_topic_subscription")["endpoint"] == "oncall@acme.io"
    # the transfer copies the gs:// source into a second secure bucket and is watched
    task = only(doc, "aws_datasync_task")
    assert task["options"]["transfer_mode"] == "ALL" and task["schedule"]["schedule_expression"].startswith("cron(")
    source = only(doc, "aws_datasync_location_object_storage")
    assert (source["bucket_name"], source["subdirectory"]) == ("acme-raw", "/tables/")
    data_bucket = [k for k in resources(doc, "aws_s3_bucket") if k.startswith("DataBucket_") and "AccessLogs" not in k]
    assert data_bucket == ["DataBucket_E3889A50"]
    assert only(doc, "aws_datasync_location_s3")["s3_bucket_arn"] == ref("aws_s3_bucket", "DataBucket_E3889A50", "arn")
    event = json.loads(only(doc, "aws_cloudwatch_event_rule")["event_pattern"])
    assert event["resources"] == [{"prefix": "${aws_datasync_task.Transfer_DCE8283A.arn}/execution/"}]
    assert set(target.outputs) == {"serving_endpoint_url", "serving_load_balancer_dns_name", "alarm_topic_arn", "sagemaker_endpoint_name",
                                   "sagemaker_endpoint_url", "data_bucket_name", "transfer_id"}
    assert target.outputs["transfer_id"][0].startswith("${")


def test_gcp_overrides_reach_every_child(built):
    doc, target = built["gcp-full"]
    template = only(doc, "google_compute_instance_template")
    assert template["machine_type"] == "g2-standard-8" and template["scheduling"]["provisioning_model"] == "SPOT"
    assert only(doc, "google_compute_region_instance_group_manager")["target_size"] == 3
    job = only(doc, "google_storage_transfer_job")
    aws_source = job["transfer_spec"]["aws_s3_data_source"]
    assert (aws_source["bucket_name"], aws_source["role_arn"], aws_source["path"]) == ("acme-raw", ROLE, "tables/")
    assert any(k.startswith("DataBucket_") for k in resources(doc, "google_storage_bucket"))
    channel = only(doc, "google_monitoring_notification_channel")
    assert channel["labels"] == {"email_address": "oncall@acme.io"}
    assert len(resources(doc, "google_monitoring_alert_policy")) >= 4  # nodes, errors, latency, transfer
    assert set(target.outputs) == {"serving_endpoint_url", "serving_ip_address", "data_bucket_name", "transfer_id"}


def test_existing_bucket_is_used_not_created_and_retain_data_false_lets_destroy_delete(built):
    doc, target = built["aws-existing"]
    assert "aws_s3_bucket" not in doc["resource"]
    obj = next(iter(resources(doc, "aws_s3_object").values()))
    assert obj["bucket"] == "acme-models" and obj["key"].startswith("models/credit-risk/1.0.0/")
    assert target.bucket.bucket_name == "acme-models"
    key = only(doc, "aws_kms_key")  # the alarm topic's key: not retained
    assert "lifecycle" not in key or "prevent_destroy" not in key["lifecycle"]
    # a non-"Default" id prefixes every child's logical id
    assert "aws_autoscaling_group.Target_GpuNodes_1D8CBCE8" in logical_ids(doc)
    findings = evaluate(doc, stack="aws-existing", pack=LEPTON_CORE)
    assert {f.rule for f in findings} == {"LEP-RETAIN-1"}


# -- validation ------------------------------------------------------------------------------------------------------


def _problems(manifest_path, **props) -> list[str]:
    app = framework.Testing.app()
    stack = TerraformStack(app, "bad")
    with pytest.raises(ConstructValidationError) as err:
        MigrationTarget(stack, "Target", manifest=manifest_path, **props)
    assert "\n" not in str(err.value)
    assert err.value.construct_path == "bad/Target"
    return err.value.problems


def test_every_problem_is_reported_at_once(manifest_path):
    problems = _problems(manifest_path, cloud="aws", node_count=-1, spot="yes", alert_emails=["nobody"], source=S3,
                         managed_instance_type="ml.g5.xlarge", instance_type="g2-standard-4", image="ubuntu", certificate="my-cert")
    text = " | ".join(problems)
    assert len(problems) == 8, problems
    assert "certificate=str has no .arn" in text
    for part in ("node_count=-1", "spot='yes' is not a bool", "'nobody', which is not an e-mail address",
                 "source=S3Source cannot feed a aws target", "pass GcsSource(...)", "managed_instance_type was given without managed_endpoint",
                 "instance_type='g2-standard-4' is an GCP type", "image='ubuntu' is not an AMI id"):
        assert part in text, part


def test_cloud_mismatched_props_are_refused_on_gcp(manifest_path):
    app = framework.Testing.app()
    other = TerraformStack(app, "other")
    s3_bucket = lepton_aws.ModelBucket.from_bucket_name(other, "Existing", "acme-models")
    problems = _problems(manifest_path, cloud="gcp", managed_endpoint=True, enforce_tls=False, source=GCS, bucket=s3_bucket,
                         instance_type="g5.xlarge", image="ami-0123456789abcdef0", capacity_timeout_min=0)
    text = " | ".join(problems)
    assert len(problems) == 7, problems
    for part in ("managed_endpoint=True is AWS only", "enforce_tls=False is AWS only", "pass S3Source(...)",
                 "bucket is an S3 bucket but cloud='gcp'", "instance_type='g5.xlarge' is an AWS type", "image='ami-0123456789abcdef0' is an AMI id",
                 "capacity_timeout_min is AWS only"):
        assert part in text, part


def test_unknown_cloud_and_transfer_settings_without_a_source(manifest_path):
    assert _problems(manifest_path, cloud="azure") == ["cloud='azure' is not a target cloud; use 'aws' or 'gcp'"]
    problems = _problems(manifest_path, cloud="gcp", transfer_mode="full", transfer_schedule=TransferSchedule.daily(dt.date(2027, 1, 4)),
                         alert_emails="oncall@acme.io")
    assert len(problems) == 3, problems
    assert "transfer_mode='full' was given without source" in problems[1] or any("transfer_mode='full'" in p for p in problems)
    assert any("alert_emails='oncall@acme.io' is a string" in p for p in problems)
    gcs_bucket_for_aws = lepton_gcp.ModelBucket.from_bucket_name(TerraformStack(framework.Testing.app(), "g"), "Existing", "acme-models")
    assert _problems(manifest_path, cloud="aws", bucket=gcs_bucket_for_aws, transfer_mode="sideways", source=GCS) == [
        "transfer_mode='sideways' is not a transfer mode; use one of full, incremental, partial",
        "bucket is a Cloud Storage bucket but cloud='aws'; pass a lepton_cdk.aws.ModelBucket (or its from_bucket_name(...)), or set cloud='gcp'",
    ]
