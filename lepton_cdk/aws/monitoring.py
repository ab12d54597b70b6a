"""CloudWatch alarms for a migration target: unhealthy nodes, serving errors and latency, failed transfers.

Default settings:
- Notifications go to a new SNS topic (child ``"Topic"``) encrypted with a
  new customer-managed KMS key (``"TopicKey"``, rotated yearly, retained on
  destroy) whose policy lets CloudWatch and EventBridge use it, which the
  AWS-managed ``alias/aws/sns`` key does not. The topic policy
  (``"TopicPolicy"``) lets only CloudWatch alarms and EventBridge rules of
  this account publish, and denies publishing without TLS. Each address in
  ``notification_emails`` is subscribed (AWS e-mails a confirmation link).
  ``topic=`` sends everything to a topic you already have instead (its
  policy and key must admit ``cloudwatch.amazonaws.com`` and
  ``events.amazonaws.com``).
- Every alarm notifies on ALARM and again on OK, evaluates 1-minute
  periods and fires after 5 consecutive breaching minutes (``alarm_window_min``).
- Node group: ``NodesBelowDesired`` fires while in-service nodes are fewer
  than desired (the group's 1-minute ``GroupInServiceInstances`` /
  ``GroupDesiredCapacity`` metrics; a node that never becomes healthy
  keeps it firing).
- Load balancer serving (:class:`~lepton_cdk.aws.ModelServing`):
  ``UnhealthyNodes`` on the target group's ``UnHealthyHostCount`` > 0;
  ``ServingErrors`` when 5xx answers (the nodes' plus the load balancer's
  own, e.g. 503 with no healthy node) reach 5 a minute; ``ServingLatency``
  when p99 ``TargetResponseTime`` exceeds 1000 ms.
- SageMaker serving (:class:`~lepton_cdk.aws.ManagedModelServing`):
  ``EndpointErrors`` on ``Invocation5XXErrors`` (5 a minute) and
  ``EndpointLatency`` on p99 ``ModelLatency`` (1000 ms) of the variant.
- Transfer (an :class:`~lepton_cdk.core.IDataTransferJob` whose
  ``transfer_id`` is the DataSync task ARN: a ``DataTransferJob``): an EventBridge rule (``"TransferFailed"``) matching
  the task's executions entering ``ERROR`` sends the event to the topic.
  DataSync publishes no failure metric, so this is an event, not an alarm.
- Missing data is "not breaching" for the traffic alarms (no requests is
  not an error) and "missing" for the node alarms.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from lepton_cdk.core.framework import Construct, TerraformResourceLifecycle, aws
from lepton_cdk.core.interfaces import IDataTransferJob, IHasArn
from lepton_cdk.core.monitoring import DEFAULT_ALARM_WINDOW_MIN, check_monitoring_props
from lepton_cdk.core.renames import renamed_props
from lepton_cdk.core.validation import PropChecks

from .gpu_nodes import GpuNodeGroup
from .serving import ManagedModelServing, ModelServing


class Monitoring(Construct):
    """Alarms and events for a node group, its serving and a transfer job, sent to one SNS topic."""

    @renamed_props(evaluation_periods_min="alarm_window_min", retain_key_on_destroy="retain_on_destroy")
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        node_group: GpuNodeGroup | None = None,
        serving: ModelServing | ManagedModelServing | None = None,
        transfer_job: IDataTransferJob | None = None,
        topic: IHasArn | None = None,
        notification_emails: Sequence[str] = (),
        error_threshold_per_min: int = 5,
        latency_threshold_ms: int = 1000,
        alarm_window_min: int = DEFAULT_ALARM_WINDOW_MIN,
        retain_on_destroy: bool = True,
    ) -> None:
        """Create the topic (unless given), alarms and transfer rule.

        :param node_group: the GPU nodes to watch. Default: the node group of
            ``serving`` when it is a :class:`ModelServing`; none otherwise.
        :param serving: the load balancer or SageMaker serving to watch. Default: none.
        :param transfer_job: a transfer whose ``transfer_id`` is a DataSync task ARN (a ``DataTransferJob``). Default: none.
        :param topic: an SNS topic (anything with ``.arn``) to notify. Default: a new KMS-encrypted topic.
        :param notification_emails: addresses subscribed to the topic. Default: none.
        :param error_threshold_per_min: 5xx answers a minute that count as breaching. Default: 5.
        :param latency_threshold_ms: p99 latency that counts as breaching. Default: 1000 ms.
        :param alarm_window_min: consecutive breaching minutes before an alarm fires (1-60). Default: 5.
        :param retain_on_destroy: ``prevent_destroy`` on the new topic's KMS key. Default: retained.
        """
        super().__init__(scope, id)
        if node_group is None and isinstance(serving, ModelServing):
            node_group = serving.node_group
        checks = PropChecks(self.node.path)
        if serving is not None:
            checks.require(isinstance(serving, ModelServing | ManagedModelServing),
                           f"serving={type(serving).__name__} is not a ModelServing or ManagedModelServing")
        check_monitoring_props(checks, node_group=node_group, serving=serving, transfer_job=transfer_job,
                               notification_emails=notification_emails, error_threshold_per_min=error_threshold_per_min,
                               latency_threshold_ms=latency_threshold_ms, alarm_window_min=alarm_window_min)
        checks.raise_if_any()

        self._evaluation_periods = alarm_window_min
        self._suffix = hashlib.sha256(self.node.path.encode()).hexdigest()[:8]
        self.alarms: dict[str, Any] = {}
        self.topic_key = None
        self.topic_policy = None
        if topic is None:
            self._create_topic(retain_on_destroy)
            self.topic_arn = self.topic.arn
        else:
            self.topic = topic
            self.topic_arn = topic.arn
        self.subscriptions = [
            aws.sns_topic_subscription.SnsTopicSubscription(self, f"Subscription-{i}", topic_arn=self.topic_arn, protocol="email", endpoint=email)
            for i, email in enumerate(notification_emails)
        ]

        if node_group is not None:
            self._node_alarms(node_group)
        if isinstance(serving, ModelServing):
            self._load_balancer_alarms(serving, error_threshold_per_min, latency_threshold_ms)
        elif isinstance(serving, ManagedModelServing):
            self._endpoint_alarms(serving, error_threshold_per_min, latency_threshold_ms)
        self.transfer_rule = None
        if transfer_job is not None:
            self._transfer_rule(transfer_job.transfer_id)

    # -- notification target ---------------------------------------------------------------------------------------

    def _create_topic(self, retain_on_destroy: bool) -> None:
        self.account = aws.data_aws_caller_identity.DataAwsCallerIdentity(self, "Account")
        self.partition = aws.data_aws_partition.DataAwsPartition(self, "Partition")
        root = f"arn:{self.partition.partition}:iam::{self.account.account_id}:root"
        key_policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "AccountAdministersTheKey", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"},
                {"Sid": "AlarmsAndEventsEncryptNotifications", "Effect": "Allow",
                 "Principal": {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]},
                 "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*"},
            ],
        }
        self.topic_key = aws.kms_key.KmsKey(
            self, "TopicKey",
            description=f"lepton-cdk alarm notifications ({self.node.path})",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=json.dumps(key_policy, separators=(",", ":")),
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if retain_on_destroy else None,
        )
        self.topic = aws.sns_topic.SnsTopic(self, "Topic", name_prefix="lepton-alarms-", kms_master_key_id=self.topic_key.arn)
        publish = {"StringEquals": {"aws:SourceAccount": self.account.account_id}}
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "AlarmsAndEventsPublish", "Effect": "Allow",
                 "Principal": {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]},
                 "Action": "sns:Publish", "Resource": self.topic.arn, "Condition": publish},
                {"Sid": "DenyWithoutTls", "Effect": "Deny", "Principal": "*", "Action": "sns:Publish", "Resource": self.topic.arn,
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            ],
        }
        self.topic_policy = aws.sns_topic_policy.SnsTopicPolicy(
            self, "TopicPolicy", arn=self.topic.arn, policy=json.dumps(policy, separators=(",", ":")),
        )

    # -- alarms ----------------------------------------------------------------------------------------------------

    def _alarm(self, id: str, description: str, *, missing: str = "missing", **kwargs: Any) -> Any:
        alarm = aws.cloudwatch_metric_alarm.CloudwatchMetricAlarm(
            self, id,
            # Alarm names are unique per account and region: the construct path's hash keeps two stacks apart.
            alarm_name=f"lepton-{id}-{self._suffix}",
            alarm_description=description,
            evaluation_periods=self._evaluation_periods,
            datapoints_to_alarm=self._evaluation_periods,
            treat_missing_data=missing,
            alarm_actions=[self.topic_arn],
            ok_actions=[self.topic_arn],
            **kwargs,
        )
        self.alarms[id] = alarm
        return alarm

    def _node_alarms(self, node_group: GpuNodeGroup) -> None:
        q = aws.cloudwatch_metric_alarm

        def group_metric(query_id: str, name: str) -> Any:
            return q.CloudwatchMetricAlarmMetricQuery(id=query_id, metric=q.CloudwatchMetricAlarmMetricQueryMetric(
                namespace="AWS/AutoScaling", metric_name=name, dimensions={"AutoScalingGroupName": node_group.node_group_name},
                period=60, stat="Minimum"))

        self._alarm(
            "NodesBelowDesired", "lepton-cdk: fewer GPU nodes in service than desired (nodes failing health checks or capacity shortage)",
            comparison_operator="GreaterThanThreshold", threshold=0,
            metric_query=[
                group_metric("inservice", "GroupInServiceInstances"),
                group_metric("desired", "GroupDesiredCapacity"),
                q.CloudwatchMetricAlarmMetricQuery(id="missing", expression="desired - inservice", label="nodes missing", return_data=True),
            ],
        )

    def _load_balancer_alarms(self, serving: ModelServing, errors: int, latency_ms: int) -> None:
        q = aws.cloudwatch_metric_alarm
        lb = {"LoadBalancer": serving.load_balancer_arn_suffix}
        tg = {**lb, "TargetGroup": serving.target_group_arn_suffix}
        self._alarm(
            "UnhealthyNodes", "lepton-cdk: GPU nodes fail the load balancer's /v2/health/ready check (they are being replaced)",
            namespace="AWS/ApplicationELB", metric_name="UnHealthyHostCount", dimensions=tg, statistic="Maximum", period=60,
            comparison_operator="GreaterThanThreshold", threshold=0,
        )

        def count(query_id: str, name: str, dims: dict) -> Any:
            return q.CloudwatchMetricAlarmMetricQuery(id=query_id, metric=q.CloudwatchMetricAlarmMetricQueryMetric(
                namespace="AWS/ApplicationELB", metric_name=name, dimensions=dims, period=60, stat="Sum"))

        self._alarm(
            "ServingErrors", f"lepton-cdk: {errors} or more 5xx answers a minute from the model endpoint",
            comparison_operator="GreaterThanOrEqualToThreshold", threshold=errors, missing="notBreaching",
            metric_query=[
                count("target", "HTTPCode_Target_5XX_Count", tg),
                count("elb", "HTTPCode_ELB_5XX_Count", lb),
                q.CloudwatchMetricAlarmMetricQuery(id="errors", expression="FILL(target, 0) + FILL(elb, 0)", label="5xx answers",
                                                   return_data=True),
            ],
        )
        self._alarm(
            "ServingLatency", f"lepton-cdk: p99 model endpoint latency above {latency_ms} ms",
            namespace="AWS/ApplicationELB", metric_name="TargetResponseTime", dimensions=tg, extended_statistic="p99", period=60,
            comparison_operator="GreaterThanThreshold", threshold=latency_ms / 1000, missing="notBreaching",
        )

    def _endpoint_alarms(self, serving: ManagedModelServing, errors: int, latency_ms: int) -> None:
        dims = {"EndpointName": serving.endpoint_name, "VariantName": serving.variant_name}
        self._alarm(
            "EndpointErrors", f"lepton-cdk: {errors} or more 5xx answers a minute from the SageMaker endpoint",
            namespace="AWS/SageMaker", metric_name="Invocation5XXErrors", dimensions=dims, statistic="Sum", period=60,
            comparison_operator="GreaterThanOrEqualToThreshold", threshold=errors, missing="notBreaching",
        )
        self._alarm(
            "EndpointLatency", f"lepton-cdk: p99 SageMaker model latency above {latency_ms} ms",
            # ModelLatency is in microseconds.
            namespace="AWS/SageMaker", metric_name="ModelLatency", dimensions=dims, extended_statistic="p99", period=60,
            comparison_operator="GreaterThanThreshold", threshold=latency_ms * 1000, missing="notBreaching",
        )

    def _transfer_rule(self, task_arn: str) -> None:
        pattern = {
            "source": ["aws.datasync"],
            "detail-type": ["DataSync Task Execution State Change"],
            # An execution's ARN is <task arn>/execution/<id>.
            "resources": [{"prefix": f"{task_arn}/execution/"}],
            "detail": {"State": ["ERROR"]},
        }
        self.transfer_rule = aws.cloudwatch_event_rule.CloudwatchEventRule(
            self, "TransferFailed",
            name_prefix="lepton-transfer-failed-",
            description="lepton-cdk: a DataSync task execution failed",
            event_pattern=json.dumps(pattern, separators=(",", ":")),
        )
        aws.cloudwatch_event_target.CloudwatchEventTarget(
            self, "TransferFailedTarget", rule=self.transfer_rule.name, arn=self.topic_arn,
        )


__all__ = ["Monitoring"]
