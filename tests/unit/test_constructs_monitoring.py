"""Monitoring on both clouds: alarms / alert policies for nodes, serving and transfers, the notification
target, overrides, validation and pinned logical ids, asserted on synthesized JSON (one stack per cloud
for the defaults, shared by the module).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from lepton_cdk import aws as lepton_aws
from lepton_cdk import gcp as lepton_gcp
from lepton_cdk.checks import LEPTON_CORE, evaluate
from lepton_cdk.core import ConstructValidationError
from lepton_cdk.core.framework import aws, google
from tests.support.manifests import write_fake_manifest
from tests.support.synth import at, logical_ids, only, ref, resources, synth_json

TASK_ARN = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0"
JOB_NAME = "transferJobs/1234567890"
TOPIC = "Alarms_Topic_FB8030DD"


@dataclass(frozen=True)
class Transfer:
    """What Monitoring needs of a DataTransferJob: its id (task ARN / job name)."""

    transfer_id: str
    mode: str = "full"


def aws_synth(build):
    return synth_json(build, provider=lambda s: aws.provider.AwsProvider(s, "aws", region="us-east-1"))


def gcp_synth(build):
    return synth_json(build, provider=lambda s: google.provider.GoogleProvider(s, "google", project="lepton-demo", region="us-central1"))


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    return write_fake_manifest(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def aws_stack(manifest_path):
    """Load balancer serving watched with a new topic; SageMaker serving and a transfer watched on the same topic."""

    def build(stack):
        artifacts = lepton_aws.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_aws.GpuNodeGroup(stack, "GpuNodes", model=artifacts)
        serving = lepton_aws.ModelServing(stack, "Serving", node_group=nodes)
        managed = lepton_aws.ManagedModelServing(stack, "Managed", model=artifacts)
        alarms = lepton_aws.Monitoring(stack, "Alarms", serving=serving, notification_emails=["oncall@example.com", "ml@example.com"])
        endpoint = lepton_aws.Monitoring(stack, "EndpointAlarms", serving=managed, transfer_job=Transfer(TASK_ARN), topic=alarms.topic)
        return alarms, endpoint

    return aws_synth(build)


def alarm(doc: dict, path: str) -> dict:
    return at(doc, "aws_cloudwatch_metric_alarm", path)


# -- AWS ----------------------------------------------------------------------------------------------------------


def test_aws_topic_is_encrypted_with_a_retained_rotating_key_that_alarms_and_events_may_use(aws_stack):
    doc, (alarms, _) = aws_stack
    topic = only(doc, "aws_sns_topic")
    assert topic["name_prefix"] == "lepton-alarms-" and topic["kms_master_key_id"] == ref("aws_kms_key", "Alarms_TopicKey_FECF462D", "arn")
    key = at(doc, "aws_kms_key", "Alarms/TopicKey")
    assert key["enable_key_rotation"] is True and key["lifecycle"] == {"prevent_destroy": True}
    admin, services = json.loads(key["policy"])["Statement"]
    assert admin["Principal"] == {"AWS": "arn:${data.aws_partition.Alarms_Partition_A039E565.partition}:iam::"
                                         "${data.aws_caller_identity.Alarms_Account_70561B29.account_id}:root"}
    assert services["Principal"] == {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]}
    assert services["Action"] == ["kms:GenerateDataKey*", "kms:Decrypt"]
    allow, deny = json.loads(only(doc, "aws_sns_topic_policy")["policy"])["Statement"]
    assert allow["Action"] == "sns:Publish" and allow["Resource"] == ref("aws_sns_topic", TOPIC, "arn")
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": "${data.aws_caller_identity.Alarms_Account_70561B29.account_id}"}}
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    subscriptions = sorted((s["protocol"], s["endpoint"]) for s in resources(doc, "aws_sns_topic_subscription").values())
    assert subscriptions == [("email", "ml@example.com"), ("email", "oncall@example.com")]
    assert alarms.topic_key is not None and alarms.topic_policy is not None


def test_aws_every_alarm_notifies_the_topic_on_alarm_and_ok_after_five_minutes(aws_stack):
    doc, _ = aws_stack
    found = resources(doc, "aws_cloudwatch_metric_alarm")
    assert len(found) == 6
    for a in found.values():
        assert a["alarm_actions"] == [ref("aws_sns_topic", TOPIC, "arn")] and a["ok_actions"] == a["alarm_actions"]
        assert (a["evaluation_periods"], a["datapoints_to_alarm"]) == (5, 5)
        assert a["alarm_name"].startswith("lepton-")
    assert len({a["alarm_name"] for a in found.values()}) == 6


def test_aws_nodes_below_desired_compares_in_service_with_desired(aws_stack):
    doc, _ = aws_stack
    a = alarm(doc, "Alarms/NodesBelowDesired")
    assert (a["comparison_operator"], a["threshold"], a["treat_missing_data"]) == ("GreaterThanThreshold", 0, "missing")
    queries = {q["id"]: q for q in a["metric_query"]}
    assert queries["missing"] == {"id": "missing", "expression": "desired - inservice", "label": "nodes missing", "return_data": True}
    for query_id, metric in (("inservice", "GroupInServiceInstances"), ("desired", "GroupDesiredCapacity")):
        m = queries[query_id]["metric"]
        assert (m["namespace"], m["metric_name"], m["stat"], m["period"]) == ("AWS/AutoScaling", metric, "Minimum", 60)
        assert m["dimensions"] == {"AutoScalingGroupName": ref("aws_autoscaling_group", "GpuNodes_319A5FAE", "name")}


def test_aws_load_balancer_alarms_watch_unhealthy_targets_5xx_and_p99_latency(aws_stack):
    doc, _ = aws_stack
    dims = {"LoadBalancer": ref("aws_lb", "Serving_7A42E1DA", "arn_suffix"),
            "TargetGroup": ref("aws_lb_target_group", "Serving_TargetGroup_A228DBF3", "arn_suffix")}
    unhealthy = alarm(doc, "Alarms/UnhealthyNodes")
    assert (unhealthy["namespace"], unhealthy["metric_name"], unhealthy["statistic"]) == ("AWS/ApplicationELB", "UnHealthyHostCount", "Maximum")
    assert unhealthy["dimensions"] == dims and unhealthy["threshold"] == 0
    errors = alarm(doc, "Alarms/ServingErrors")
    assert (errors["comparison_operator"], errors["threshold"], errors["treat_missing_data"]) == (
        "GreaterThanOrEqualToThreshold", 5, "notBreaching")
    queries = {q["id"]: q for q in errors["metric_query"]}
    assert queries["errors"]["expression"] == "FILL(target, 0) + FILL(elb, 0)" and queries["errors"]["return_data"] is True
    assert queries["target"]["metric"]["metric_name"] == "HTTPCode_Target_5XX_Count" and queries["target"]["metric"]["dimensions"] == dims
    assert queries["elb"]["metric"]["metric_name"] == "HTTPCode_ELB_5XX_Count"
    assert queries["elb"]["metric"]["dimensions"] == {"LoadBalancer": dims["LoadBalancer"]}
    latency = alarm(doc, "Alarms/ServingLatency")
    assert (latency["metric_name"], latency["extended_statistic"], latency["threshold"]) == ("TargetResponseTime", "p99", 1)


def test_aws_sagemaker_alarms_and_the_transfer_failure_rule(aws_stack):
    doc, _ = aws_stack
    dims = {"EndpointName": ref("aws_sagemaker_endpoint", "Managed_658ACE2E", "name"), "VariantName": "primary"}
    errors = alarm(doc, "EndpointAlarms/EndpointErrors")
    assert (errors["namespace"], errors["metric_name"], errors["statistic"], errors["threshold"]) == (
        "AWS/SageMaker", "Invocation5XXErrors", "Sum", 5)
    latency = alarm(doc, "EndpointAlarms/EndpointLatency")
    assert (latency["metric_name"], latency["extended_statistic"], latency["threshold"]) == ("ModelLatency", "p99", 1_000_000)
    assert errors["dimensions"] == dims == latency["dimensions"]
    rule = only(doc, "aws_cloudwatch_event_rule")
    assert json.loads(rule["event_pattern"]) == {
        "source": ["aws.datasync"], "detail-type": ["DataSync Task Execution State Change"],
        "resources": [{"prefix": f"{TASK_ARN}/execution/"}], "detail": {"State": ["ERROR"]}}
    target = only(doc, "aws_cloudwatch_event_target")
    assert target["arn"] == ref("aws_sns_topic", TOPIC, "arn") and target["rule"] == ref("aws_cloudwatch_event_rule", rule_id(doc), "name")
    assert len(resources(doc, "aws_sns_topic")) == 1, "a given topic is used, not a second one created"


def rule_id(doc: dict) -> str:
    (name,) = resources(doc, "aws_cloudwatch_event_rule")
    return name


def test_aws_monitoring_stack_passes_the_policy_pack(aws_stack):
    doc, _ = aws_stack
    assert [(f.rule, f.address) for f in evaluate(doc, stack="test", pack=LEPTON_CORE)] == []


def test_aws_overrides_nodes_only_thresholds_and_a_destroyable_key(manifest_path):
    def build(stack):
        artifacts = lepton_aws.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_aws.GpuNodeGroup(stack, "GpuNodes", model=artifacts)
        serving = lepton_aws.ModelServing(stack, "Serving", node_group=nodes)
        lepton_aws.Monitoring(stack, "Alarms", node_group=nodes, serving=serving, error_threshold_per_min=20, latency_threshold_ms=250,
                              alarm_window_min=3, retain_on_destroy=False)

    doc, _ = aws_synth(build)
    assert "lifecycle" not in at(doc, "aws_kms_key", "Alarms/TopicKey")
    assert resources(doc, "aws_sns_topic_subscription") == {}
    assert alarm(doc, "Alarms/ServingErrors")["threshold"] == 20
    assert alarm(doc, "Alarms/ServingLatency")["threshold"] == 0.25
    assert all(a["evaluation_periods"] == 3 for a in resources(doc, "aws_cloudwatch_metric_alarm").values())
    failing = [(f.rule, f.address) for f in evaluate(doc, stack="test", pack=LEPTON_CORE)]
    assert failing == [("LEP-RETAIN-1", "aws_kms_key.Alarms_TopicKey_FECF462D")], "a destroyable key is the user's call, flagged"


def test_aws_validation_reports_every_problem_once():
    with pytest.raises(ConstructValidationError) as err:
        aws_synth(lambda s: lepton_aws.Monitoring(s, "Alarms", notification_emails=["not-an-address"], error_threshold_per_min=0,
                                                  latency_threshold_ms=0, alarm_window_min=61))
    message = str(err.value)
    assert "test/Alarms" in message and "nothing to watch" in message and "'not-an-address'" in message
    assert "error_threshold_per_min=0" in message and "latency_threshold_ms=0" in message and "alarm_window_min=61" in message
    assert len(err.value.problems) == 5
    with pytest.raises(ConstructValidationError, match="transfer_job=object is not a data transfer job"):
        aws_synth(lambda s: lepton_aws.Monitoring(s, "Alarms", transfer_job=object()))
    with pytest.raises(ConstructValidationError, match="is not a ModelServing or ManagedModelServing"):
        aws_synth(lambda s: lepton_aws.Monitoring(s, "Alarms", serving=object()))


def test_aws_monitoring_logical_ids_are_pinned(aws_stack):
    doc, _ = aws_stack
    assert {i for i in logical_ids(doc) if i.split(".")[1].startswith(("Alarms", "EndpointAlarms"))} == {
        "aws_kms_key.Alarms_TopicKey_FECF462D",
        "aws_sns_topic.Alarms_Topic_FB8030DD",
        "aws_sns_topic_policy.Alarms_TopicPolicy_7409FD35",
        "aws_sns_topic_subscription.Alarms_Subscription-0_CD5AE98A",
        "aws_sns_topic_subscription.Alarms_Subscription-1_A9FB3118",
        "aws_cloudwatch_metric_alarm.Alarms_NodesBelowDesired_E6F23334",
        "aws_cloudwatch_metric_alarm.Alarms_UnhealthyNodes_2C07CC8C",
        "aws_cloudwatch_metric_alarm.Alarms_ServingErrors_56D00AFF",
        "aws_cloudwatch_metric_alarm.Alarms_ServingLatency_3DE27D51",
        "aws_cloudwatch_metric_alarm.EndpointAlarms_EndpointErrors_D60DB325",
        "aws_cloudwatch_metric_alarm.EndpointAlarms_EndpointLatency_3931300A",
        "aws_cloudwatch_event_rule.EndpointAlarms_TransferFailed_A98D28E6",
        "aws_cloudwatch_event_target.EndpointAlarms_TransferFailedTarget_8BF2C54D",
    }


# -- GCP ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcp_stack(manifest_path):
    def build(stack):
        artifacts = lepton_gcp.ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        nodes = lepton_gcp.GpuNodeGroup(stack, "GpuNodes", model=artifacts, node_count=2)
        serving = lepton_gcp.ModelServing(stack, "Serving", node_group=nodes)
        return lepton_gcp.Monitoring(stack, "Alerts", serving=serving, transfer_job=Transfer(JOB_NAME), notification_emails=["oncall@example.com"])

    return gcp_synth(build)


def policy(doc: dict, path: str) -> dict:
    return at(doc, "google_monitoring_alert_policy", path)


def test_gcp_email_channel_notifies_every_policy(gcp_stack):
    doc, _ = gcp_stack
    channel = only(doc, "google_monitoring_notification_channel")
    assert (channel["type"], channel["labels"]) == ("email", {"email_address": "oncall@example.com"})
    channel_ref = ref("google_monitoring_notification_channel", "Alerts_Channel-0_B04996F8", "id")
    policies = resources(doc, "google_monitoring_alert_policy")
    assert len(policies) == 4
    assert all(p["notification_channels"] == [channel_ref] and p["severity"] == "ERROR" for p in policies.values())


def test_gcp_threshold_policies_for_nodes_errors_and_latency(gcp_stack):
    doc, _ = gcp_stack
    nodes = policy(doc, "Alerts/NodesBelowTarget")["conditions"][0]["condition_threshold"]
    assert nodes["filter"] == ('resource.type = "instance_group" AND resource.label.instance_group_name = '
                               '"${google_compute_region_instance_group_manager.GpuNodes_319A5FAE.name}" '
                               'AND metric.type = "compute.googleapis.com/instance_group/size"')
    assert (nodes["comparison"], nodes["threshold_value"], nodes["duration"]) == ("COMPARISON_LT", 2, "300s")
    rule = 'resource.type = "internal_http_lb_rule" AND resource.label.forwarding_rule_name = "${google_compute_forwarding_rule.Serving_7A42E1DA.name}"'
    errors = policy(doc, "Alerts/ServingErrors")["conditions"][0]["condition_threshold"]
    assert errors["filter"] == (f'{rule} AND metric.type = "loadbalancing.googleapis.com/https/internal/request_count" '
                                'AND metric.label.response_code_class = 500')
    assert (errors["comparison"], errors["threshold_value"]) == ("COMPARISON_GE", 5)
    assert errors["aggregations"] == [{"alignment_period": "60s", "per_series_aligner": "ALIGN_SUM", "cross_series_reducer": "REDUCE_SUM"}]
    latency = policy(doc, "Alerts/ServingLatency")["conditions"][0]["condition_threshold"]
    assert latency["filter"] == f'{rule} AND metric.type = "loadbalancing.googleapis.com/https/internal/total_latencies"'
    assert (latency["comparison"], latency["threshold_value"], latency["aggregations"][0]["per_series_aligner"]) == (
        "COMPARISON_GT", 1000, "ALIGN_PERCENTILE_99")


def test_gcp_transfer_failures_match_the_jobs_error_logs(gcp_stack):
    doc, _ = gcp_stack
    p = policy(doc, "Alerts/TransferFailed")
    assert p["conditions"][0]["condition_matched_log"]["filter"] == (
        f'resource.type = "storage_transfer_job" AND resource.labels.job_id = "{JOB_NAME}" AND severity >= ERROR')
    assert p["alert_strategy"] == {"notification_rate_limit": {"period": "300s"}, "auto_close": "3600s"}


def test_gcp_overrides_existing_channels_nodes_only(manifest_path):
    def build(stack):
        existing = google.monitoring_notification_channel.MonitoringNotificationChannel(
            stack, "Pager", display_name="pager", type="pagerduty", sensitive_labels={"service_key": "k"})
        nodes = lepton_gcp.GpuNodeGroup(stack, "GpuNodes", model=lepton_gcp.ModelBucket(stack, "B").upload_artifacts(manifest_path))
        lepton_gcp.Monitoring(stack, "Alerts", node_group=nodes, notification_channels=[existing], alarm_window_min=10)

    doc, _ = gcp_synth(build)
    assert list(resources(doc, "google_monitoring_notification_channel")) == ["Pager"]
    (p,) = resources(doc, "google_monitoring_alert_policy").values()
    assert p["notification_channels"] == [ref("google_monitoring_notification_channel", "Pager", "id")]
    assert p["conditions"][0]["condition_threshold"]["duration"] == "600s"


def test_gcp_validation_reports_every_problem_once():
    with pytest.raises(ConstructValidationError) as err:
        gcp_synth(lambda s: lepton_gcp.Monitoring(s, "Alerts", notification_emails=["nobody"], alarm_window_min=0, transfer_job=object()))
    message = str(err.value)
    assert "'nobody'" in message and "alarm_window_min=0" in message and "is not a data transfer job" in message
    assert len(err.value.problems) == 3
    with pytest.raises(ConstructValidationError) as err:
        gcp_synth(lambda s: lepton_gcp.Monitoring(s, "Alerts"))
    assert "nothing to watch" in str(err.value) and "no notification target" in str(err.value)


def test_gcp_monitoring_logical_ids_are_pinned(gcp_stack):
    doc, _ = gcp_stack
    assert {i for i in logical_ids(doc) if i.split(".")[1].startswith("Alerts")} == {
        "google_monitoring_notification_channel.Alerts_Channel-0_B04996F8",
        "google_monitoring_alert_policy.Alerts_NodesBelowTarget_9FF52C19",
        "google_monitoring_alert_policy.Alerts_ServingErrors_FD2CE90E",
        "google_monitoring_alert_policy.Alerts_ServingLatency_E7A5872D",
        "google_monitoring_alert_policy.Alerts_TransferFailed_AF9E2770",
    }
