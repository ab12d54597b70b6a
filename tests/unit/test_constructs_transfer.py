"""DataTransferJob on both clouds: defaults, each mode, each override, validation, secrets, logical ids.

Asserted on synthesized JSON. Every scenario is built in one module-scoped
app (one jsii kernel, one synth per stack). AWS DataSync cannot be applied
against moto (moto lacks DataSync's tag calls), so the AWS stack's proof
beyond this JSON is ``terraform validate`` with the real AWS provider 5.100.0
and checkov, in tests/integration/test_reference_stacks.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from lepton_cdk import aws as lepton_aws
from lepton_cdk import gcp as lepton_gcp
from lepton_cdk.core import ConstructValidationError, IDataTransferJob, TransferSchedule
from lepton_cdk.core.framework import TerraformOutput, TerraformStack, aws, google
from lepton_cdk.core.framework import Testing as CdktfTesting
from tests.support.synth import logical_ids, only, ref

AGENT = "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0"
ROLE = "arn:aws:iam::123456789012:role/lepton-storage-transfer"
SECRET_ID = "lepton/gcs-hmac"
START = dt.date(2027, 1, 4)


def _aws_stack(app, name):
    stack = TerraformStack(app, name)
    aws.provider.AwsProvider(stack, "aws", region="us-east-1")
    return stack


def _gcp_stack(app, name):
    stack = TerraformStack(app, name)
    google.provider.GoogleProvider(stack, "google", project="lepton-demo", region="us-central1")
    return stack


def _aws_job(stack, bucket=None, **props):
    bucket = bucket or lepton_aws.ModelBucket(stack, "Bucket")
    return lepton_aws.DataTransferJob(stack, "Transfer", source_bucket_name="acme-source", hmac_secret_id=SECRET_ID,
                                      agent_arns=[AGENT], destination=bucket, **props)


def _gcp_job(stack, bucket=None, **props):
    bucket = bucket or lepton_gcp.ModelBucket(stack, "Bucket")
    return lepton_gcp.DataTransferJob(stack, "Transfer", source_bucket_name="acme-source", source_role_arn=ROLE,
                                      destination=bucket, **props)


SCENARIOS = {
    "aws-defaults": lambda app: _aws_job(_aws_stack(app, "aws-defaults")),
    "aws-full": lambda app: _aws_job(_aws_stack(app, "aws-full"), mode="full"),
    "aws-mirror": lambda app: _aws_job(
        _aws_stack(app, "aws-mirror"), mode="full", delete_unique_in_sink=True, verify_mode="POINT_IN_TIME_CONSISTENT",
        source_prefix="exports/", destination_prefix="datasets/", schedule=TransferSchedule.every(6, START, at=dt.time(3, 15)),
        log_retention_days=30, retain_on_destroy=False),
    "aws-partial": lambda app: _aws_job(
        _aws_stack(app, "aws-partial"), mode="partial", include_prefixes=["images/", "labels/"], exclude_prefixes=["images/tmp/"],
        schedule=TransferSchedule.once(START, at=dt.time(22, 30))),
    "aws-imported": lambda app: (lambda s: _aws_job(s, lepton_aws.ModelBucket.from_bucket_name(s, "Existing", "acme-existing")))(
        _aws_stack(app, "aws-imported")),
    "gcp-defaults": lambda app: _gcp_job(_gcp_stack(app, "gcp-defaults")),
    "gcp-mirror": lambda app: _gcp_job(
        _gcp_stack(app, "gcp-mirror"), mode="full", delete_unique_in_sink=True, source_prefix="exports/", destination_prefix="datasets/",
        schedule=TransferSchedule.daily(START), description="nightly mirror"),
    "gcp-partial": lambda app: _gcp_job(
        _gcp_stack(app, "gcp-partial"), mode="partial", include_prefixes=["images/"], exclude_prefixes=["images/tmp/"],
        schedule=TransferSchedule.once(START, at=dt.time(22, 30))),
    "gcp-imported": lambda app: (lambda s: _gcp_job(s, lepton_gcp.ModelBucket.from_bucket_name(s, "Existing", "acme-existing"),
                                                    kms_key_id="projects/p/locations/us/keyRings/r/cryptoKeys/k"))(
        _gcp_stack(app, "gcp-imported")),
    "gcp-imported-nokey": lambda app: (lambda s: _gcp_job(s, lepton_gcp.ModelBucket.from_bucket_name(s, "Existing", "acme-existing")))(
        _gcp_stack(app, "gcp-imported-nokey")),
}


@pytest.fixture(scope="module")
def synthed():
    """{scenario: (synthesized JSON, the DataTransferJob)}, all from one app."""
    app = CdktfTesting.app()
    jobs = {name: build(app) for name, build in SCENARIOS.items()}
    for job in jobs.values():  # the handles monitoring uses, as outputs, to see what they reference
        TerraformOutput(job.node.scope, "transfer_id", value=job.transfer_id)
        if isinstance(job, lepton_aws.DataTransferJob):
            TerraformOutput(job.node.scope, "task_arn", value=job.task_arn)
        else:
            TerraformOutput(job.node.scope, "job_name", value=job.job_name)
            TerraformOutput(job.node.scope, "federation_subject_id", value=job.federation_subject_id)
    return {name: (json.loads(CdktfTesting.synth(job.node.scope, True)), job) for name, job in jobs.items()}


def _task(doc):
    return only(doc, "aws_datasync_task")


def _role_statements(doc):
    policies = {k: v for k, v in doc["resource"]["aws_iam_role_policy"].items() if k.startswith("Transfer_BucketAccessRole_")}
    [policy] = policies.values()
    return json.loads(policy["policy"])["Statement"]


# -- AWS DataSync ------------------------------------------------------------------------------------------------


def test_aws_defaults_copy_changed_objects_keep_the_rest_and_verify_checksums(synthed):
    doc, job = synthed["aws-defaults"]
    task = _task(doc)
    assert task["options"] == {"verify_mode": "ONLY_FILES_TRANSFERRED", "transfer_mode": "CHANGED", "overwrite_mode": "ALWAYS",
                               "preserve_deleted_files": "PRESERVE", "object_tags": "NONE", "log_level": "TRANSFER"}
    assert "schedule" not in task and "includes" not in task and "excludes" not in task
    assert task["source_location_arn"] == ref("aws_datasync_location_object_storage", "Transfer_Source_C7A6F174", "arn")
    assert task["destination_location_arn"] == ref("aws_datasync_location_s3", "Transfer_Destination_18DFC16A", "arn")
    assert job.mode == "incremental" and isinstance(job, IDataTransferJob)
    assert doc["output"]["task_arn"]["value"] == doc["output"]["transfer_id"]["value"] == ref("aws_datasync_task", "Transfer_DCE8283A", "arn")


def test_aws_source_is_cloud_storage_over_https_through_the_agent(synthed):
    doc, _ = synthed["aws-defaults"]
    source = only(doc, "aws_datasync_location_object_storage")
    assert {k: source[k] for k in ("server_hostname", "server_protocol", "server_port", "bucket_name", "subdirectory", "agent_arns")} == {
        "server_hostname": "storage.googleapis.com", "server_protocol": "HTTPS", "server_port": 443, "bucket_name": "acme-source",
        "subdirectory": "/", "agent_arns": [AGENT]}


def test_aws_hmac_credentials_are_references_to_secrets_manager_never_values(synthed):
    doc, _ = synthed["aws-defaults"]
    source = only(doc, "aws_datasync_location_object_storage")
    secret = only(doc, "aws_secretsmanager_secret_version", section="data")
    assert secret == {"secret_id": SECRET_ID}
    decoded = "jsondecode(data.aws_secretsmanager_secret_version.Transfer_HmacSecret_86B796C1.secret_string)"
    assert source["access_key"] == f"${{{decoded}.access_key}}"
    assert source["secret_key"] == f"${{{decoded}.secret_key}}"
    text = json.dumps(doc)
    # No literal credential anywhere: no GOOG HMAC access id, no 40-character base64 secret, no variable default.
    assert not re.search(r"GOOG[0-9A-Z]{20,}", text) and not re.search(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])", text)
    assert "variable" not in doc


def test_aws_destination_role_is_limited_to_the_bucket_and_prefix(synthed):
    doc, _ = synthed["aws-mirror"]
    bucket_arn = ref("aws_s3_bucket", "Bucket_83908E77", "arn")
    statements = _role_statements(doc)
    by_actions = {tuple(s["Action"]) if isinstance(s["Action"], list) else (s["Action"],): s for s in statements}
    assert by_actions[("s3:PutObject", "s3:AbortMultipartUpload")]["Resource"] == f"{bucket_arn}/datasets/*"
    assert by_actions[("s3:GetObject", "s3:ListMultipartUploadParts", "s3:DeleteObject")]["Resource"] == f"{bucket_arn}/datasets/*"
    assert by_actions[("s3:ListBucket",)] == {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
                                               "Condition": {"StringLike": {"s3:prefix": ["datasets/*"]}}}
    kms = by_actions[("kms:GenerateDataKey", "kms:Decrypt")]
    assert kms["Resource"] == ref("aws_kms_key", "Bucket_Key_AACFFC7B", "arn") and "kms:ViaService" in kms["Condition"]["StringEquals"]
    assert all("*" not in a.split(":", 1)[1] for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    trust = json.loads(only(doc, "aws_iam_role")["assume_role_policy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "datasync.amazonaws.com"}
    location = only(doc, "aws_datasync_location_s3")
    assert location["subdirectory"] == "/datasets/" and location["s3_bucket_arn"] == bucket_arn
    assert location["depends_on"] == ["aws_iam_role_policy.Transfer_BucketAccessRole_Policy_F7AF3CAB"]


def test_aws_incremental_never_grants_delete(synthed):
    doc, _ = synthed["aws-defaults"]
    actions = {a for s in _role_statements(doc) for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "s3:DeleteObject" not in actions and {"s3:PutObject", "s3:GetObject", "s3:ListBucket"} <= actions
    listing = [s for s in _role_statements(doc) if s["Action"] == "s3:ListBucket"]
    assert listing and "Condition" not in listing[0]  # whole bucket when no destination prefix is set


def test_aws_full_copies_everything_and_keeps_destination_only_objects(synthed):
    doc, _ = synthed["aws-full"]
    options = _task(doc)["options"]
    assert (options["transfer_mode"], options["preserve_deleted_files"], options["overwrite_mode"]) == ("ALL", "PRESERVE", "ALWAYS")


def test_aws_mirror_deletes_only_when_asked_and_compares_to_do_it(synthed):
    doc, job = synthed["aws-mirror"]
    task = _task(doc)
    # DataSync refuses REMOVE with TransferMode ALL: a mirror compares the locations instead.
    assert (task["options"]["transfer_mode"], task["options"]["preserve_deleted_files"]) == ("CHANGED", "REMOVE")
    assert task["options"]["verify_mode"] == "POINT_IN_TIME_CONSISTENT"
    assert task["schedule"] == {"schedule_expression": "cron(15 3/6 * * ? *)"}
    assert only(doc, "aws_datasync_location_object_storage")["subdirectory"] == "/exports/"
    assert only(doc, "aws_cloudwatch_log_group")["retention_in_days"] == 30
    assert "lifecycle" not in doc["resource"]["aws_kms_key"]["Transfer_LogKey_9E42D995"]
    assert job.mode == "full"


def test_aws_partial_filters_prefixes_relative_to_the_source_and_runs_once(synthed):
    doc, _ = synthed["aws-partial"]
    task = _task(doc)
    assert task["includes"] == {"filter_type": "SIMPLE_PATTERN", "value": "/images/*|/labels/*"}
    assert task["excludes"] == {"filter_type": "SIMPLE_PATTERN", "value": "/images/tmp/*"}
    assert task["options"]["transfer_mode"] == "CHANGED" and task["options"]["preserve_deleted_files"] == "PRESERVE"
    assert task["schedule"] == {"schedule_expression": "cron(30 22 4 1 ? 2027)"}


def test_aws_logs_are_encrypted_retained_and_writable_by_datasync_only(synthed):
    doc, _ = synthed["aws-defaults"]
    group = only(doc, "aws_cloudwatch_log_group")
    key_id = "Transfer_LogKey_9E42D995"
    key = doc["resource"]["aws_kms_key"][key_id]
    assert group == {"name_prefix": "/aws/datasync/lepton-", "retention_in_days": 365, "kms_key_id": ref("aws_kms_key", key_id, "arn")}
    assert key["enable_key_rotation"] is True and key["lifecycle"] == {"prevent_destroy": True}
    logs_statement = json.loads(key["policy"])["Statement"][1]
    assert logs_statement["Principal"] == {"Service": "logs.${data.aws_region.Transfer_Region_3247D2CA.name}.amazonaws.com"}
    assert "kms:EncryptionContext:aws:logs:arn" in logs_statement["Condition"]["ArnLike"]
    assert _task(doc)["cloudwatch_log_group_arn"] == ref("aws_cloudwatch_log_group", "Transfer_LogGroup_B73A5961", "arn")
    policy = json.loads(only(doc, "aws_cloudwatch_log_resource_policy")["policy_document"])["Statement"][0]
    assert policy["Principal"] == {"Service": "datasync.amazonaws.com"} and policy["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert policy["Resource"] == ref("aws_cloudwatch_log_group", "Transfer_LogGroup_B73A5961", "arn") + ":*"
    assert set(policy["Condition"]) == {"ArnLike", "StringEquals"}
    assert _task(doc)["depends_on"] == ["aws_cloudwatch_log_resource_policy.Transfer_LogPolicy_0F19365F"]


def test_aws_imported_bucket_destination_gets_no_key_statement(synthed):
    doc, _ = synthed["aws-imported"]
    statements = _role_statements(doc)
    assert not [s for s in statements if any(str(a).startswith("kms:") for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))]
    assert only(doc, "aws_datasync_location_s3")["s3_bucket_arn"].endswith(":s3:::acme-existing")


def test_aws_logical_ids_are_pinned(synthed):
    doc, _ = synthed["aws-defaults"]
    transfer = {i for i in logical_ids(doc) | logical_ids(doc, "data") if ".Transfer_" in i}
    assert transfer == {
        "aws_datasync_task.Transfer_DCE8283A", "aws_datasync_location_object_storage.Transfer_Source_C7A6F174",
        "aws_datasync_location_s3.Transfer_Destination_18DFC16A", "aws_iam_role.Transfer_BucketAccessRole_B19D068C",
        "aws_iam_role_policy.Transfer_BucketAccessRole_Policy_F7AF3CAB", "aws_kms_key.Transfer_LogKey_9E42D995",
        "aws_cloudwatch_log_group.Transfer_LogGroup_B73A5961", "aws_cloudwatch_log_resource_policy.Transfer_LogPolicy_0F19365F",
        "aws_secretsmanager_secret_version.Transfer_HmacSecret_86B796C1", "aws_caller_identity.Transfer_Account_3EF146A7",
        "aws_region.Transfer_Region_3247D2CA", "aws_partition.Transfer_Partition_60B95104",
    }


# -- GCP Storage Transfer Service ------------------------------------------------------------------------------


def _sts(doc):
    return only(doc, "google_storage_transfer_job")


def test_gcp_defaults_federate_into_s3_copy_changed_objects_and_log_every_action(synthed):
    doc, job = synthed["gcp-defaults"]
    sts = _sts(doc)
    spec = sts["transfer_spec"]
    assert spec["aws_s3_data_source"] == {"bucket_name": "acme-source", "role_arn": ROLE}  # no aws_access_key block
    assert spec["gcs_data_sink"] == {"bucket_name": ref("google_storage_bucket", "Bucket_83908E77", "name")}
    assert spec["transfer_options"] == {"overwrite_objects_already_existing_in_sink": False, "overwrite_when": "DIFFERENT",
                                        "delete_objects_unique_in_sink": False, "delete_objects_from_source_after_transfer": False}
    assert "object_conditions" not in spec and "schedule" not in sts
    assert sts["status"] == "ENABLED" and sts["description"] == "lepton-cdk gcp-defaults/Transfer"
    assert sts["logging_config"] == {"log_actions": ["FIND", "COPY", "DELETE"], "log_action_states": ["SUCCEEDED", "FAILED"]}
    assert job.mode == "incremental" and isinstance(job, IDataTransferJob)
    assert doc["output"]["job_name"]["value"] == doc["output"]["transfer_id"]["value"] == ref("google_storage_transfer_job", "Transfer_DCE8283A", "name")


def test_gcp_service_agent_gets_sink_writer_reader_and_key_grants_before_the_job(synthed):
    doc, job = synthed["gcp-defaults"]
    agent = "${data.google_storage_transfer_project_service_account.Transfer_ServiceAgent_2B2623F2.member}"
    members = {k: v for k, v in doc["resource"]["google_storage_bucket_iam_member"].items() if k.startswith("Transfer_")}
    assert {v["role"] for v in members.values()} == {"roles/storage.legacyBucketWriter", "roles/storage.objectViewer"}
    assert all(v["member"] == agent and v["bucket"] == ref("google_storage_bucket", "Bucket_83908E77", "name") for v in members.values())
    key = doc["resource"]["google_kms_crypto_key_iam_member"]["Transfer_SinkKeyAccess_A2C52F9B"]
    assert key == {"crypto_key_id": ref("google_kms_crypto_key", "Bucket_Key_AACFFC7B", "id"), "member": agent,
                   "role": "roles/cloudkms.cryptoKeyEncrypterDecrypter"}
    assert set(_sts(doc)["depends_on"]) == {"google_storage_bucket_iam_member.Transfer_SinkWriter_861EF8A0",
                                            "google_storage_bucket_iam_member.Transfer_SinkReader_48BB1343",
                                            "google_kms_crypto_key_iam_member.Transfer_SinkKeyAccess_A2C52F9B"}
    assert not [r for r in doc["resource"] if r.startswith("google_project_iam")]
    assert doc["output"]["federation_subject_id"]["value"] == \
        "${data.google_storage_transfer_project_service_account.Transfer_ServiceAgent_2B2623F2.subject_id}"


def test_gcp_mirror_overwrites_deletes_when_asked_and_repeats_daily(synthed):
    doc, _ = synthed["gcp-mirror"]
    sts = _sts(doc)
    assert sts["transfer_spec"]["transfer_options"] == {
        "overwrite_objects_already_existing_in_sink": True, "overwrite_when": "ALWAYS",
        "delete_objects_unique_in_sink": True, "delete_objects_from_source_after_transfer": False}
    assert sts["transfer_spec"]["aws_s3_data_source"]["path"] == "exports/"
    assert sts["transfer_spec"]["gcs_data_sink"]["path"] == "datasets/"
    assert sts["schedule"] == {"schedule_start_date": {"year": 2027, "month": 1, "day": 4}, "repeat_interval": "86400s",
                               "start_time_of_day": {"hours": 2, "minutes": 0, "seconds": 0, "nanos": 0}}
    assert sts["description"] == "nightly mirror"
    # A full copy overwrites without comparing: the agent does not need to read the sink's objects.
    roles = {v["role"] for k, v in doc["resource"]["google_storage_bucket_iam_member"].items() if k.startswith("Transfer_")}
    assert roles == {"roles/storage.legacyBucketWriter"}


def test_gcp_partial_filters_and_runs_once(synthed):
    doc, _ = synthed["gcp-partial"]
    sts = _sts(doc)
    assert sts["transfer_spec"]["object_conditions"] == {"include_prefixes": ["images/"], "exclude_prefixes": ["images/tmp/"]}
    once = {"year": 2027, "month": 1, "day": 4}
    assert sts["schedule"] == {"schedule_start_date": once, "schedule_end_date": once,
                               "start_time_of_day": {"hours": 22, "minutes": 30, "seconds": 0, "nanos": 0}}


def test_gcp_imported_destination_key_comes_from_the_prop_or_is_not_granted(synthed):
    doc, _ = synthed["gcp-imported"]
    assert only(doc, "google_kms_crypto_key_iam_member")["crypto_key_id"] == "projects/p/locations/us/keyRings/r/cryptoKeys/k"
    assert _sts(doc)["transfer_spec"]["gcs_data_sink"] == {"bucket_name": "acme-existing"}
    nokey, _ = synthed["gcp-imported-nokey"]
    assert "google_kms_crypto_key_iam_member" not in nokey["resource"]


def test_gcp_logical_ids_are_pinned(synthed):
    doc, _ = synthed["gcp-defaults"]
    transfer = {i for i in logical_ids(doc) | logical_ids(doc, "data") if ".Transfer_" in i}
    assert transfer == {
        "google_storage_transfer_job.Transfer_DCE8283A", "google_storage_bucket_iam_member.Transfer_SinkWriter_861EF8A0",
        "google_storage_bucket_iam_member.Transfer_SinkReader_48BB1343", "google_kms_crypto_key_iam_member.Transfer_SinkKeyAccess_A2C52F9B",
        "google_storage_transfer_project_service_account.Transfer_ServiceAgent_2B2623F2",
    }


# -- validation (no synth needed: __init__ raises) ---------------------------------------------------------------


def test_aws_validation_reports_every_problem_at_once():
    stack = _aws_stack(CdktfTesting.app(), "bad")
    bucket = lepton_aws.ModelBucket(stack, "Bucket")
    with pytest.raises(ConstructValidationError) as err:
        lepton_aws.DataTransferJob(stack, "Transfer", source_bucket_name="Bad Bucket", hmac_secret_id=" ", agent_arns=["agent-1"],
                                   destination=bucket, mode="mirror", source_prefix="/exports", include_prefixes=["a/"],
                                   delete_unique_in_sink=True, verify_mode="NONE", log_retention_days=42,
                                   schedule=TransferSchedule.every(5, START))
    problems = err.value.problems
    expected = ["source_bucket_name='Bad Bucket'", "hmac_secret_id=' '", "agent_arns ['agent-1']", "verify_mode='NONE'",
                "log_retention_days=42", "mode='mirror'", "source_prefix='/exports'", "delete_unique_in_sink=True needs mode='full'",
                "schedule.repeat_hours=5"]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert len(problems) == len(expected)
    assert str(err.value).startswith("bad/Transfer: 9 problems: (1) ")


def test_gcp_validation_reports_every_problem_at_once():
    stack = _gcp_stack(CdktfTesting.app(), "bad")
    with pytest.raises(ConstructValidationError) as err:
        lepton_gcp.DataTransferJob(stack, "Transfer", source_bucket_name="ok-bucket", source_role_arn="AKIAIOSFODNN7EXAMPLE",
                                   destination="gs://not-a-bucket-object", mode="partial", destination_prefix="datasets",
                                   include_prefixes=["images/", "images/train/"], exclude_prefixes=["labels/"],
                                   schedule=TransferSchedule.once(START, at=dt.time(1, 2, 3)))
    problems = err.value.problems
    expected = ["source_role_arn='AKIAIOSFODNN7EXAMPLE'", "destination=str", "destination_prefix='datasets' must end with '/'",
                "include_prefixes has 'images/train/' inside 'images/'", "exclude_prefixes ['labels/'] start with none",
                "schedule.start_time=01:02:03 has seconds"]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert len(problems) == len(expected)


@pytest.mark.parametrize("props, message", [
    ({"mode": "partial"}, "mode='partial' needs include_prefixes and/or exclude_prefixes"),
    ({"mode": "incremental", "exclude_prefixes": ["tmp/"]}, "only used with mode='partial'"),
    ({"mode": "partial", "include_prefixes": "images/"}, "include_prefixes='images/' is a string"),
    ({"mode": "partial", "include_prefixes": [""]}, "matches every object"),
    ({"schedule": "daily"}, "is not a TransferSchedule"),
])
def test_mode_filter_and_schedule_combinations_that_cannot_work_are_refused(props, message):
    stack = _gcp_stack(CdktfTesting.app(), "bad")
    with pytest.raises(ConstructValidationError, match=re.escape(message)):
        _gcp_job(stack, lepton_gcp.ModelBucket.from_bucket_name(stack, "Existing", "acme-existing"), **props)


def test_a_bucket_of_the_wrong_cloud_is_refused():
    gstack = _gcp_stack(CdktfTesting.app(), "bad")
    s3 = type("FakeS3Bucket", (), {"bucket_name": "acme", "bucket_arn": "arn:aws:s3:::acme"})()
    with pytest.raises(ConstructValidationError, match="destination=FakeS3Bucket is not a Cloud Storage bucket"):
        _gcp_job(gstack, s3)
    astack = _aws_stack(CdktfTesting.app(), "bad")
    with pytest.raises(ConstructValidationError, match="destination=ImportedModelBucket is not an S3 bucket"):
        _aws_job(astack, lepton_gcp.ModelBucket.from_bucket_name(astack, "Gcs", "acme-gcs"))


def test_schedules_as_datasync_cron_expressions():
    assert TransferSchedule.once(dt.date(2027, 3, 14), at=dt.time(2, 30)).cron_expression() == "cron(30 2 14 3 ? 2027)"
    assert TransferSchedule.daily(START).cron_expression() == "cron(0 2 * * ? *)"
    assert TransferSchedule.every(12, START, at=dt.time(13, 5)).cron_expression() == "cron(5 1/12 * * ? *)"
    assert TransferSchedule.every(1, START).cron_expression() == "cron(0 0/1 * * ? *)"
    assert not TransferSchedule.daily(START).problems() and TransferSchedule.every(7, START).problems()
