"""One DNS name in front of the old and the new model endpoint, split by weight: Route 53 weighted records with health checks.

A cutover moves callers from one endpoint to the other by changing one
number, ``new_weight_percent``: the percent of DNS answers that name the new
endpoint. Each step is a plan that changes only
``weighted_routing_policy.weight`` on the two records (``lepton review``
names such a change a traffic step), and rolling back is setting it to 0.

Default settings:
- Two weighted records of one name (children ``"Old"`` and ``"New"``,
  ``set_identifier`` ``old`` and ``new``) with weights ``100 -
  new_weight_percent`` and ``new_weight_percent``; TTL 60 s, so a step or a
  rollback reaches callers within about a minute. At 0 the new endpoint gets
  no answers (and at 100 the old one none) unless every endpoint with a
  weight fails its health check: Route 53 then answers with the others, so a
  zero-weight endpoint is also the fallback.
- Record type: ``A``/``AAAA`` when both endpoints are addresses of one
  family, else ``CNAME``; an IP address beside a host name is then published
  under a helper record ``lepton-old.<name>`` / ``lepton-new.<name>``
  (children ``"OldAddress"`` / ``"NewAddress"``) that the weighted ``CNAME`` names.
- Health checks, attached to each weighted record:
  a :class:`~lepton_cdk.aws.ModelServing` (an internal load balancer, which
  Route 53's health checkers cannot reach) is checked through a CloudWatch
  alarm (``"<Side>HealthAlarm"``) on its target group's healthy host count
  (fewer than one healthy node for 3 consecutive minutes) and a
  ``CLOUDWATCH_METRIC`` health check (``"<Side>HealthCheck"``) that keeps the
  last known status while the alarm has no data; a public endpoint given by
  URL is checked over HTTP(S) at ``/v2/health/ready`` every 30 s, unhealthy
  after 3 failures; a private IP address (RFC 1918) cannot be checked by
  Route 53 and its record carries none (a warning says so: gate the cutover
  with ``lepton cutover check``'s ``healthy`` gate instead).
- Both endpoints must serve on the same port: a DNS answer carries none.

The hosted zone is yours (public, or private to the callers' VPCs): pass its
id. For an internal endpoint use a private hosted zone associated with the
VPCs the callers run in.
"""

from __future__ import annotations

from typing import Any

from lepton_cdk.core.framework import Annotations, Construct, aws
from lepton_cdk.core.routing import (
    DEFAULT_HEALTH_CHECK_PATH,
    DEFAULT_TTL_SEC,
    SIDES,
    RoutedAddress,
    check_split_props,
    parse_endpoint,
    split_record_type,
    split_weights,
)
from lepton_cdk.core.validation import PropChecks

from .serving import ModelServing

HEALTH_CHECK_INTERVALS_SEC = (10, 30)  # the two intervals Route 53 offers


