"""A Storage Transfer Service job that copies an S3 bucket (the source cloud) into a Cloud Storage bucket.

The mirror image of :mod:`lepton_cdk.aws.transfer`: the same public names (``docs/vocabulary.md``),
this cloud's resources. What repeats between the two modules is kept on purpose (aws/ and gcp/
never import each other); logic that is truly shared lives in ``lepton_cdk.core``.

Default settings (``DataTransferJob``):
- No static AWS keys anywhere: the job reads S3 through ``role_arn``
  federation. Storage Transfer Service's Google-managed service agent
  (``data.google_storage_transfer_project_service_account``, child
  ``"ServiceAgent"``) calls ``AssumeRoleWithWebIdentity`` on ``source_role_arn``;
  that role must trust ``accounts.google.com`` with
  ``accounts.google.com:sub`` = :attr:`DataTransferJob.federation_subject_id`
  and allow ``s3:ListBucket`` / ``s3:GetObject`` (and ``s3:GetBucketLocation``)
  on the source bucket.
- The service agent gets exactly what the sink needs on the destination
  bucket (child ``"SinkWriter"``, ``roles/storage.legacyBucketWriter``:
  bucket get, object create/delete/list) plus ``roles/storage.objectViewer``
  (``"SinkReader"``) in the modes that compare objects before overwriting,
  and ``roles/cloudkms.cryptoKeyEncrypterDecrypter`` on the sink bucket's
  CMEK key (``"SinkKeyAccess"``) when the key is known. No project-level role.
- Mode ``"incremental"``: objects that are new or differ are copied
  (``overwrite_objects_already_existing_in_sink = false``,
  ``overwrite_when = "DIFFERENT"``); nothing is deleted anywhere. The
  source is never modified in any mode
  (``delete_objects_from_source_after_transfer = false``).
- Checksums: Storage Transfer Service validates every object it copies
  against the source checksum (MD5 / CRC32C) and fails the object on a
  mismatch; the API has no switch to turn that off, so there is none here.
- Transfer logs in Cloud Logging for every FIND, COPY and DELETE action,
  succeeded or failed (``logging_config``).
- No schedule: the job is created ``ENABLED`` but never runs by itself; start
  it with ``gcloud transfer jobs run <job_name>``. ``schedule=`` runs it
  once on a date or repeatedly from a start date.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from lepton_cdk.core.framework import Construct, google
from lepton_cdk.core.interfaces import IGcsBucket, is_bucket_of
from lepton_cdk.core.renames import renamed_props
from lepton_cdk.core.transfer import TransferSchedule, check_transfer_props
from lepton_cdk.core.validation import PropChecks

from .bucket import ModelBucket

_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_SECONDS_PER_HOUR = 3600


class DataTransferJob(Construct):
    """Storage Transfer Service job from S3 into Cloud Storage (child ``"Resource"``; see the module docstring).

    Implements :class:`lepton_cdk.core.IDataTransferJob`; :attr:`job_name`
    is what monitoring watches.
    """

    @renamed_props(destination_kms_key_id="kms_key_id")
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        source_bucket_name: str,
        source_role_arn: str,
        destination: IGcsBucket,
        mode: str = "incremental",
        source_prefix: str = "",
        destination_prefix: str = "",
        include_prefixes: Sequence[str] = (),
        exclude_prefixes: Sequence[str] = (),
        delete_unique_in_sink: bool = False,
        schedule: TransferSchedule | None = None,
        kms_key_id: str | None = None,
        description: str | None = None,
    ) -> None:
        """Create the transfer job and the service agent's grants on the destination.

        :param source_bucket_name: the S3 bucket to copy from (it lives in
            the other cloud, so it is a name, not an ``IBucket``).
        :param source_role_arn: the AWS IAM role Storage Transfer Service
            assumes through federation (see the module docstring for its trust
            policy). Required: there is no keyless default.
        :param destination: the Cloud Storage bucket to copy into (a
            ``ModelBucket`` or ``ModelBucket.from_bucket_name(...)``).
        :param mode: ``"full"``, ``"incremental"`` or ``"partial"``.
            Default: ``"incremental"``, new and changed objects only.
        :param source_prefix: copy only keys under this folder (ending in
            ``/``). Default: the whole bucket.
        :param destination_prefix: write under this folder. Default: the
            bucket root, keys unchanged.
        :param include_prefixes: with ``mode="partial"``, copy only keys
            starting with one of these (relative to ``source_prefix``).
            Default: every key.
        :param exclude_prefixes: with ``mode="partial"``, skip keys starting
            with one of these. Default: none skipped.
        :param delete_unique_in_sink: with ``mode="full"``, delete destination
            objects the source no longer has (a mirror; on a versioned bucket
            they become noncurrent versions). Default: kept.
        :param schedule: when the job runs. Default: never by itself; run it
            with ``gcloud transfer jobs run``.
        :param kms_key_id: the sink bucket's Cloud KMS key, to grant the
            service agent on. Default: the key of a destination
            ``ModelBucket`` (which declares its key), else no key grant (an
            imported bucket's key belongs to someone else's stack).
        :param description: shown in the console. Default: ``lepton-cdk <construct path>``.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        if checks.known(source_bucket_name):
            checks.require(isinstance(source_bucket_name, str) and bool(_S3_BUCKET.match(source_bucket_name)),
                           f"source_bucket_name={source_bucket_name!r} is not a valid S3 bucket name; use 3-63 lowercase "
                           "letters, digits, '-' or '.'")
        if checks.known(source_role_arn):
            checks.require(isinstance(source_role_arn, str) and bool(_ROLE_ARN.match(source_role_arn)),
                           f"source_role_arn={source_role_arn!r} is not an IAM role ARN; pass arn:aws:iam::<12-digit account>:role/<name> "
                           "(federation needs a role; static keys are not accepted)")
        if not is_bucket_of(destination, "gcp"):
            checks.add(f"destination={type(destination).__name__} is not a Cloud Storage bucket; pass a lepton_cdk.gcp.ModelBucket "
                       "or ModelBucket.from_bucket_name(...)")
        check_transfer_props(checks, mode=mode, source_prefix=source_prefix, destination_prefix=destination_prefix,
                             include_prefixes=include_prefixes, exclude_prefixes=exclude_prefixes,
                             delete_unique_in_sink=delete_unique_in_sink, schedule=schedule)
        checks.raise_if_any()

        self._mode = mode
        self.destination = destination
        self.schedule = schedule
        compare_first = mode != "full"  # incremental and partial copy only what differs, so STS reads the sink's copy

        self.service_agent = google.data_google_storage_transfer_project_service_account.DataGoogleStorageTransferProjectServiceAccount(
            self, "ServiceAgent")
        member = self.service_agent.member
        iam = google.storage_bucket_iam_member
        grants: list[Any] = [iam.StorageBucketIamMember(
            self, "SinkWriter", bucket=destination.bucket_name, role="roles/storage.legacyBucketWriter", member=member)]
        if compare_first:
            grants.append(iam.StorageBucketIamMember(
                self, "SinkReader", bucket=destination.bucket_name, role="roles/storage.objectViewer", member=member))
        key_id = kms_key_id or (destination.kms_key_id if isinstance(destination, ModelBucket) else None)
        self.key_access = None
        if key_id:
            # Key-level only: lets the job write into a CMEK bucket whichever identity Cloud Storage checks.
            self.key_access = google.kms_crypto_key_iam_member.KmsCryptoKeyIamMember(
                self, "SinkKeyAccess", crypto_key_id=key_id, role="roles/cloudkms.cryptoKeyEncrypterDecrypter", member=member)
            grants.append(self.key_access)

        stj = google.storage_transfer_job
        conditions = None
        if mode == "partial":
            # Storage Transfer Service evaluates these relative to the source path, as the props are documented.
            conditions = stj.StorageTransferJobTransferSpecObjectConditions(
                include_prefixes=list(include_prefixes) or None, exclude_prefixes=list(exclude_prefixes) or None)
        if mode == "full":
            options = stj.StorageTransferJobTransferSpecTransferOptions(
                overwrite_objects_already_existing_in_sink=True, overwrite_when="ALWAYS",
                delete_objects_unique_in_sink=delete_unique_in_sink, delete_objects_from_source_after_transfer=False)
        else:
            options = stj.StorageTransferJobTransferSpecTransferOptions(
                overwrite_objects_already_existing_in_sink=False, overwrite_when="DIFFERENT",
                delete_objects_unique_in_sink=False, delete_objects_from_source_after_transfer=False)
        self.resource = stj.StorageTransferJob(
            self, "Resource",
            description=(description or f"lepton-cdk {self.node.path}")[:1024],
            transfer_spec=stj.StorageTransferJobTransferSpec(
                aws_s3_data_source=stj.StorageTransferJobTransferSpecAwsS3DataSource(
                    bucket_name=source_bucket_name, role_arn=source_role_arn, path=source_prefix or None),
                gcs_data_sink=stj.StorageTransferJobTransferSpecGcsDataSink(
                    bucket_name=destination.bucket_name, path=destination_prefix or None),
                object_conditions=conditions,
                transfer_options=options,
            ),
            schedule=_schedule(schedule),
            logging_config=stj.StorageTransferJobLoggingConfig(
                log_actions=["FIND", "COPY", "DELETE"], log_action_states=["SUCCEEDED", "FAILED"]),
            status="ENABLED",
            # The first run checks its permissions on the sink: grant them before the job exists.
            depends_on=grants,
        )

    @property
    def mode(self) -> str:
        """The migration mode."""
        return self._mode

    @property
    def job_name(self) -> str:
        """The transfer job's name (``transferJobs/...``), generated by the service."""
        return self.resource.name

    @property
    def transfer_id(self) -> str:
        """Same as :attr:`job_name` (the :class:`~lepton_cdk.core.IDataTransferJob` handle)."""
        return self.job_name

    @property
    def federation_subject_id(self) -> str:
        """The service agent's subject id: the ``accounts.google.com:sub`` the source role must trust."""
        return self.service_agent.subject_id

    @property
    def service_agent_email(self) -> str:
        """The Storage Transfer Service agent's e-mail."""
        return self.service_agent.email


def _schedule(schedule: TransferSchedule | None) -> Any:
    if schedule is None:
        return None
    stj = google.storage_transfer_job
    start = stj.StorageTransferJobScheduleScheduleStartDate(
        year=schedule.start_date.year, month=schedule.start_date.month, day=schedule.start_date.day)
    at = stj.StorageTransferJobScheduleStartTimeOfDay(
        hours=schedule.start_time.hour, minutes=schedule.start_time.minute, seconds=0, nanos=0)
    if not schedule.recurring:
        # Start date = end date: Storage Transfer Service runs the job exactly once.
        end = stj.StorageTransferJobScheduleScheduleEndDate(
            year=schedule.start_date.year, month=schedule.start_date.month, day=schedule.start_date.day)
        return stj.StorageTransferJobSchedule(schedule_start_date=start, schedule_end_date=end, start_time_of_day=at)
    return stj.StorageTransferJobSchedule(schedule_start_date=start, start_time_of_day=at,
                                          repeat_interval=f"{schedule.repeat_hours * _SECONDS_PER_HOUR}s")
