"""AWS constructs: secure defaults, overrides, validation and logical ids, asserted on synthesized JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lepton_cdk.aws import DEEP_LEARNING_AMI_PARAMETER, AccessLogBucket, GpuNodeGroup, ModelArtifacts, ModelBucket, ServiceRole
from lepton_cdk.contract import ChecksumMismatchError, ContractError, read_manifest
from lepton_cdk.core import ConstructValidationError, IBucket, IGpuNodeGroup, IModelArtifacts
from lepton_cdk.core.framework import TerraformVariable, aws
from tests.support.manifests import write_fake_manifest
from tests.support.synth import at, logical_ids, only, ref, resources, synth_json

BUCKET = "ModelBucket_B33D855B"
KEY = "ModelBucket_Key_C4835771"
LOG_BUCKET = "ModelBucket_AccessLogs_94B93479"


def aws_provider(stack):
    return aws.provider.AwsProvider(stack, "aws", region="us-east-1")


def synth(build):
    return synth_json(build, provider=aws_provider)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    return write_fake_manifest(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def defaults(manifest_path):
    """Every construct with its defaults: (synthesized JSON, (bucket, artifacts, nodes))."""

    def build(stack):
        bucket = ModelBucket(stack, "ModelBucket")
        artifacts = bucket.upload_artifacts(manifest_path)
        nodes = GpuNodeGroup(stack, "GpuNodes", model=artifacts)
        return bucket, artifacts, nodes

    return synth(build)


# -- ModelBucket -------------------------------------------------------------------------------------------------


def test_bucket_encrypts_with_a_rotating_customer_key_and_bucket_keys(defaults):
    doc, _ = defaults
    key = only(doc, "aws_kms_key")
    assert key["enable_key_rotation"] is True
    assert key["deletion_window_in_days"] == 30
    assert only(doc, "aws_kms_alias")["name_prefix"] == "alias/lepton-models-"
    rule = at(doc, "aws_s3_bucket_server_side_encryption_configuration", "ModelBucket/Encryption")["rule"][0]
    assert rule["apply_server_side_encryption_by_default"] == {"sse_algorithm": "aws:kms", "kms_master_key_id": ref("aws_kms_key", KEY, "arn")}
    assert rule["bucket_key_enabled"] is True


def test_bucket_blocks_all_public_access_and_disables_acls(defaults):
    doc, _ = defaults
    block = at(doc, "aws_s3_bucket_public_access_block", "ModelBucket/PublicAccessBlock")
    assert {k: block[k] for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")} == dict.fromkeys(
        ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"), True)
    assert at(doc, "aws_s3_bucket_ownership_controls", "ModelBucket/OwnershipControls")["rule"] == {"object_ownership": "BucketOwnerEnforced"}


def test_bucket_is_versioned(defaults):
    doc, _ = defaults
    assert at(doc, "aws_s3_bucket_versioning", "ModelBucket/Versioning")["versioning_configuration"] == {"status": "Enabled"}


def test_bucket_policy_denies_every_request_without_tls(defaults):
    doc, _ = defaults
    policy = at(doc, "aws_s3_bucket_policy", "ModelBucket/Policy")
    statement = json.loads(policy["policy"])["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "s3:*"
    arn = ref("aws_s3_bucket", BUCKET, "arn")
    assert statement["Resource"] == [arn, f"{arn}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert policy["depends_on"] == ["aws_s3_bucket_public_access_block.ModelBucket_PublicAccessBlock_B5DFBE36"]


def test_bucket_and_key_are_retained_on_destroy_by_default(defaults):
    doc, _ = defaults
    bucket = at(doc, "aws_s3_bucket", "ModelBucket/Resource")
    assert bucket["lifecycle"] == {"prevent_destroy": True}
    assert bucket["force_destroy"] is False
    assert bucket["bucket_prefix"] == "lepton-models-" and "bucket" not in bucket
    assert only(doc, "aws_kms_key")["lifecycle"] == {"prevent_destroy": True}


def test_bucket_overrides(manifest_path):
    doc, bucket = synth(lambda s: ModelBucket(s, "ModelBucket", bucket_name="acme-models", versioned=False, retain_on_destroy=False,
                                              key_deletion_window_days=7, enforce_tls=False))
    b = at(doc, "aws_s3_bucket", "ModelBucket/Resource")
    assert b["bucket"] == "acme-models" and "bucket_prefix" not in b
    assert b["force_destroy"] is True and "lifecycle" not in b
    assert "lifecycle" not in only(doc, "aws_kms_key")
    assert only(doc, "aws_kms_key")["deletion_window_in_days"] == 7
    assert at(doc, "aws_s3_bucket_versioning", "ModelBucket/Versioning")["versioning_configuration"] == {"status": "Suspended"}
    assert [name for name in resources(doc, "aws_s3_bucket_policy") if not name.startswith("ModelBucket_AccessLogs_")] == []
    log_statements = json.loads(at(doc, "aws_s3_bucket_policy", "ModelBucket/AccessLogs/Policy")["policy"])["Statement"]
    assert [st["Sid"] for st in log_statements] == ["AllowS3ServerAccessLogs"]
    assert bucket.policy is None and bucket.policy not in bucket.object_dependencies


def test_bucket_validation_reports_every_problem_once(tmp_path):
    with pytest.raises(ConstructValidationError) as err:
        synth(lambda s: ModelBucket(s, "ModelBucket", bucket_name="Bad_Name", key_deletion_window_days=3))
    message = str(err.value)
    assert err.value.problems and len(err.value.problems) == 2
    assert "test/ModelBucket" in message
    assert "bucket_name='Bad_Name'" in message and "lowercase" in message
    assert "key_deletion_window_days=3" in message and "between 7 and 30" in message


@pytest.mark.parametrize("name, fix", [("my.models", "use '-' instead"), ("192.168.1.1", "IP address"), ("xn--models", "reserved")])
def test_bucket_name_rules(name, fix):
    with pytest.raises(ConstructValidationError, match=fix):
        synth(lambda s: ModelBucket(s, "ModelBucket", bucket_name=name))


def test_bucket_name_from_a_token_is_not_validated():
    def build(stack):
        name = TerraformVariable(stack, "name", type="string")
        return ModelBucket(stack, "ModelBucket", bucket_name=name.string_value)

    doc, _ = synth(build)
    assert at(doc, "aws_s3_bucket", "ModelBucket/Resource")["bucket"] == "${var.name}"


def test_bucket_satisfies_the_cloud_neutral_protocols(defaults):
    _, (bucket, artifacts, nodes) = defaults
    assert isinstance(bucket, IBucket)
    assert isinstance(artifacts, IModelArtifacts)
    assert isinstance(nodes, IGpuNodeGroup)


def rules_by_id(lifecycle: dict) -> dict[str, dict]:
    return {rule["id"]: rule for rule in lifecycle["rule"]}


def test_bucket_lifecycle_aborts_stale_uploads_and_expires_old_versions_by_default(defaults):
    doc, _ = defaults
    lifecycle = at(doc, "aws_s3_bucket_lifecycle_configuration", "ModelBucket/Lifecycle")
    assert lifecycle["bucket"] == ref("aws_s3_bucket", BUCKET, "id")
    assert lifecycle["depends_on"] == ["aws_s3_bucket_versioning.ModelBucket_Versioning_93F06AC2"]
    rules = rules_by_id(lifecycle)
    assert set(rules) == {"abort-incomplete-multipart-uploads", "expire-noncurrent-versions"}
    assert all(r["status"] == "Enabled" and r["filter"] == [{"prefix": ""}] for r in rules.values())
    assert rules["abort-incomplete-multipart-uploads"]["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 7}]
    assert rules["expire-noncurrent-versions"]["noncurrent_version_expiration"] == [{"noncurrent_days": 90}]
    assert "expiration" not in rules["expire-noncurrent-versions"], "current model versions must never expire"


def test_bucket_logs_access_to_a_private_sse_s3_log_bucket_by_default(defaults):
    doc, (bucket, _, _) = defaults
    logging = only(doc, "aws_s3_bucket_logging")
    assert logging["bucket"] == ref("aws_s3_bucket", BUCKET, "id")
    assert logging["target_bucket"] == ref("aws_s3_bucket", LOG_BUCKET, "bucket")
    assert logging["target_prefix"] == ref("aws_s3_bucket", BUCKET, "bucket") + "/"
    assert "aws_s3_bucket_policy.ModelBucket_AccessLogs_Policy_B48C30E2" in logging["depends_on"]
    assert isinstance(bucket.access_log_bucket, AccessLogBucket) and isinstance(bucket.access_log_bucket, IBucket)

    logs = at(doc, "aws_s3_bucket", "ModelBucket/AccessLogs/Resource")
    assert logs["bucket_prefix"] == "lepton-access-logs-"
    assert logs["lifecycle"] == {"prevent_destroy": True} and logs["force_destroy"] is False
    (rule,) = at(doc, "aws_s3_bucket_server_side_encryption_configuration", "ModelBucket/AccessLogs/Encryption")["rule"]
    assert rule["apply_server_side_encryption_by_default"] == {"sse_algorithm": "AES256"}
    assert at(doc, "aws_s3_bucket_versioning", "ModelBucket/AccessLogs/Versioning")["versioning_configuration"] == {"status": "Enabled"}
    block = at(doc, "aws_s3_bucket_public_access_block", "ModelBucket/AccessLogs/PublicAccessBlock")
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"))
    assert at(doc, "aws_s3_bucket_ownership_controls", "ModelBucket/AccessLogs/OwnershipControls")["rule"] == {
        "object_ownership": "BucketOwnerEnforced"}

    allow, deny = json.loads(at(doc, "aws_s3_bucket_policy", "ModelBucket/AccessLogs/Policy")["policy"])["Statement"]
    log_arn = ref("aws_s3_bucket", LOG_BUCKET, "arn")
    assert allow == {
        "Sid": "AllowS3ServerAccessLogs", "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject", "Resource": f"{log_arn}/*",
        "Condition": {"StringEquals": {"aws:SourceAccount": "${data.aws_caller_identity.ModelBucket_AccessLogs_Account_F9D04027.account_id}"}},
    }
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [log_arn, f"{log_arn}/*"]

    rules = rules_by_id(at(doc, "aws_s3_bucket_lifecycle_configuration", "ModelBucket/AccessLogs/Lifecycle"))
    assert rules["expire-objects"]["expiration"] == [{"days": 365}]
    assert rules["expire-noncurrent-versions"]["noncurrent_version_expiration"] == [{"noncurrent_days": 30}]
    assert rules["abort-incomplete-multipart-uploads"]["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 7}]


def test_lifecycle_and_access_log_overrides():
    doc, _ = synth(lambda s: ModelBucket(s, "ModelBucket", abort_incomplete_upload_days=2, noncurrent_version_expiration_days=None,
                                         access_log_retention_days=30, retain_on_destroy=False))
    rules = rules_by_id(at(doc, "aws_s3_bucket_lifecycle_configuration", "ModelBucket/Lifecycle"))
    assert set(rules) == {"abort-incomplete-multipart-uploads"}, "noncurrent_version_expiration_days=None keeps old versions"
    assert rules["abort-incomplete-multipart-uploads"]["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 2}]
    log_rules = rules_by_id(at(doc, "aws_s3_bucket_lifecycle_configuration", "ModelBucket/AccessLogs/Lifecycle"))
    assert log_rules["expire-objects"]["expiration"] == [{"days": 30}]
    logs = at(doc, "aws_s3_bucket", "ModelBucket/AccessLogs/Resource")
    assert logs["force_destroy"] is True and "lifecycle" not in logs


def test_access_logging_off_by_name():
    doc, bucket = synth(lambda s: ModelBucket(s, "ModelBucket", access_logging=False))
    assert resources(doc, "aws_s3_bucket_logging") == {}
    assert list(resources(doc, "aws_s3_bucket")) == [BUCKET]
    assert bucket.access_log_bucket is None and bucket.logging is None


def test_access_logs_go_to_a_given_bucket():
    def build(stack):
        shared = AccessLogBucket(stack, "Logs", retention_days=90)
        ModelBucket(stack, "A", access_log_bucket=shared)
        ModelBucket(stack, "B", access_log_bucket=shared)
        ModelBucket(stack, "C", access_log_bucket=ModelBucket.from_bucket_name(stack, "Existing", "acme-logs"))

    doc, _ = synth(build)
    assert len(resources(doc, "aws_s3_bucket")) == 4, "a bucket given a log bucket must not create its own"
    targets = sorted(log["target_bucket"] for log in resources(doc, "aws_s3_bucket_logging").values())
    logs_ref = ref("aws_s3_bucket", next(n for n in resources(doc, "aws_s3_bucket") if n.startswith("Logs_")), "bucket")
    assert targets == sorted([logs_ref, logs_ref, "acme-logs"])
    assert at(doc, "aws_s3_bucket_lifecycle_configuration", "Logs/Lifecycle")["rule"][1]["expiration"] == [{"days": 90}]


def test_lifecycle_and_logging_validation_reports_every_problem_once():
    with pytest.raises(ConstructValidationError) as err:
        synth(lambda s: ModelBucket(s, "ModelBucket", abort_incomplete_upload_days=0, noncurrent_version_expiration_days=-1,
                                    access_log_retention_days=0, access_logging=False,
                                    access_log_bucket=ModelBucket.from_bucket_name(s, "Logs", "acme-logs")))
    problems = err.value.problems
    assert len(problems) == 4, problems
    message = str(err.value)
    assert "abort_incomplete_upload_days=0 must be between 1 and 36500" in message
    assert "noncurrent_version_expiration_days=-1" in message and "None to keep" in message
    assert "access_log_retention_days=0" in message
    assert "access_logging=False" in message
    with pytest.raises(ConstructValidationError, match="access_log_bucket=str is not an S3 bucket"):
        synth(lambda s: ModelBucket(s, "ModelBucket", access_log_bucket="acme-logs"))


def test_grant_write_puts_objects_under_a_prefix_and_encrypts_through_s3_only():
    def build(stack):
        bucket = ModelBucket(stack, "ModelBucket")
        role = ServiceRole(stack, "Writer", service="lambda.amazonaws.com")
        grant = bucket.grant_write(role, key_prefix="uploads/")
        with pytest.raises(TypeError, match="grant_write needs a grantee"):
            bucket.grant_write(object())
        with pytest.raises(ConstructValidationError, match="must end with '/'"):
            bucket.grant_write(role, key_prefix="uploads")
        return grant

    doc, grant = synth(build)
    statements = json.loads(only(doc, "aws_iam_role_policy")["policy"])["Statement"]
    assert statements == [
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
         "Resource": ref("aws_s3_bucket", BUCKET, "arn") + "/uploads/*"},
        {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": ref("aws_kms_key", KEY, "arn"),
         "Condition": {"StringEquals": {"kms:ViaService": "s3.${aws_s3_bucket.ModelBucket_B33D855B.region}.amazonaws.com"}}},
    ]
    assert grant.actions == ("s3:PutObject", "s3:AbortMultipartUpload", "kms:GenerateDataKey", "kms:Decrypt")
    assert grant.grantee == "test/Writer"


def test_from_bucket_name_declares_no_bucket_and_grants_on_the_given_name(manifest_path):
    key_arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

    def build(stack):
        bucket = ModelBucket.from_bucket_name(stack, "Existing", "acme-models", kms_key_id=key_arn)
        role = ServiceRole(stack, "Role", service="lambda.amazonaws.com")
        bucket.grant_read(role, key_prefix="models/")
        bucket.grant_write(role, key_prefix="uploads/")
        return bucket, bucket.upload_artifacts(manifest_path)

    doc, (bucket, artifacts) = synth(build)
    assert isinstance(bucket, IBucket)
    bucket_types = {t for t in doc["resource"] if t.startswith(("aws_s3_bucket", "aws_kms"))}
    assert bucket_types == set(), f"an imported bucket declared {bucket_types}"
    assert artifacts.model_uri == "s3://acme-models/models/credit-risk/1.0.0/model.onnx"
    for obj in resources(doc, "aws_s3_object").values():
        assert obj["bucket"] == "acme-models"
        assert obj["server_side_encryption"] == "aws:kms" and obj["kms_key_id"] == key_arn
        assert "depends_on" not in obj
    statements = json.loads(only(doc, "aws_iam_role_policy")["policy"])["Statement"]
    arn = "arn:${data.aws_partition.Existing_Partition_2108C27D.partition}:s3:::acme-models"
    assert [(st["Action"], st["Resource"]) for st in statements] == [
        ("s3:GetObject", f"{arn}/models/*"), ("kms:Decrypt", key_arn),
        (["s3:PutObject", "s3:AbortMultipartUpload"], f"{arn}/uploads/*"), (["kms:GenerateDataKey", "kms:Decrypt"], key_arn),
    ]
    assert statements[1]["Condition"] == {"StringEquals": {"kms:ViaService": "s3.${data.aws_region.Existing_Region_FA84541E.name}.amazonaws.com"}}


def test_from_bucket_name_without_a_key_grants_s3_only_and_uploads_with_the_bucket_default(manifest_path):
    def build(stack):
        bucket = ModelBucket.from_bucket_name(stack, "Existing", "acme-models")
        grant = bucket.grant_write(ServiceRole(stack, "Role", service="lambda.amazonaws.com"))
        bucket.upload_artifacts(manifest_path)
        return grant

    doc, grant = synth(build)
    assert grant.actions == ("s3:PutObject", "s3:AbortMultipartUpload")
    (statement,) = json.loads(only(doc, "aws_iam_role_policy")["policy"])["Statement"]
    assert statement["Resource"].endswith(":s3:::acme-models/*")
    for obj in resources(doc, "aws_s3_object").values():
        assert not {"server_side_encryption", "kms_key_id", "bucket_key_enabled"} & set(obj)
    with pytest.raises(ConstructValidationError, match="not a valid S3 bucket name"):
        synth(lambda s: ModelBucket.from_bucket_name(s, "Bad", "Bad_Name"))


# -- ModelArtifacts ----------------------------------------------------------------------------------------------


def test_each_artifact_is_uploaded_with_the_manifest_checksums(defaults, manifest_path):
    doc, (_, artifacts, _) = defaults
    manifest = read_manifest(manifest_path)
    objects = resources(doc, "aws_s3_object")
    assert len(objects) == len(manifest.artifacts)
    by_key = {o["key"]: o for o in objects.values()}
    for art in manifest.artifacts:
        obj = by_key[f"models/credit-risk/1.0.0/{art.path}"]
        assert obj["bucket"] == ref("aws_s3_bucket", BUCKET, "id")
        assert obj["source_hash"] == art.sha256
        assert obj["checksum_algorithm"] == "SHA256"
        assert obj["metadata"] == {"sha256": art.sha256, "crc32c": art.crc32c}
        assert obj["server_side_encryption"] == "aws:kms" and obj["kms_key_id"] == ref("aws_kms_key", KEY, "arn")
        assert obj["bucket_key_enabled"] is True
        assert obj["content_type"] == art.media_type
        assert obj["source"].startswith("assets/") and obj["source"].endswith("/" + art.path)
        assert any("aws_s3_bucket_server_side_encryption_configuration" in d for d in obj["depends_on"])
        assert any("aws_s3_bucket_policy" in d for d in obj["depends_on"])
    assert artifacts.key_prefix == "models/credit-risk/1.0.0/"
    assert artifacts.model_sha256 == manifest.model_artifact.sha256
    assert artifacts.model_uri.endswith("/models/credit-risk/1.0.0/model.onnx") and artifacts.model_uri.startswith("s3://")


def test_a_tampered_artifact_fails_synth_with_the_contracts_error(tmp_path):
    manifest_path = write_fake_manifest(tmp_path / "model")
    (tmp_path / "model" / "model.onnx").write_bytes(b"not the model the pipeline wrote")
    with pytest.raises(ChecksumMismatchError) as err:
        synth(lambda s: ModelBucket(s, "ModelBucket").upload_artifacts(manifest_path))
    assert "\n" not in str(err.value)
    assert "sha256" in str(err.value) or "bytes" in str(err.value)
    assert "re-run the pipeline" in str(err.value)


def test_a_manifest_read_without_verification_is_verified_before_wiring(tmp_path):
    manifest_path = write_fake_manifest(tmp_path / "model")
    manifest = read_manifest(manifest_path, verify=False)
    (tmp_path / "model" / "preprocessing.json").write_text('{"mean": [9.9], "std": [1.0]}\n')
    with pytest.raises(ChecksumMismatchError, match="preprocessing"):
        synth(lambda s: ModelArtifacts(s, "Model", bucket=ModelBucket(s, "ModelBucket"), manifest=manifest))


def test_a_missing_artifact_fails_synth(tmp_path):
    manifest_path = write_fake_manifest(tmp_path / "model")
    (tmp_path / "model" / "model.onnx").unlink()
    with pytest.raises(ContractError, match="missing"):
        synth(lambda s: ModelBucket(s, "ModelBucket").upload_artifacts(manifest_path))


def test_custom_key_prefix(manifest_path):
    doc, artifacts = synth(lambda s: ModelBucket(s, "ModelBucket").upload_artifacts(manifest_path, key_prefix="serving/v1/"))
    assert sorted(o["key"] for o in resources(doc, "aws_s3_object").values()) == ["serving/v1/model.onnx", "serving/v1/preprocessing.json"]
    assert artifacts.prefix_uri.endswith("/serving/v1/")


def test_invalid_key_prefix_names_value_and_fix(manifest_path):
    with pytest.raises(ConstructValidationError) as err:
        synth(lambda s: ModelBucket(s, "ModelBucket").upload_artifacts(manifest_path, key_prefix="/models/../x"))
    message = str(err.value)
    assert "must end with '/'" in message and "must not start with '/'" in message and "'..'" in message


# -- GpuNodeGroup -----------------------------------------------------------------------------------------------


def test_nodes_default_to_g5_xlarge_on_the_deep_learning_ami(defaults):
    doc, _ = defaults
    lt = only(doc, "aws_launch_template")
    assert lt["instance_type"] == "g5.xlarge"
    param = only(doc, "aws_ssm_parameter", section="data")
    assert param["name"] == DEEP_LEARNING_AMI_PARAMETER
    assert lt["image_id"] == "${data.aws_ssm_parameter.GpuNodes_Image_8E9AD342.insecure_value}"


def test_nodes_require_imdsv2_with_hop_limit_one(defaults):
    doc, _ = defaults
    assert only(doc, "aws_launch_template")["metadata_options"] == {
        "http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1, "instance_metadata_tags": "disabled",
    }


def test_nodes_root_volume_is_encrypted_gp3(defaults):
    doc, _ = defaults
    (mapping,) = only(doc, "aws_launch_template")["block_device_mappings"]
    assert mapping == {"device_name": "/dev/sda1", "ebs": {"volume_size": 100, "volume_type": "gp3", "encrypted": "true", "delete_on_termination": "true"}}


def test_nodes_get_no_public_ip_and_no_ingress(defaults):
    doc, _ = defaults
    (nic,) = only(doc, "aws_launch_template")["network_interfaces"]
    assert nic["associate_public_ip_address"] == "false"
    assert nic["security_groups"] == [ref("aws_security_group", "GpuNodes_SecurityGroup_3EE7FF91", "id")]
    assert "ingress" not in only(doc, "aws_security_group")
    assert resources(doc, "aws_vpc_security_group_ingress_rule") == {}
    egress = only(doc, "aws_vpc_security_group_egress_rule")
    assert (egress["ip_protocol"], egress["from_port"], egress["to_port"]) == ("tcp", 443, 443)
    assert egress["prefix_list_id"] == ref("aws_vpc_endpoint", "GpuNodes_Network_S3Endpoint_2BBA0016", "prefix_list_id")
    assert "cidr_ipv4" not in egress


def test_default_network_is_private_with_an_s3_gateway_endpoint(defaults):
    doc, _ = defaults
    for forbidden in ("aws_internet_gateway", "aws_nat_gateway", "aws_eip", "aws_route"):
        assert resources(doc, forbidden) == {}, f"{forbidden} would give the nodes a way to the internet"
    subnets = resources(doc, "aws_subnet")
    assert len(subnets) == 2
    assert all(s["map_public_ip_on_launch"] is False for s in subnets.values())
    endpoint = only(doc, "aws_vpc_endpoint")
    assert endpoint["vpc_endpoint_type"] == "Gateway"
    assert endpoint["service_name"] == "com.amazonaws.${data.aws_region.GpuNodes_Network_Region_266A3829.name}.s3"
    assert endpoint["route_table_ids"] == [ref("aws_route_table", "GpuNodes_Network_RouteTable_47BF7615", "id")]
    assert "route" not in only(doc, "aws_route_table")
    default_sg = only(doc, "aws_default_security_group")
    assert default_sg["ingress"] == [] and default_sg["egress"] == []


def test_nodes_role_can_only_read_the_model_prefix_and_decrypt_via_s3(defaults):
    doc, _ = defaults
    trust = json.loads(only(doc, "aws_iam_role")["assume_role_policy"])
    assert trust["Statement"] == [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    assert "managed_policy_arns" not in only(doc, "aws_iam_role")
    assert resources(doc, "aws_iam_role_policy_attachment") == {}
    statements = json.loads(only(doc, "aws_iam_role_policy")["policy"])["Statement"]
    assert statements == [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": ref("aws_s3_bucket", BUCKET, "arn") + "/models/credit-risk/1.0.0/*"},
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": ref("aws_kms_key", KEY, "arn"),
         "Condition": {"StringEquals": {"kms:ViaService": "s3.${aws_s3_bucket.ModelBucket_B33D855B.region}.amazonaws.com"}}},
    ]
    profile = only(doc, "aws_iam_instance_profile")
    assert profile["role"] == ref("aws_iam_role", "GpuNodes_Role_F605E612", "name")
    assert only(doc, "aws_launch_template")["iam_instance_profile"] == {"arn": ref("aws_iam_instance_profile", "GpuNodes_InstanceProfile_386B917D", "arn")}


def test_auto_scaling_group_defaults(defaults):
    doc, _ = defaults
    asg = only(doc, "aws_autoscaling_group")
    assert (asg["min_size"], asg["max_size"], asg["desired_capacity"]) == (1, 1, 1)
    assert asg["health_check_type"] == "EC2" and asg["health_check_grace_period"] == 900
    assert asg["wait_for_capacity_timeout"] == "10m"
    assert asg["launch_template"] == {
        "id": ref("aws_launch_template", "GpuNodes_LaunchTemplate_0E1B1CE7", "id"),
        "version": "${tostring(aws_launch_template.GpuNodes_LaunchTemplate_0E1B1CE7.latest_version)}",
    }
    assert sorted(asg["vpc_zone_identifier"]) == sorted(ref("aws_subnet", name, "id") for name in resources(doc, "aws_subnet"))


def test_user_data_fetches_and_verifies_every_artifact(defaults, manifest_path):
    doc, (_, artifacts, nodes) = defaults
    user_data = only(doc, "aws_launch_template")["user_data"]
    assert user_data.startswith("${base64encode(join(")
    assert "aws_s3_bucket.ModelBucket_B33D855B.bucket" in user_data and "aws_s3_bucket.ModelBucket_B33D855B.region" in user_data
    script = nodes.startup_script
    for obj in artifacts.objects:
        assert f"{obj.key}' {obj.relative_path} {obj.sha256}" in script
    assert "refusing to start" in script and "aws s3 cp" in script


def test_node_overrides_with_own_subnets_and_security_groups(manifest_path):
    def build(stack):
        vpc = aws.vpc.Vpc(stack, "Vpc", cidr_block="10.9.0.0/16")
        subnet = aws.subnet.Subnet(stack, "Subnet", vpc_id=vpc.id, cidr_block="10.9.0.0/24")
        group = aws.security_group.SecurityGroup(stack, "Group", vpc_id=vpc.id)
        artifacts = ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        return GpuNodeGroup(stack, "GpuNodes", model=artifacts, instance_type="g6.2xlarge", image="ami-0123456789abcdef0",
                            min_size=0, max_size=4, node_count=2, disk_size_gib=250, root_device_name="/dev/xvda",
                            subnets=[subnet], security_groups=[group], health_check_grace_period_sec=600, capacity_timeout_min=0)

    doc, _ = synth(build)
    lt = only(doc, "aws_launch_template")
    assert lt["instance_type"] == "g6.2xlarge" and lt["image_id"] == "ami-0123456789abcdef0"
    assert "data" not in doc or "aws_ssm_parameter" not in doc["data"]
    assert lt["block_device_mappings"][0]["device_name"] == "/dev/xvda"
    assert lt["block_device_mappings"][0]["ebs"]["volume_size"] == 250
    assert lt["network_interfaces"][0]["security_groups"] == [ref("aws_security_group", "Group", "id")]
    asg = only(doc, "aws_autoscaling_group")
    assert (asg["min_size"], asg["max_size"], asg["desired_capacity"]) == (0, 4, 2)
    assert asg["vpc_zone_identifier"] == [ref("aws_subnet", "Subnet", "id")]
    assert asg["health_check_grace_period"] == 600 and asg["wait_for_capacity_timeout"] == "0m"
    assert len(resources(doc, "aws_vpc")) == 1 and resources(doc, "aws_vpc_endpoint") == {}
    assert resources(doc, "aws_vpc_security_group_egress_rule") == {}


def test_own_subnets_without_groups_get_a_group_in_their_vpc_with_https_egress(manifest_path):
    def build(stack):
        vpc = aws.vpc.Vpc(stack, "Vpc", cidr_block="10.9.0.0/16")
        subnet = aws.subnet.Subnet(stack, "Subnet", vpc_id=vpc.id, cidr_block="10.9.0.0/24")
        artifacts = ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        return GpuNodeGroup(stack, "GpuNodes", model=artifacts, image="ami-0123456789abcdef0", subnets=[subnet])

    doc, _ = synth(build)
    assert only(doc, "aws_security_group")["vpc_id"] == ref("aws_subnet", "Subnet", "vpc_id")
    egress = only(doc, "aws_vpc_security_group_egress_rule")
    assert (egress["cidr_ipv4"], egress["from_port"], egress["to_port"]) == ("0.0.0.0/0", 443, 443)


def test_node_validation_reports_every_problem_once(manifest_path):
    def build(stack):
        artifacts = ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        GpuNodeGroup(stack, "GpuNodes", model=artifacts, instance_type="m5.large", image="img-123", min_size=3, max_size=2,
                      disk_size_gib=4)

    with pytest.raises(ConstructValidationError) as err:
        synth(build)
    message = str(err.value)
    assert "test/GpuNodes" in message
    assert "instance_type='m5.large' is not an NVIDIA GPU instance type" in message and "'g5.xlarge'" in message
    assert "image='img-123'" in message
    assert "min_size=3 is above max_size=2" in message
    assert "disk_size_gib=4 must be between 8 and 16384" in message
    assert len(err.value.problems) == 5  # the four above + desired capacity outside min..max


@pytest.mark.parametrize("kwargs, fix", [
    ({"security_groups": []}, "pass the subnets"),
    ({"subnets": []}, "at least one"),
    ({"min_size": 1, "max_size": 2, "node_count": 3}, "node_count=3 must lie between"),
    ({"max_size": 0, "min_size": 0}, "max_size=0 must be at least 1"),
])
def test_node_validation_cases(manifest_path, kwargs, fix):
    def build(stack):
        artifacts = ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        GpuNodeGroup(stack, "GpuNodes", model=artifacts, image="ami-0123456789abcdef0", **kwargs)

    with pytest.raises(ConstructValidationError, match=fix):
        synth(build)


def test_instance_type_from_a_token_is_not_validated(manifest_path):
    def build(stack):
        instance_type = TerraformVariable(stack, "instance_type", type="string")
        artifacts = ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        GpuNodeGroup(stack, "GpuNodes", model=artifacts, instance_type=instance_type.string_value, image="ami-0123456789abcdef0")

    doc, _ = synth(build)
    assert only(doc, "aws_launch_template")["instance_type"] == "${var.instance_type}"


def test_grant_read_on_a_role_and_refusal_of_a_non_grantee(manifest_path):
    def build(stack):
        bucket = ModelBucket(stack, "ModelBucket")
        role = ServiceRole(stack, "Reader", service="lambda.amazonaws.com")
        grant = bucket.grant_read(role, key_prefix="reports/")
        with pytest.raises(TypeError, match="grant_principal"):
            bucket.grant_read(object())
        with pytest.raises(ConstructValidationError, match="must end with '/'"):
            bucket.grant_read(role, key_prefix="reports")
        return grant

    doc, grant = synth(build)
    statements = json.loads(only(doc, "aws_iam_role_policy")["policy"])["Statement"]
    assert statements[0]["Resource"].endswith("/reports/*")
    assert grant.actions == ("s3:GetObject", "kms:Decrypt")
    assert grant.grantee == "test/Reader"


def test_logical_ids_are_pinned(defaults):
    """Construct ids are public API: a changed id here replaces a real resource."""
    doc, _ = defaults
    assert logical_ids(doc) == {
        "aws_kms_key.ModelBucket_Key_C4835771",
        "aws_kms_alias.ModelBucket_KeyAlias_67327DE6",
        "aws_s3_bucket.ModelBucket_B33D855B",
        "aws_s3_bucket_versioning.ModelBucket_Versioning_93F06AC2",
        "aws_s3_bucket_server_side_encryption_configuration.ModelBucket_Encryption_5FDD7D86",
        "aws_s3_bucket_public_access_block.ModelBucket_PublicAccessBlock_B5DFBE36",
        "aws_s3_bucket_ownership_controls.ModelBucket_OwnershipControls_0AC656E3",
        "aws_s3_bucket_policy.ModelBucket_Policy_49FE555B",
        "aws_s3_bucket_lifecycle_configuration.ModelBucket_Lifecycle_ADA80F4C",
        "aws_s3_bucket_logging.ModelBucket_Logging_0FF6C8A4",
        "aws_s3_bucket.ModelBucket_AccessLogs_94B93479",
        "aws_s3_bucket_versioning.ModelBucket_AccessLogs_Versioning_C6908933",
        "aws_s3_bucket_server_side_encryption_configuration.ModelBucket_AccessLogs_Encryption_C1A403BE",
        "aws_s3_bucket_public_access_block.ModelBucket_AccessLogs_PublicAccessBlock_6D8ED3A9",
        "aws_s3_bucket_ownership_controls.ModelBucket_AccessLogs_OwnershipControls_34B6FFE6",
        "aws_s3_bucket_policy.ModelBucket_AccessLogs_Policy_B48C30E2",
        "aws_s3_bucket_lifecycle_configuration.ModelBucket_AccessLogs_Lifecycle_5DF9C0E7",
        "aws_s3_object.ModelBucket_Artifacts-credit-risk_Object-model_53E0D8E2",
        "aws_s3_object.ModelBucket_Artifacts-credit-risk_Object-preprocessing_90384ABF",
        "aws_vpc.GpuNodes_Network_1D4C1C9A",
        "aws_default_security_group.GpuNodes_Network_DefaultSecurityGroup_E546BDB0",
        "aws_route_table.GpuNodes_Network_RouteTable_47BF7615",
        "aws_subnet.GpuNodes_Network_Subnet-0_81EBED9E",
        "aws_subnet.GpuNodes_Network_Subnet-1_B30C03B4",
        "aws_route_table_association.GpuNodes_Network_RouteTableAssociation-0_A81271C7",
        "aws_route_table_association.GpuNodes_Network_RouteTableAssociation-1_956B4D04",
        "aws_vpc_endpoint.GpuNodes_Network_S3Endpoint_2BBA0016",
        "aws_security_group.GpuNodes_SecurityGroup_3EE7FF91",
        "aws_vpc_security_group_egress_rule.GpuNodes_SecurityGroupEgress_9EC3D488",
        "aws_iam_role.GpuNodes_Role_F605E612",
        "aws_iam_role_policy.GpuNodes_Role_Policy_A5F11F10",
        "aws_iam_instance_profile.GpuNodes_InstanceProfile_386B917D",
        "aws_launch_template.GpuNodes_LaunchTemplate_0E1B1CE7",
        "aws_autoscaling_group.GpuNodes_319A5FAE",
    }
    assert logical_ids(doc, "data") == {
        "aws_caller_identity.ModelBucket_AccessLogs_Account_F9D04027",
        "aws_availability_zones.GpuNodes_Network_Zones_93AE9239",
        "aws_region.GpuNodes_Network_Region_266A3829",
        "aws_ssm_parameter.GpuNodes_Image_8E9AD342",
    }