class TrafficSplit(Construct):
    """A DNS name answering with the old or the new endpoint by weight, each health-checked where Route 53 can reach it."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        zone: Any,
        record_name: str,
        old_endpoint: str | ModelServing,
        new_endpoint: str | ModelServing,
        new_weight_percent: int = 0,
        ttl_sec: int = DEFAULT_TTL_SEC,
        health_checks: bool = True,
        health_check_path: str = DEFAULT_HEALTH_CHECK_PATH,
        health_check_interval_sec: int = 30,
        health_check_failure_threshold: int = 3,
    ) -> None:
        """Create the two weighted records, their health checks and any helper record.

        :param zone: the Route 53 hosted zone holding the name: its id
            (``Z0123...``) or a zone object with ``zone_id``.
        :param record_name: the name callers use, e.g. ``model.internal.example.com``.
        :param old_endpoint: where traffic moves from: a URL or address
            (``http://10.20.0.5``, ``https://old.example.com``) or a
            :class:`~lepton_cdk.aws.ModelServing` of this stack.
        :param new_endpoint: where traffic moves to, in the same forms.
        :param new_weight_percent: percent of answers naming the new endpoint
            (0-100; the old one gets the rest). Default: 0, all traffic on the old endpoint.
        :param ttl_sec: how long resolvers keep an answer. Default: 60 s.
        :param health_checks: attach health checks where Route 53 can make them.
            Default: on; ``False`` leaves the records unchecked.
        :param health_check_path: readiness path of an HTTP(S) check. Default: ``/v2/health/ready``.
        :param health_check_interval_sec: seconds between HTTP(S) checks (10 or 30). Default: 30.
        :param health_check_failure_threshold: consecutive failures (1-10) before an
            endpoint is unhealthy; also the minutes of the alarm behind a ``ModelServing``. Default: 3.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        problems: list[str] = []
        routed = {side: self._routed(endpoint, f"{side}_endpoint") for side, endpoint in zip(SIDES, (old_endpoint, new_endpoint), strict=True)}
        check_split_props(problems, old=routed["old"], new=routed["new"], new_weight_percent=new_weight_percent, ttl_sec=ttl_sec,
                          health_check_path=health_check_path, record_name=record_name)
        checks.add(*problems)
        checks.require(health_check_interval_sec in HEALTH_CHECK_INTERVALS_SEC,
                       f"health_check_interval_sec={health_check_interval_sec!r} must be 10 or 30 (the intervals Route 53 offers)")
        checks.int_range("health_check_failure_threshold", health_check_failure_threshold, minimum=1, maximum=10)
        zone_id = getattr(zone, "zone_id", zone)
        checks.require(isinstance(zone_id, str) and bool(zone_id.strip()),
                       f"zone={zone!r} is not a hosted zone; pass its id (Z0123...) or an aws_route53_zone")
        checks.raise_if_any()

        self.record_name = record_name.rstrip(".")
        self.new_weight_percent = new_weight_percent
        self.old_weight, self.new_weight = split_weights(new_weight_percent)
        addresses: dict[str, RoutedAddress] = routed  # type: ignore[assignment]  # validated above
        self.record_type = split_record_type(addresses["old"], addresses["new"])
        self.health_checks: dict[str, Any] = {}
        self.health_alarms: dict[str, Any] = {}
        self.helper_records: dict[str, Any] = {}
        self.records: dict[str, Any] = {}
        weights = {"old": self.old_weight, "new": self.new_weight}
        for side, endpoint in zip(SIDES, (old_endpoint, new_endpoint), strict=True):
            target = addresses[side]
            title = side.capitalize()
            value = target.address
            if target.record_type != self.record_type:
                helper_name = f"lepton-{side}.{self.record_name}"
                self.helper_records[side] = aws.route53_record.Route53Record(
                    self, f"{title}Address", zone_id=zone_id, name=helper_name, type=target.record_type, ttl=ttl_sec, records=[value],
                )
                value = helper_name
            health_check_id = None
            if health_checks:
                health_check_id = self._health_check(side, endpoint, target, health_check_path, health_check_interval_sec,
                                                     health_check_failure_threshold)
            self.records[side] = aws.route53_record.Route53Record(
                self, title,
                zone_id=zone_id,
                name=self.record_name,
                type=self.record_type,
                ttl=ttl_sec,
                records=[value],
                set_identifier=side,
                # The traffic step: the only attribute a cutover step changes.
                weighted_routing_policy=aws.route53_record.Route53RecordWeightedRoutingPolicy(weight=weights[side]),
                health_check_id=health_check_id,
            )
        self.old_record, self.new_record = self.records["old"], self.records["new"]
        self.port = addresses["new"].effective_port if addresses["new"].port is not None else addresses["old"].effective_port
        self.scheme = addresses["new"].scheme

    @staticmethod
    def _routed(endpoint: str | ModelServing, prop: str) -> RoutedAddress | str:
        if isinstance(endpoint, ModelServing):
            return RoutedAddress(address=endpoint.load_balancer_dns_name, record_type="CNAME", scheme=endpoint.scheme,
                                 port=endpoint.listener_port, private=True)
        if not isinstance(endpoint, str):
            return f"{prop}={type(endpoint).__name__} is not an endpoint; pass a URL, an address or an aws.ModelServing"
        return parse_endpoint(endpoint, prop)

    def _health_check(self, side: str, endpoint: str | ModelServing, target: RoutedAddress, path: str, interval_sec: int,
                      failures: int) -> str | None:
        title = side.capitalize()
        if isinstance(endpoint, ModelServing):
            return self._alarm_health_check(side, endpoint, failures)
        if target.private:
            Annotations.of(self).add_warning(
                f"{side}_endpoint {target.address} is a private address, which Route 53's health checkers cannot reach: its record "
                "has no health check. Gate each step with `lepton cutover check` (the 'healthy' gate) instead.")
            return None
        by_name = target.record_type == "CNAME"
        check = aws.route53_health_check.Route53HealthCheck(
            self, f"{title}HealthCheck",
            type="HTTPS" if target.scheme == "https" else "HTTP",
            fqdn=target.address if by_name else None,
            ip_address=None if by_name else target.address,
            port=target.effective_port,
            resource_path=path,
            request_interval=interval_sec,
            failure_threshold=failures,
            # Route 53 sends the host name in the TLS handshake only when asked; most HTTPS servers need it.
            enable_sni=True if target.scheme == "https" and by_name else None,
            reference_name=f"lepton-{side}"[:64],
        )
        self.health_checks[side] = check
        return check.id

    def _alarm_health_check(self, side: str, serving: ModelServing, failures: int) -> str:
        title = side.capitalize()
        if not hasattr(self, "region"):
            self.region = aws.data_aws_region.DataAwsRegion(self, "Region")
        alarm = aws.cloudwatch_metric_alarm.CloudwatchMetricAlarm(
            self, f"{title}HealthAlarm",
            alarm_name=f"lepton-{side}-endpoint-unhealthy-{serving.node.addr[:8]}",
            alarm_description=f"lepton-cdk: no healthy node behind the {side} endpoint of a traffic split (Route 53 health check)",
            namespace="AWS/ApplicationELB",
            metric_name="HealthyHostCount",
            dimensions={"LoadBalancer": serving.load_balancer_arn_suffix, "TargetGroup": serving.target_group_arn_suffix},
            statistic="Minimum",
            period=60,
            evaluation_periods=failures,
            comparison_operator="LessThanThreshold",
            threshold=1,
            treat_missing_data="missing",
        )
        self.health_alarms[side] = alarm
        check = aws.route53_health_check.Route53HealthCheck(
            self, f"{title}HealthCheck",
            type="CLOUDWATCH_METRIC",
            cloudwatch_alarm_name=alarm.alarm_name,
            cloudwatch_alarm_region=self.region.name,
            # A new alarm has no data for its first minutes: keep the endpoint as it was rather than flapping it.
            insufficient_data_health_status="LastKnownStatus",
            reference_name=f"lepton-{side}"[:64],
        )
        self.health_checks[side] = check
        return check.id

    @property
    def endpoint_url(self) -> str:
        """The URL callers use: ``<scheme>://<record_name>[:port]``."""
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{self.record_name}" + ("" if self.port == default else f":{self.port}")


__all__ = ["HEALTH_CHECK_INTERVALS_SEC", "TrafficSplit"]
