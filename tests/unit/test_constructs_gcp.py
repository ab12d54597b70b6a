"""GCP constructs: secure defaults, overrides, validation and logical ids, asserted on synthesized JSON.

The Google provider binary is not available offline, so these synth
assertions are the GCP stack's main check (see ARCHITECTURE.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lepton_cdk.contract import ChecksumMismatchError, read_manifest
from lepton_cdk.core import ConstructValidationError, IBucket, IGpuNodeGroup, IModelArtifacts
from lepton_cdk.core.framework import TerraformVariable, google
from lepton_cdk.gcp import DEFAULT_IMAGE, AccessLogBucket, GpuNodeGroup, ModelBucket, ServiceAccount, default_accelerator
from tests.support.manifests import write_fake_manifest
from tests.support.synth import at, logical_ids, only, ref, resources, synth_json

BUCKET = "ModelBucket_B33D855B"
KEY = "ModelBucket_Key_C4835771"


def google_provider(stack):
    return google.provider.GoogleProvider(stack, "google", project="lepton-demo", region="us-central1")


def synth(build):
    return synth_json(build, provider=google_provider)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    return write_fake_manifest(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def defaults(manifest_path):
    def build(stack):
        bucket = ModelBucket(stack, "ModelBucket")
        artifacts = bucket.upload_artifacts(manifest_path)
        nodes = GpuNodeGroup(stack, "GpuNodes", model=artifacts)
        return bucket, artifacts, nodes

    return synth(build)


# -- ModelBucket -------------------------------------------------------------------------------------------------


def test_bucket_is_private_uniform_and_versioned(defaults):
    doc, _ = defaults
    bucket = at(doc, "google_storage_bucket", "ModelBucket/Resource")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"] == {"enabled": True}


def test_bucket_uses_cmek_created_after_the_service_agent_may_use_it(defaults):
    doc, _ = defaults
    bucket = at(doc, "google_storage_bucket", "ModelBucket/Resource")
    assert bucket["encryption"] == {"default_kms_key_name": ref("google_kms_crypto_key", KEY, "id")}
    assert bucket["depends_on"] == ["google_kms_crypto_key_iam_member.ModelBucket_KeyAccess_90A5894D"]
    key = only(doc, "google_kms_crypto_key")
    assert key["rotation_period"] == "7776000s"  # 90 days
    assert key["purpose"] == "ENCRYPT_DECRYPT"
    assert key["key_ring"] == ref("google_kms_key_ring", "ModelBucket_KeyRing_EC48526D", "id")
    access = only(doc, "google_kms_crypto_key_iam_member")
    assert access["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    assert access["crypto_key_id"] == ref("google_kms_crypto_key", KEY, "id")
    assert access["member"] == "serviceAccount:${data.google_storage_project_service_account.ModelBucket_StorageAgent_F86D2FD0.email_address}"


def test_bucket_and_key_ring_share_the_providers_region_by_default(defaults):
    doc, _ = defaults
    region = "data.google_client_config.ModelBucket_Client_5D491A79.region"
    assert at(doc, "google_storage_bucket", "ModelBucket/Resource")["location"] == f"${{upper({region})}}"
    assert only(doc, "google_kms_key_ring")["location"] == f"${{lower(upper({region}))}}"
    assert at(doc, "google_storage_bucket", "ModelBucket/Resource")["name"] == "${data.google_client_config.ModelBucket_Client_5D491A79.project}-models-dd52eb92"  # sha256("test/ModelBucket")[:8]


def test_bucket_and_key_are_retained_on_destroy_by_default(defaults):
    doc, _ = defaults
    assert at(doc, "google_storage_bucket", "ModelBucket/Resource")["lifecycle"] == {"prevent_destroy": True}
    assert at(doc, "google_storage_bucket", "ModelBucket/Resource")["force_destroy"] is False
    assert only(doc, "google_kms_crypto_key")["lifecycle"] == {"prevent_destroy": True}


def test_bucket_overrides():
    doc, _ = synth(lambda s: ModelBucket(s, "ModelBucket", bucket_name="acme-models", location="EU", versioned=False,
                                         retain_on_destroy=False, key_ring_name="acme-ring", key_rotation_period_days=30))
    bucket = at(doc, "google_storage_bucket", "ModelBucket/Resource")
    assert (bucket["name"], bucket["location"]) == ("acme-models", "EU")
    assert bucket["versioning"] == {"enabled": False}
    assert bucket["force_destroy"] is True and "lifecycle" not in bucket
    ring = only(doc, "google_kms_key_ring")
    assert (ring["name"], ring["location"]) == ("acme-ring", "${lower(\"EU\")}")
    assert only(doc, "google_kms_crypto_key")["rotation_period"] == "2592000s"
    assert "lifecycle" not in only(doc, "google_kms_crypto_key")


def test_bucket_validation_reports_every_problem_once():
    with pytest.raises(ConstructValidationError) as err:
        synth(lambda s: ModelBucket(s, "ModelBucket", bucket_name="my-google-Bucket", key_ring_name="bad ring", key_rotation_period_days=0))
    assert len(err.value.problems) == 3
    message = str(err.value)
    assert "bucket_name='my-google-Bucket'" in message and "key_ring_name='bad ring'" in message
    assert "key_rotation_period_days=0 must be between 1 and 36500" in message


LOG_BUCKET = "ModelBucket_AccessLogs_94B93479"


def test_bucket_lifecycle_aborts_stale_uploads_and_deletes_old_versions_by_default(defaults):
    doc, _ = defaults
    rules = at(doc, "google_storage_bucket", "ModelBucket/Resource")["lifecycle_rule"]
    assert rules == [
        {"action": {"type": "AbortIncompleteMultipartUpload"}, "condition": {"age": 7}},
        {"action": {"type": "Delete"}, "condition": {"days_since_noncurrent_time": 90, "with_state": "ARCHIVED"}},
    ]


def test_bucket_logs_usage_to_a_private_cmek_log_bucket_by_default(defaults):
    doc, (bucket, _, _) = defaults
    main = at(doc, "google_storage_bucket", "ModelBucket/Resource")
    assert main["logging"] == {"log_bucket": ref("google_storage_bucket", LOG_BUCKET, "name"),
                               "log_object_prefix": "${data.google_client_config.ModelBucket_Client_5D491A79.project}-models-dd52eb92"}
    assert isinstance(bucket.access_log_bucket, AccessLogBucket) and isinstance(bucket.access_log_bucket, IBucket)
    logs = at(doc, "google_storage_bucket", "ModelBucket/AccessLogs/Resource")
    assert logs["uniform_bucket_level_access"] is True and logs["public_access_prevention"] == "enforced"
    assert logs["versioning"] == {"enabled": True}
    assert logs["encryption"] == {"default_kms_key_name": ref("google_kms_crypto_key", KEY, "id")}
    assert logs["depends_on"] == ["google_kms_crypto_key_iam_member.ModelBucket_KeyAccess_90A5894D"]
    assert logs["location"] == main["location"]
    assert logs["lifecycle"] == {"prevent_destroy": True} and logs["force_destroy"] is False
    assert logs["lifecycle_rule"] == [
        {"action": {"type": "AbortIncompleteMultipartUpload"}, "condition": {"age": 7}},
        {"action": {"type": "Delete"}, "condition": {"age": 365}},
        {"action": {"type": "Delete"}, "condition": {"days_since_noncurrent_time": 30, "with_state": "ARCHIVED"}},
    ]
    writer = at(doc, "google_storage_bucket_iam_member", "ModelBucket/AccessLogs/LogWriter")
    assert writer == {"bucket": ref("google_storage_bucket", LOG_BUCKET, "name"), "role": "roles/storage.objectCreator",
                      "member": "group:cloud-storage-analytics@google.com"}


def test_lifecycle_and_access_log_overrides():
    doc, _ = synth(lambda s: ModelBucket(s, "ModelBucket", abort_incomplete_upload_days=2, noncurrent_version_expiration_days=None,
                                         access_log_retention_days=30, retain_on_destroy=False))
    assert at(doc, "google_storage_bucket", "ModelBucket/Resource")["lifecycle_rule"] == [
        {"action": {"type": "AbortIncompleteMultipartUpload"}, "condition": {"age": 2}}]
    logs = at(doc, "google_storage_bucket", "ModelBucket/AccessLogs/Resource")
    assert {"action": {"type": "Delete"}, "condition": {"age": 30}} in logs["lifecycle_rule"]
    assert logs["force_destroy"] is True and "lifecycle" not in logs


def test_access_logging_off_by_name_or_to_a_given_bucket():
    doc, bucket = synth(lambda s: ModelBucket(s, "ModelBucket", access_logging=False))
    assert list(resources(doc, "google_storage_bucket")) == [BUCKET]
    assert "logging" not in resources(doc, "google_storage_bucket")[BUCKET] and bucket.access_log_bucket is None

    def build(stack):
        shared = AccessLogBucket(stack, "Logs")
        ModelBucket(stack, "A", access_log_bucket=shared)
        ModelBucket(stack, "B", access_log_bucket=ModelBucket.from_bucket_name(stack, "Existing", "acme-logs"))

    doc, _ = synth(build)
    buckets = resources(doc, "google_storage_bucket")
    assert len(buckets) == 3, "a bucket given a log bucket must not create its own"
    logs_name = next(n for n in buckets if n.startswith("Logs_"))
    assert sorted(b["logging"]["log_bucket"] for n, b in buckets.items() if "logging" in b) == sorted(
        [ref("google_storage_bucket", logs_name, "name"), "acme-logs"])
    assert "encryption" not in buckets[logs_name], "a standalone log bucket has no key of its own"


def test_lifecycle_and_logging_validation_reports_every_problem_once():
    with pytest.raises(ConstructValidationError) as err:
        synth(lambda s: ModelBucket(s, "ModelBucket", abort_incomplete_upload_days=0, noncurrent_version_expiration_days=0,
                                    access_log_retention_days=-5, access_logging=False,
                                    access_log_bucket=ModelBucket.from_bucket_name(s, "Logs", "acme-logs")))
    message = str(err.value)
    assert len(err.value.problems) == 4, err.value.problems
    assert "abort_incomplete_upload_days=0" in message and "noncurrent_version_expiration_days=0" in message
    assert "access_log_retention_days=-5" in message and "access_logging=False" in message


def test_grant_write_creates_objects_under_a_prefix_only():
    def build(stack):
        bucket = ModelBucket(stack, "ModelBucket")
        writer = ServiceAccount(stack, "Writer")
        with pytest.raises(TypeError, match="grant_write needs a grantee"):
            bucket.grant_write(object())
        with pytest.raises(ConstructValidationError, match="must end with '/'"):
            bucket.grant_write(writer, key_prefix="uploads")
        return bucket.grant_write(writer, key_prefix="uploads/"), bucket.grant_write(writer, key_prefix="more/")

    doc, (grant, _) = synth(build)
    binding = at(doc, "google_storage_bucket_iam_member", "Writer/Write-ModelBucket")
    assert binding["role"] == "roles/storage.objectCreator"
    assert binding["bucket"] == ref("google_storage_bucket", BUCKET, "name")
    writer_account = next(n for n in resources(doc, "google_service_account") if n.startswith("Writer_"))
    assert binding["member"] == ref("google_service_account", writer_account, "member")
    assert binding["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/${google_storage_bucket.ModelBucket_B33D855B.name}/objects/uploads/")')
    assert at(doc, "google_storage_bucket_iam_member", "Writer/Write-ModelBucket-2")["condition"]["expression"].endswith('/objects/more/")')
    assert grant.actions == ("storage.objects.create",) and grant.grantee == "test/Writer"
    assert resources(doc, "google_kms_crypto_key_iam_member").keys() == {"ModelBucket_KeyAccess_90A5894D"}, "no key grant on GCP"


def test_from_bucket_name_declares_no_bucket_and_grants_on_the_given_name(manifest_path):
    key = "projects/acme/locations/us/keyRings/r/cryptoKeys/k"

    def build(stack):
        bucket = ModelBucket.from_bucket_name(stack, "Existing", "acme-models", kms_key_id=key)
        reader = ServiceAccount(stack, "Reader")
        bucket.grant_read(reader, key_prefix="models/")
        bucket.grant_write(reader, key_prefix="uploads/")
        plain = ModelBucket.from_bucket_name(stack, "Plain", "acme-plain")
        plain.upload_artifacts(manifest_path)
        return bucket, bucket.upload_artifacts(manifest_path)

    doc, (bucket, artifacts) = synth(build)
    assert isinstance(bucket, IBucket)
    declared = {t for t in doc["resource"] if t in ("google_storage_bucket", "google_kms_key_ring", "google_kms_crypto_key",
                                                    "google_kms_crypto_key_iam_member")}
    assert declared == set(), f"an imported bucket declared {declared}"
    assert artifacts.model_uri == "gs://acme-models/models/credit-risk/1.0.0/model.onnx"
    objects = list(resources(doc, "google_storage_bucket_object").values())
    assert {o["bucket"] for o in objects} == {"acme-models", "acme-plain"}
    assert all(o["kms_key_name"] == key for o in objects if o["bucket"] == "acme-models")
    assert all("kms_key_name" not in o for o in objects if o["bucket"] == "acme-plain")
    bindings = resources(doc, "google_storage_bucket_iam_member").values()
    assert sorted((b["role"], b["bucket"], b["condition"]["expression"]) for b in bindings) == [
        ("roles/storage.objectCreator", "acme-models", 'resource.name.startsWith("projects/_/buckets/acme-models/objects/uploads/")'),
        ("roles/storage.objectViewer", "acme-models", 'resource.name.startsWith("projects/_/buckets/acme-models/objects/models/")'),
    ]
    with pytest.raises(ConstructValidationError, match="not a valid Cloud Storage bucket name"):
        synth(lambda s: ModelBucket.from_bucket_name(s, "Bad", "google-models"))


def test_artifacts_carry_manifest_checksums_and_no_invented_md5(defaults, manifest_path):
    doc, (_, artifacts, _) = defaults
    manifest = read_manifest(manifest_path)
    objects = {o["name"]: o for o in resources(doc, "google_storage_bucket_object").values()}
    assert len(objects) == len(manifest.artifacts)
    for art in manifest.artifacts:
        obj = objects[f"models/credit-risk/1.0.0/{art.path}"]
        assert obj["bucket"] == ref("google_storage_bucket", BUCKET, "name")
        assert obj["metadata"] == {"sha256": art.sha256, "crc32c": art.crc32c}
        assert obj["content_type"] == art.media_type
        assert obj["source"].startswith("assets/") and obj["source"].endswith("/" + art.path)
        assert "md5hash" not in obj and "source_md5hash" not in obj and "detect_md5hash" not in obj
    assert artifacts.model_uri.startswith("gs://") and artifacts.model_uri.endswith("/models/credit-risk/1.0.0/model.onnx")


def test_a_tampered_artifact_fails_synth(tmp_path):
    manifest_path = write_fake_manifest(tmp_path / "model")
    (tmp_path / "model" / "model.onnx").write_bytes(b"swapped")
    with pytest.raises(ChecksumMismatchError, match="re-run the pipeline"):
        synth(lambda s: ModelBucket(s, "ModelBucket").upload_artifacts(manifest_path))


def test_constructs_satisfy_the_cloud_neutral_protocols(defaults):
    _, (bucket, artifacts, nodes) = defaults
    assert isinstance(bucket, IBucket) and isinstance(artifacts, IModelArtifacts) and isinstance(nodes, IGpuNodeGroup)


# -- GpuNodeGroup -----------------------------------------------------------------------------------------------


def test_nodes_default_to_one_l4_on_g2_standard_4(defaults):
    doc, _ = defaults
    template = only(doc, "google_compute_instance_template")
    assert template["machine_type"] == "g2-standard-4"
    assert template["guest_accelerator"] == [{"type": "nvidia-l4", "count": 1}]
    assert template["scheduling"] == {"on_host_maintenance": "TERMINATE", "automatic_restart": True, "preemptible": False,
                                      "provisioning_model": "STANDARD"}
    assert template["lifecycle"] == {"create_before_destroy": True}


def test_nodes_are_shielded_vms_without_external_ips(defaults):
    doc, _ = defaults
    template = only(doc, "google_compute_instance_template")
    assert template["shielded_instance_config"] == {"enable_secure_boot": True, "enable_vtpm": True, "enable_integrity_monitoring": True}
    (nic,) = template["network_interface"]
    assert "access_config" not in nic and "ipv6_access_config" not in nic
    assert nic["subnetwork"] == ref("google_compute_subnetwork", "GpuNodes_Network_Subnet_B64A22AC", "id")
    assert template["metadata"]["enable-oslogin"] == "TRUE" and template["metadata"]["block-project-ssh-keys"] == "true"
    (disk,) = template["disk"]
    assert disk == {"boot": True, "auto_delete": True, "source_image": DEFAULT_IMAGE, "disk_size_gb": 100, "disk_type": "pd-balanced"}


def test_default_network_is_private_with_google_access_and_no_nat(defaults):
    doc, _ = defaults
    assert only(doc, "google_compute_network")["auto_create_subnetworks"] is False
    subnet = only(doc, "google_compute_subnetwork")
    assert subnet["private_ip_google_access"] is True and subnet["ip_cidr_range"] == "10.42.0.0/20"
    for forbidden in ("google_compute_router_nat", "google_compute_router", "google_compute_firewall", "google_compute_address"):
        assert resources(doc, forbidden) == {}


def test_nodes_service_account_reads_only_the_model_prefix(defaults):
    doc, (_, _, nodes) = defaults
    account = only(doc, "google_service_account")
    assert account["account_id"] == "lepton-gpu-1990df9f"  # sha256("test/GpuNodes")[:8]: names differ per stack
    assert only(doc, "google_compute_instance_template")["service_account"] == {
        "email": ref("google_service_account", "GpuNodes_ServiceAccount_1A03F2AC", "email"),
        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
    }
    binding = at(doc, "google_storage_bucket_iam_member", "GpuNodes/ServiceAccount/Read-ModelBucket")
    assert binding["role"] == "roles/storage.objectViewer"
    assert binding["bucket"] == ref("google_storage_bucket", BUCKET, "name")
    assert binding["member"] == ref("google_service_account", "GpuNodes_ServiceAccount_1A03F2AC", "member")
    assert binding["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/${google_storage_bucket.ModelBucket_B33D855B.name}/objects/models/credit-risk/1.0.0/")'
    )
    for broad in ("google_project_iam_member", "google_project_iam_binding", "google_storage_bucket_iam_binding", "google_kms_crypto_key_iam_binding"):
        assert resources(doc, broad) == {}
    assert nodes.grant.actions == ("storage.objects.get",)


def test_managed_instance_group_and_startup_script(defaults):
    doc, (_, artifacts, _) = defaults
    mig = only(doc, "google_compute_region_instance_group_manager")
    assert mig["target_size"] == 1 and mig["wait_for_instances"] is False
    assert mig["version"] == [{"name": "primary", "instance_template": ref("google_compute_instance_template", "GpuNodes_Template_C1FA2437", "self_link_unique")}]
    script = only(doc, "google_compute_instance_template")["metadata"]["startup-script"]
    assert "gcloud storage cp" in script and "refusing to start" in script
    for obj in artifacts.objects:
        assert f"'gs://${{google_storage_bucket.ModelBucket_B33D855B.name}}/{obj.key}' {obj.relative_path} {obj.sha256}" in script


@pytest.mark.parametrize("machine, expected", [
    ("g2-standard-4", ("nvidia-l4", 1)), ("g2-standard-24", ("nvidia-l4", 2)), ("g2-standard-96", ("nvidia-l4", 8)),
    ("a2-highgpu-2g", ("nvidia-tesla-a100", 2)), ("a2-ultragpu-1g", ("nvidia-a100-80gb", 1)),
    ("n1-standard-8", ("nvidia-tesla-t4", 1)), ("e2-standard-4", None), ("g2-standard-5", None),
])
def test_default_accelerator_per_machine_type(machine, expected):
    assert default_accelerator(machine) == expected


def test_node_overrides_t4_on_n1_with_own_subnetwork(manifest_path):
    def build(stack):
        net = google.compute_network.ComputeNetwork(stack, "Net", name="own", auto_create_subnetworks=False)
        sub = google.compute_subnetwork.ComputeSubnetwork(stack, "Sub", name="own", network=net.id, ip_cidr_range="10.1.0.0/24")
        artifacts = ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        return GpuNodeGroup(stack, "GpuNodes", model=artifacts, instance_type="n1-standard-8", accelerator_count=2, image="projects/p/global/images/i",
                            disk_size_gib=200, boot_disk_type="pd-ssd", node_count=3, subnetwork=sub, zones=["us-central1-a", "us-central1-b"],
                            secure_boot=False, service_account_id="gpu-serving")

    doc, _ = synth(build)
    template = only(doc, "google_compute_instance_template")
    assert template["machine_type"] == "n1-standard-8"
    assert template["guest_accelerator"] == [{"type": "nvidia-tesla-t4", "count": 2}]
    assert template["shielded_instance_config"]["enable_secure_boot"] is False
    assert template["disk"][0]["disk_size_gb"] == 200 and template["disk"][0]["disk_type"] == "pd-ssd"
    assert template["network_interface"] == [{"subnetwork": ref("google_compute_subnetwork", "Sub", "id")}]
    assert len(resources(doc, "google_compute_network")) == 1
    mig = only(doc, "google_compute_region_instance_group_manager")
    assert mig["target_size"] == 3 and mig["distribution_policy_zones"] == ["us-central1-a", "us-central1-b"]
    assert only(doc, "google_service_account")["account_id"] == "gpu-serving"


def test_node_validation_reports_every_problem_once(manifest_path):
    def build(stack):
        artifacts = ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        GpuNodeGroup(stack, "GpuNodes", model=artifacts, instance_type="g2-standard-4", accelerator_type="nvidia-tesla-t4", accelerator_count=2,
                     boot_disk_type="local-ssd", node_count=-1, zones=["central"])

    with pytest.raises(ConstructValidationError) as err:
        synth(build)
    message = str(err.value)
    assert len(err.value.problems) == 5
    assert "accelerator_type='nvidia-tesla-t4' does not match g2-standard-4, which comes with nvidia-l4" in message
    assert "accelerator_count=2 does not match g2-standard-4, which has 1" in message
    assert "boot_disk_type='local-ssd'" in message and "node_count=-1 must be between 0 and 1000" in message
    assert "'central', which is not a zone name" in message


@pytest.mark.parametrize("kwargs, fix", [
    ({"instance_type": "e2-standard-4"}, "cannot carry NVIDIA GPUs"),
    ({"instance_type": "n1-standard-8", "accelerator_type": "nvidia-l4"}, "does not attach to n1 machines"),
    ({"zones": []}, "lists no zone"),
    ({"service_account_id": "x"}, "not a valid service account id"),
])
def test_node_validation_cases(manifest_path, kwargs, fix):
    def build(stack):
        artifacts = ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        GpuNodeGroup(stack, "GpuNodes", model=artifacts, **kwargs)

    with pytest.raises(ConstructValidationError, match=fix):
        synth(build)


def test_machine_type_from_a_token_is_not_validated(manifest_path):
    def build(stack):
        machine = TerraformVariable(stack, "machine", type="string")
        artifacts = ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)
        GpuNodeGroup(stack, "GpuNodes", model=artifacts, instance_type=machine.string_value, accelerator_type="nvidia-l4")

    doc, _ = synth(build)
    assert only(doc, "google_compute_instance_template")["machine_type"] == "${var.machine}"


def test_grant_read_refuses_a_grantee_without_a_service_account():
    def build(stack):
        bucket = ModelBucket(stack, "ModelBucket")
        with pytest.raises(TypeError, match="grant_principal"):
            bucket.grant_read(object())
        reader = ServiceAccount(stack, "Reader")
        bucket.grant_read(reader, key_prefix="a/")
        bucket.grant_read(reader, key_prefix="b/")

    doc, _ = synth(build)
    expressions = sorted(b["condition"]["expression"] for b in resources(doc, "google_storage_bucket_iam_member").values() if "condition" in b)
    assert [e.rsplit("/objects/", 1)[1] for e in expressions] == ['a/")', 'b/")']


def test_logical_ids_are_pinned(defaults):
    """Construct ids are public API: a changed id here replaces a real resource."""
    doc, _ = defaults
    assert logical_ids(doc) == {
        "google_kms_key_ring.ModelBucket_KeyRing_EC48526D",
        "google_kms_crypto_key.ModelBucket_Key_C4835771",
        "google_kms_crypto_key_iam_member.ModelBucket_KeyAccess_90A5894D",
        "google_storage_bucket.ModelBucket_B33D855B",
        "google_storage_bucket.ModelBucket_AccessLogs_94B93479",
        "google_storage_bucket_iam_member.ModelBucket_AccessLogs_LogWriter_B33E6FF9",
        "google_storage_bucket_object.ModelBucket_Artifacts-credit-risk_Object-model_53E0D8E2",
        "google_storage_bucket_object.ModelBucket_Artifacts-credit-risk_Object-preprocessing_90384ABF",
        "google_service_account.GpuNodes_ServiceAccount_1A03F2AC",
        "google_storage_bucket_iam_member.GpuNodes_ServiceAccount_Read-ModelBucket_B0D8E1AF",
        "google_compute_network.GpuNodes_Network_1D4C1C9A",
        "google_compute_subnetwork.GpuNodes_Network_Subnet_B64A22AC",
        "google_compute_instance_template.GpuNodes_Template_C1FA2437",
        "google_compute_region_instance_group_manager.GpuNodes_319A5FAE",
    }
    assert logical_ids(doc, "data") == {
        "google_client_config.ModelBucket_Client_5D491A79",
        "google_client_config.ModelBucket_AccessLogs_Client_3C0B35F9",
        "google_storage_project_service_account.ModelBucket_StorageAgent_F86D2FD0",
    }
