"""An AWS DataSync task that copies a Cloud Storage bucket (the source cloud) into an S3 bucket.

The mirror image of :mod:`lepton_cdk.gcp.transfer`: the same public names (``docs/vocabulary.md``),
this cloud's resources. What repeats between the two modules is kept on purpose (aws/ and gcp/
never import each other); logic that is truly shared lives in ``lepton_cdk.core``.

Default settings (``DataTransferJob``):
- Source: an object storage location (child ``"Source"``) for
  ``storage.googleapis.com`` over HTTPS (port 443), Cloud Storage's
  S3-compatible XML API, reached through the DataSync agent(s) you deployed
  (``agent_arns``; provider 5.100.0 requires an agent for this location type).
- HMAC credentials never appear in the synthesized JSON: they are read at
  plan time from the Secrets Manager secret ``hmac_secret_id`` (a JSON
  object ``{"access_key": "GOOG...", "secret_key": "..."}``) through a
  data source (``"HmacSecret"``), so the JSON only holds the reference
  ``${jsondecode(data.aws_secretsmanager_secret_version...secret_string)...}``.
  The provider marks ``secret_key`` sensitive (plans print it as
  ``(sensitive value)``); like every credential Terraform manages, it is
  stored in the state, so keep the state in an encrypted backend.
- Destination: an S3 location (``"Destination"``) with its own bucket access
  role (``"BucketAccessRole"``, trusted by ``datasync.amazonaws.com`` only)
  limited to the destination bucket and prefix: list the bucket under the
  prefix, read/write objects under it (with the bucket key through S3 only,
  via ``grant_write``), delete only when ``delete_unique_in_sink=True``.
- Mode ``"incremental"``: only new and changed objects are copied
  (``transfer_mode = "CHANGED"``), destination-only objects are kept
  (``preserve_deleted_files = "PRESERVE"``). Object tags are not copied
  (``object_tags = "NONE"``): Cloud Storage's XML API has no object tagging,
  and DataSync fails the task when asked to read tags from it.
- Checksum verification on: ``verify_mode = "ONLY_FILES_TRANSFERRED"`` (every
  copied object's checksum is compared at source and destination);
  ``"POINT_IN_TIME_CONSISTENT"`` also verifies the whole destination. ``NONE``
  is refused.
- Task logs (``log_level = "TRANSFER"``, one line per object) go to a new
  CloudWatch log group (``"LogGroup"``, ``/aws/datasync/lepton-...``) kept
  365 days and encrypted with a new KMS key (``"LogKey"``, rotated yearly,
  usable by CloudWatch Logs for this account's log groups only). A log
  resource policy (``"LogPolicy"``) lets DataSync tasks of this account write
  to that group only. The key is retained on destroy like the buckets' keys.
- No schedule: the task never starts by itself; start it with
  ``aws datasync start-task-execution --task-arn <task_arn>``. ``schedule=``
  runs it once at a date (a cron pinned to that minute and year) or every
  N hours; DataSync has no start date, so a repeating schedule begins at its
  first matching time after deploy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from lepton_cdk.core.framework import Construct, Fn, TerraformResourceLifecycle, Token, aws
from lepton_cdk.core.interfaces import IAwsBucket, is_bucket_of
from lepton_cdk.core.transfer import TransferSchedule, check_transfer_props
from lepton_cdk.core.validation import PropChecks

from .iam import PolicyStatement, ServiceRole

GCS_XML_API_HOST = "storage.googleapis.com"
VERIFY_MODES = ("ONLY_FILES_TRANSFERRED", "POINT_IN_TIME_CONSISTENT")
# The retention values CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)

_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_AGENT_ARN = re.compile(r"^arn:aws[a-z-]*:datasync:[a-z0-9-]+:\d{12}:agent/agent-[0-9a-z]{17}$")
_TASK_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9\s+=._:@/-]")


def _filter(patterns: Sequence[str]) -> str:
    # DataSync filters are rooted at the location's subdirectory; "*" at the end makes each a prefix match.
    return "|".join(f"/{p}*" for p in patterns)


class DataTransferJob(Construct):
    """AWS DataSync task from Cloud Storage into S3 (child ``"Resource"``; see the module docstring).

    Implements :class:`lepton_cdk.core.IDataTransferJob`; :attr:`task_arn`
    is what monitoring watches. DataSync cannot be applied against moto (it
    lacks DataSync's tag calls), so this construct is checked by synthesized
    JSON, ``terraform validate`` and checkov.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        source_bucket_name: str,
        hmac_secret_id: str,
        agent_arns: Sequence[str],
        destination: IAwsBucket,
        mode: str = "incremental",
        source_prefix: str = "",
        destination_prefix: str = "",
        include_prefixes: Sequence[str] = (),
        exclude_prefixes: Sequence[str] = (),
        delete_unique_in_sink: bool = False,
        schedule: TransferSchedule | None = None,
        verify_mode: str = "ONLY_FILES_TRANSFERRED",
        log_retention_days: int = 365,
        retain_on_destroy: bool = True,
    ) -> None:
        """Create the locations, the bucket access role, the encrypted log group and the task.

        :param source_bucket_name: the Cloud Storage bucket to copy from (in
            the other cloud, so a name, not an ``IBucket``).
        :param hmac_secret_id: name or ARN of the Secrets Manager secret
            holding the Cloud Storage HMAC key as JSON ``{"access_key",
            "secret_key"}`` (a key of a service account that may read the
            source bucket). Required: there is no keyless way for DataSync
            to read Cloud Storage.
        :param agent_arns: the DataSync agent(s) that reach
            ``storage.googleapis.com``. Required by the provider for this
            location type.
        :param destination: the S3 bucket to copy into (a ``ModelBucket`` or
            ``ModelBucket.from_bucket_name(...)``).
        :param mode: ``"full"``, ``"incremental"`` or ``"partial"``.
            Default: ``"incremental"``, new and changed objects only.
        :param source_prefix: copy only keys under this folder (ending in
            ``/``). Default: the whole bucket.
        :param destination_prefix: write under this folder. Default: the bucket root.
        :param include_prefixes: with ``mode="partial"``, copy only keys
            starting with one of these (relative to ``source_prefix``). Default: every key.
        :param exclude_prefixes: with ``mode="partial"``, skip keys starting
            with one of these. Default: none skipped.
        :param delete_unique_in_sink: with ``mode="full"``, delete destination
            objects the source no longer has (a mirror). DataSync can only
            delete after comparing, so the task then copies changed objects
            only. Default: kept.
        :param schedule: when the task runs. Default: never by itself.
        :param verify_mode: ``"ONLY_FILES_TRANSFERRED"`` or
            ``"POINT_IN_TIME_CONSISTENT"``. Default: ``"ONLY_FILES_TRANSFERRED"``.
        :param log_retention_days: days CloudWatch keeps the task logs (a
            value CloudWatch accepts). Default: 365.
        :param retain_on_destroy: keep the log key on ``terraform destroy``
            (``prevent_destroy``). Default: retained; ``False`` for dev/test.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        if checks.known(source_bucket_name):
            checks.require(isinstance(source_bucket_name, str) and bool(_GCS_BUCKET.match(source_bucket_name)),
                           f"source_bucket_name={source_bucket_name!r} is not a valid Cloud Storage bucket name; use 3-63 "
                           "lowercase letters, digits, '-', '_' or '.'")
        if checks.known(hmac_secret_id):
            checks.require(isinstance(hmac_secret_id, str) and hmac_secret_id.strip() != "",
                           f"hmac_secret_id={hmac_secret_id!r} is empty; pass the name or ARN of the Secrets Manager secret "
                           "holding the HMAC key (never the key itself)")
        if isinstance(agent_arns, str) or not agent_arns:
            checks.add(f"agent_arns={agent_arns!r} must be a non-empty list; pass the ARN(s) of the DataSync agent(s) that "
                       f"reach {GCS_XML_API_HOST}")
        else:
            bad = [a for a in agent_arns if checks.known(a) and not (isinstance(a, str) and _AGENT_ARN.match(a))]
            checks.require(not bad, f"agent_arns {bad!r} are not DataSync agent ARNs; use "
                                    "arn:aws:datasync:<region>:<account>:agent/agent-<17 characters>")
        if not is_bucket_of(destination, "aws"):
            checks.add(f"destination={type(destination).__name__} is not an S3 bucket; pass a lepton_cdk.aws.ModelBucket "
                       "or ModelBucket.from_bucket_name(...)")
        checks.require(verify_mode in VERIFY_MODES,
                       f"verify_mode={verify_mode!r} is not allowed; use one of {', '.join(VERIFY_MODES)} "
                       "(checksum verification stays on)")
        checks.require(log_retention_days in LOG_RETENTION_DAYS and not isinstance(log_retention_days, bool),
                       f"log_retention_days={log_retention_days!r} is not a CloudWatch retention; use one of "
                       f"{', '.join(map(str, LOG_RETENTION_DAYS))}")
        check_transfer_props(checks, mode=mode, source_prefix=source_prefix, destination_prefix=destination_prefix,
                             include_prefixes=include_prefixes, exclude_prefixes=exclude_prefixes,
                             delete_unique_in_sink=delete_unique_in_sink, schedule=schedule)
        checks.raise_if_any()

        self._mode = mode
        self.destination = destination
        self.schedule = schedule
        self.account = aws.data_aws_caller_identity.DataAwsCallerIdentity(self, "Account")
        self.region = aws.data_aws_region.DataAwsRegion(self, "Region")
        self.partition = aws.data_aws_partition.DataAwsPartition(self, "Partition")
        account, region, partition = self.account.account_id, self.region.name, self.partition.partition

        self._declare_logs(account, region, partition, log_retention_days, retain_on_destroy)

        secret = aws.data_aws_secretsmanager_secret_version.DataAwsSecretsmanagerSecretVersion(
            self, "HmacSecret", secret_id=hmac_secret_id)
        hmac = Fn.jsondecode(secret.secret_string)
        self.source = aws.datasync_location_object_storage.DatasyncLocationObjectStorage(
            self, "Source",
            agent_arns=list(agent_arns),
            server_hostname=GCS_XML_API_HOST,
            server_protocol="HTTPS",
            server_port=443,
            bucket_name=source_bucket_name,
            subdirectory=f"/{source_prefix}",
            access_key=Token.as_string(Fn.lookup(hmac, "access_key")),
            secret_key=Token.as_string(Fn.lookup(hmac, "secret_key")),
        )

        self.bucket_access_role = ServiceRole(self, "BucketAccessRole", service="datasync.amazonaws.com",
                                              description="lepton-cdk DataSync access to the destination bucket")
        self._grant_destination(destination, destination_prefix, delete_unique_in_sink)
        role_policy = self.bucket_access_role.policy
        self.destination_location = aws.datasync_location_s3.DatasyncLocationS3(
            self, "Destination",
            s3_bucket_arn=destination.bucket_arn,
            subdirectory=f"/{destination_prefix}",
            s3_config=aws.datasync_location_s3.DatasyncLocationS3S3Config(bucket_access_role_arn=self.bucket_access_role.role_arn),
            # DataSync checks the role's access when the location is created.
            depends_on=[role_policy],
        )

        t = aws.datasync_task
        if mode == "full":
            # DataSync cannot delete while transferring ALL (it does not scan the destination), so a mirror compares.
            transfer_mode = "CHANGED" if delete_unique_in_sink else "ALL"
        else:
            transfer_mode = "CHANGED"
        self.resource = t.DatasyncTask(
            self, "Resource",
            name=_TASK_NAME_UNSAFE.sub("-", f"lepton-cdk {self.node.path}")[:256],
            source_location_arn=self.source.arn,
            destination_location_arn=self.destination_location.arn,
            cloudwatch_log_group_arn=self.log_group.arn,
            options=t.DatasyncTaskOptions(
                verify_mode=verify_mode,
                transfer_mode=transfer_mode,
                overwrite_mode="ALWAYS",
                preserve_deleted_files="REMOVE" if delete_unique_in_sink else "PRESERVE",
                object_tags="NONE",
                log_level="TRANSFER",
            ),
            includes=t.DatasyncTaskIncludes(filter_type="SIMPLE_PATTERN", value=_filter(include_prefixes)) if include_prefixes else None,
            excludes=t.DatasyncTaskExcludes(filter_type="SIMPLE_PATTERN", value=_filter(exclude_prefixes)) if exclude_prefixes else None,
            schedule=t.DatasyncTaskSchedule(schedule_expression=schedule.cron_expression()) if schedule is not None else None,
            # DataSync checks it may write the log group when the task is created.
            depends_on=[self.log_policy],
        )

    def _declare_logs(self, account: str, region: str, partition: str, retention_days: int, retain_on_destroy: bool) -> None:
        log_groups = f"arn:{partition}:logs:{region}:{account}:log-group:*"
        key_policy = {"Version": "2012-10-17", "Statement": [
            # The account keeps full control of its key (the KMS default); IAM policies then decide who may use it.
            {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "CloudWatchLogsOfThisAccount", "Effect": "Allow", "Principal": {"Service": f"logs.{region}.amazonaws.com"},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                        "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"],
             "Resource": "*",
             "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}}},
        ]}
        self.log_key = aws.kms_key.KmsKey(
            self, "LogKey",
            description=f"lepton-cdk DataSync task logs ({self.node.path})",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=json.dumps(key_policy, separators=(",", ":")),
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if retain_on_destroy else None,
        )
        self.log_group = aws.cloudwatch_log_group.CloudwatchLogGroup(
            self, "LogGroup",
            name_prefix="/aws/datasync/lepton-",
            retention_in_days=retention_days,
            kms_key_id=self.log_key.arn,
        )
        policy = {"Version": "2012-10-17", "Statement": [{
            "Sid": "DataSyncTasksOfThisAccount", "Effect": "Allow", "Principal": {"Service": "datasync.amazonaws.com"},
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{self.log_group.arn}:*",
            "Condition": {"ArnLike": {"aws:SourceArn": f"arn:{partition}:datasync:{region}:{account}:task/*"},
                          "StringEquals": {"aws:SourceAccount": account}},
        }]}
        self.log_policy = aws.cloudwatch_log_resource_policy.CloudwatchLogResourcePolicy(
            self, "LogPolicy",
            # Resource policy names are per account and region: the construct's address keeps them apart.
            policy_name=f"lepton-datasync-{self.node.addr[:12]}",
            policy_document=json.dumps(policy, separators=(",", ":")),
        )

    def _grant_destination(self, destination: IAwsBucket, prefix: str, delete: bool) -> None:
        role = self.bucket_access_role
        destination.grant_write(role, key_prefix=prefix)  # PutObject, AbortMultipartUpload (+ the bucket key via S3)
        objects = destination.arn_for_objects(f"{prefix}*")
        # Reading back what it wrote is how DataSync compares (CHANGED) and verifies checksums.
        object_actions = ["s3:GetObject", "s3:ListMultipartUploadParts"] + (["s3:DeleteObject"] if delete else [])
        role.add_to_principal_policy(PolicyStatement(actions=object_actions, resources=[objects]))
        role.add_to_principal_policy(PolicyStatement(
            actions=["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"], resources=[destination.bucket_arn]))
        # Listing is limited to the prefix (a separate statement: the other bucket actions carry no s3:prefix key).
        role.add_to_principal_policy(PolicyStatement(
            actions=["s3:ListBucket"], resources=[destination.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}} if prefix else {},
        ))

    @property
    def mode(self) -> str:
        """The migration mode."""
        return self._mode

    @property
    def task_arn(self) -> str:
        """The DataSync task's ARN (what ``start-task-execution`` and CloudWatch metrics name)."""
        return self.resource.arn

    @property
    def transfer_id(self) -> str:
        """Same as :attr:`task_arn` (the :class:`~lepton_cdk.core.IDataTransferJob` handle)."""
        return self.task_arn

    @property
    def log_group_name(self) -> str:
        """The CloudWatch log group holding the task's per-object logs."""
        return self.log_group.name
