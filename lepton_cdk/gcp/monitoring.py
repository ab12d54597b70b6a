"""Cloud Monitoring alert policies for a migration target: missing nodes, serving errors and latency, failed transfers.

Default settings:
- Notifications go to one e-mail notification channel per address in
  ``notification_emails`` (children ``"Channel-<n>"``) and to the channels
  passed in ``notification_channels``; at least one is required, since GCP
  has no default recipient. Incidents also notify when they close.
- Node group: ``NodesBelowTarget`` opens while the managed instance group
  holds fewer VMs than its ``node_count`` for 5 minutes (``alarm_window_min``)
  (``compute.googleapis.com/instance_group/size``); with auto-healing on, a
  node failing ``/v2/health/ready`` is recreated, which this sees.
- Load balancer serving (:class:`~lepton_cdk.gcp.ModelServing`):
  ``ServingErrors`` when 5xx answers (from the nodes, or 503 from the load
  balancer with no healthy node) reach 5 a minute for 5 minutes;
  ``ServingLatency`` when the p99 of ``total_latencies`` stays above
  1000 ms for 5 minutes (``loadbalancing.googleapis.com/https/internal/*``
  of the forwarding rule).
- Transfer (an :class:`~lepton_cdk.core.IDataTransferJob` whose
  ``transfer_id`` is a Storage Transfer Service job name such as
  ``transferJobs/123``: a ``DataTransferJob``): ``TransferFailed`` opens on any log
  entry of severity ERROR or worse for that job (Storage Transfer Service
  publishes no failure metric; the job must have logging on), at most one
  notification per 5 minutes, closed after 1 hour without another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lepton_cdk.core.framework import Construct, google
from lepton_cdk.core.interfaces import IDataTransferJob, IHasId
from lepton_cdk.core.monitoring import DEFAULT_ALARM_WINDOW_MIN, check_monitoring_props
from lepton_cdk.core.renames import renamed_props
from lepton_cdk.core.validation import PropChecks

from .gpu_nodes import GpuNodeGroup
from .serving import ModelServing

INotificationChannel = IHasId
"""A ``google_monitoring_notification_channel`` (or anything with its ``.id``, the channel's resource name)."""


class Monitoring(Construct):
    """Alert policies for a node group, its serving and a transfer job, sent to notification channels.

    The AWS mirror image is :class:`lepton_cdk.aws.Monitoring`: the same props
    where both clouds have the concept (see ``docs/vocabulary.md``).
    """

    @renamed_props(duration_min="alarm_window_min")
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        node_group: GpuNodeGroup | None = None,
        serving: ModelServing | None = None,
        transfer_job: IDataTransferJob | None = None,
        notification_emails: Sequence[str] = (),
        notification_channels: Sequence[INotificationChannel] = (),
        error_threshold_per_min: int = 5,
        latency_threshold_ms: int = 1000,
        alarm_window_min: int = DEFAULT_ALARM_WINDOW_MIN,
    ) -> None:
        """Create the notification channels and alert policies.

        :param node_group: the GPU nodes to watch. Default: the node group of ``serving``; none without it.
        :param serving: the load balancer serving to watch. Default: none.
        :param transfer_job: a transfer whose ``transfer_id`` is a Storage Transfer Service job name (a ``DataTransferJob``). Default: none.
        :param notification_emails: addresses to notify (an e-mail channel each). Default: none.
        :param notification_channels: existing channels to notify. Default: none.
        :param error_threshold_per_min: 5xx answers a minute that count as breaching. Default: 5.
        :param latency_threshold_ms: p99 latency that counts as breaching. Default: 1000 ms.
        :param alarm_window_min: minutes a condition must hold before an incident opens (1-60). Default: 5.
        """
        super().__init__(scope, id)
        if node_group is None and serving is not None:
            node_group = serving.node_group
        checks = PropChecks(self.node.path)
        checks.require(bool(notification_emails) or bool(notification_channels),
                       "no notification target; pass notification_emails=['oncall@example.com'] or notification_channels")
        check_monitoring_props(checks, node_group=node_group, serving=serving, transfer_job=transfer_job,
                               notification_emails=notification_emails, error_threshold_per_min=error_threshold_per_min,
                               latency_threshold_ms=latency_threshold_ms, alarm_window_min=alarm_window_min)
        checks.raise_if_any()

        self._duration = f"{alarm_window_min * 60}s"
        self.policies: dict[str, Any] = {}
        nc = google.monitoring_notification_channel
        self.channels = [
            nc.MonitoringNotificationChannel(
                self, f"Channel-{i}", display_name=f"lepton-cdk alerts: {email}", type="email", labels={"email_address": email},
            )
            for i, email in enumerate(notification_emails)
        ]
        self.channel_ids = [c.id for c in self.channels] + [c.id for c in notification_channels]

        if node_group is not None:
            self._policy("NodesBelowTarget", "lepton-cdk: fewer GPU nodes than the target size", threshold=dict(
                filter=(f'resource.type = "instance_group" AND resource.label.instance_group_name = "{node_group.node_group_name}" '
                        'AND metric.type = "compute.googleapis.com/instance_group/size"'),
                comparison="COMPARISON_LT", threshold_value=node_group.node_count, aligner="ALIGN_MIN",
            ))
        if serving is not None:
            rule = f'resource.type = "internal_http_lb_rule" AND resource.label.forwarding_rule_name = "{serving.forwarding_rule_name}"'
            self._policy("ServingErrors", f"lepton-cdk: {error_threshold_per_min} or more 5xx answers a minute from the model endpoint",
                         threshold=dict(
                             filter=(f'{rule} AND metric.type = "loadbalancing.googleapis.com/https/internal/request_count" '
                                     'AND metric.label.response_code_class = 500'),
                             comparison="COMPARISON_GE", threshold_value=error_threshold_per_min, aligner="ALIGN_SUM",
                             reducer="REDUCE_SUM",
                         ))
            self._policy("ServingLatency", f"lepton-cdk: p99 model endpoint latency above {latency_threshold_ms} ms", threshold=dict(
                filter=f'{rule} AND metric.type = "loadbalancing.googleapis.com/https/internal/total_latencies"',
                comparison="COMPARISON_GT", threshold_value=latency_threshold_ms, aligner="ALIGN_PERCENTILE_99",
            ))
        if transfer_job is not None:
            self._transfer_policy(transfer_job.transfer_id)

    def _policy(self, id: str, display_name: str, *, threshold: dict[str, Any]) -> Any:
        ap = google.monitoring_alert_policy
        condition = ap.MonitoringAlertPolicyConditionsConditionThreshold(
            filter=threshold["filter"],
            comparison=threshold["comparison"],
            threshold_value=threshold["threshold_value"],
            duration=self._duration,
            aggregations=[ap.MonitoringAlertPolicyConditionsConditionThresholdAggregations(
                alignment_period="60s", per_series_aligner=threshold["aligner"],
                cross_series_reducer=threshold.get("reducer"),
            )],
            trigger=ap.MonitoringAlertPolicyConditionsConditionThresholdTrigger(count=1),
        )
        policy = ap.MonitoringAlertPolicy(
            self, id,
            display_name=display_name,
            combiner="OR",
            conditions=[ap.MonitoringAlertPolicyConditions(display_name=display_name, condition_threshold=condition)],
            notification_channels=self.channel_ids,
            alert_strategy=ap.MonitoringAlertPolicyAlertStrategy(notification_prompts=["OPENED", "CLOSED"]),
            severity="ERROR",
        )
        self.policies[id] = policy
        return policy

    def _transfer_policy(self, job_name: str) -> None:
        ap = google.monitoring_alert_policy
        display_name = "lepton-cdk: a Storage Transfer Service job failed"
        self.policies["TransferFailed"] = ap.MonitoringAlertPolicy(
            self, "TransferFailed",
            display_name=display_name,
            combiner="OR",
            conditions=[ap.MonitoringAlertPolicyConditions(
                display_name=display_name,
                condition_matched_log=ap.MonitoringAlertPolicyConditionsConditionMatchedLog(
                    filter=f'resource.type = "storage_transfer_job" AND resource.labels.job_id = "{job_name}" AND severity >= ERROR',
                ),
            )],
            notification_channels=self.channel_ids,
            # Log-match policies need a notification rate limit.
            alert_strategy=ap.MonitoringAlertPolicyAlertStrategy(
                notification_rate_limit=ap.MonitoringAlertPolicyAlertStrategyNotificationRateLimit(period="300s"),
                auto_close="3600s",
            ),
            severity="ERROR",
        )


__all__ = ["INotificationChannel", "Monitoring"]
