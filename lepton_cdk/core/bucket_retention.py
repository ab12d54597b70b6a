"""The lifecycle and access-log props both clouds' ``ModelBucket`` take, their defaults and their checks.

Kept here so the AWS and GCP buckets accept exactly the same values and
report the same problems; each cloud only turns them into its own resources.
"""

from __future__ import annotations

from typing import Any

from .interfaces import BUCKET_KINDS, is_bucket_of
from .validation import PropChecks

DEFAULT_ABORT_INCOMPLETE_UPLOAD_DAYS = 7
DEFAULT_NONCURRENT_VERSION_EXPIRATION_DAYS = 90
DEFAULT_ACCESS_LOG_RETENTION_DAYS = 365
ACCESS_LOG_NONCURRENT_DAYS = 30
"""Days an overwritten or expired log object is kept before the log bucket deletes it for good."""

# Both clouds count lifecycle ages in whole days; 100 years is far past any sensible retention.
_MAX_DAYS = 36500


def check_retention_props(
    checks: PropChecks,
    *,
    abort_incomplete_upload_days: int,
    noncurrent_version_expiration_days: int | None,
    access_logging: bool,
    access_log_bucket: Any,
    access_log_retention_days: int,
    cloud: str,
) -> None:
    """Record every problem with the lifecycle and access-log props of a ``cloud`` bucket in ``checks``."""
    checks.int_range("abort_incomplete_upload_days", abort_incomplete_upload_days, minimum=1, maximum=_MAX_DAYS,
                     fix="an unfinished upload is aborted that many days after it started")
    if noncurrent_version_expiration_days is not None:
        checks.int_range("noncurrent_version_expiration_days", noncurrent_version_expiration_days, minimum=1, maximum=_MAX_DAYS,
                         fix="pass None to keep overwritten versions forever")
    checks.int_range("access_log_retention_days", access_log_retention_days, minimum=1, maximum=_MAX_DAYS,
                     fix="logs are deleted that many days after they are written")
    checks.require(access_logging or access_log_bucket is None,
                   "access_log_bucket is given but access_logging=False; drop one of them")
    if access_log_bucket is not None:
        checks.require(is_bucket_of(access_log_bucket, cloud),
                       f"access_log_bucket={type(access_log_bucket).__name__} is not {BUCKET_KINDS[cloud]}; pass a "
                       f"lepton_cdk.{cloud}.AccessLogBucket, or lepton_cdk.{cloud}.ModelBucket.from_bucket_name(...)")
