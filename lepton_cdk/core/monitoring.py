"""What both clouds' ``Monitoring`` accept, and their checks.

Kept here so CloudWatch alarms (AWS) and Cloud Monitoring alert policies
(GCP) take the same thresholds, the same window and the same targets to
watch, and report the same problems; each cloud only turns them into its
own resources.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .interfaces import IDataTransferJob
from .validation import PropChecks

DEFAULT_ALARM_WINDOW_MIN = 5
"""Consecutive breaching minutes before an alarm fires (AWS: evaluation periods; GCP: condition duration)."""

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def email_problems(prop: str, emails: Sequence[str], checks: PropChecks) -> list[str]:
    """Every entry of ``emails`` (prop ``prop``) that is not an e-mail address; tokens are skipped."""
    if isinstance(emails, str):
        return [f"{prop}={emails!r} is a string; pass a list of addresses, e.g. [{emails!r}]"]
    return [f"{prop} contains {email!r}, which is not an e-mail address"
            for email in emails if checks.known(email) and not (isinstance(email, str) and EMAIL.match(email))]


def check_monitoring_props(
    checks: PropChecks,
    *,
    node_group: Any,
    serving: Any,
    transfer_job: Any,
    notification_emails: Sequence[str],
    error_threshold_per_min: int,
    latency_threshold_ms: int,
    alarm_window_min: int,
) -> None:
    """Record every problem with the props both clouds' ``Monitoring`` share in ``checks``."""
    checks.require(node_group is not None or serving is not None or transfer_job is not None,
                   "nothing to watch; pass node_group, serving or transfer_job")
    if transfer_job is not None:
        checks.require(isinstance(transfer_job, IDataTransferJob),
                       f"transfer_job={type(transfer_job).__name__} is not a data transfer job (no mode and transfer_id); "
                       "pass this cloud's DataTransferJob")
    checks.add(*email_problems("notification_emails", notification_emails, checks))
    checks.int_range("error_threshold_per_min", error_threshold_per_min, minimum=1)
    checks.int_range("latency_threshold_ms", latency_threshold_ms, minimum=1, maximum=3_600_000)
    checks.int_range("alarm_window_min", alarm_window_min, minimum=1, maximum=60)
