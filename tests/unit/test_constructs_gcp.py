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
from lepton_cdk.gcp import DEFAULT_SOURCE_IMAGE, GpuNodeGroup, ModelBucket, ServiceAccount, default_accelerator
from tests.support.manifests import write_fake_manifest
from tests.support.synth import logical_ids, only, ref, resources, synth_json

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
    bucket = only(doc, "google_storage_bucket")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"] == {"enabled": True}


def test_bucket_uses_cmek_created_after_the_service_agent_may_use_it(defaults):
    doc, _ = defaults
    bucket = only(doc, "google_storage_bucket")
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
    assert only(doc, "google_storage_bucket")["location"] == f"${{upper({region})}}"
    assert only(doc, "google_kms_key_ring")["location"] == f"${{lower(upper({region}))}}"
    assert only(doc, "google_storage_bucket")["name"] == "${data.google_client_config.ModelBucket_Client_5D491A79.project}-models-dd52eb92"  # sha256("test/ModelBucket")[:8]


def test_bucket_and_key_are_retained_on_destroy_by_default(defaults):
    doc, _ = defaults
    assert only(doc, "google_storage_bucket")["lifecycle"] == {"prevent_destroy": True}
    assert only(doc, "google_storage_bucket")["force_destroy"] is False
    assert only(doc, "google_kms_crypto_key")["lifecycle"] == {"prevent_destroy": True}


def test_bucket_overrides():
    doc, _ = synth(lambda s: ModelBucket(s, "ModelBucket", bucket_name="acme-models", location="EU", versioned=False,
                                         retain_on_destroy=False, key_ring_name="acme-ring", key_rotation_period_days=30))
    bucket = only(doc, "google_storage_bucket")
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
    assert disk == {"boot": True, "auto_delete": True, "source_image": DEFAULT_SOURCE_IMAGE, "disk_size_gb": 100, "disk_type": "pd-balanced"}


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
    binding = only(doc, "google_storage_bucket_iam_member")
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
        return GpuNodeGroup(stack, "GpuNodes", model=artifacts, machine_type="n1-standard-8", accelerator_count=2, source_image="projects/p/global/images/i",
                            boot_disk_size_gib=200, boot_disk_type="pd-ssd", target_size=3, subnetwork=sub, zones=["us-central1-a", "us-central1-b"],
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
        GpuNodeGroup(stack, "GpuNodes", model=artifacts, machine_type="g2-standard-4", accelerator_type="nvidia-tesla-t4", accelerator_count=2,
                     boot_disk_type="local-ssd", target_size=-1, zones=["central"])

    with pytest.raises(ConstructValidationError) as err:
        synth(build)
    message = str(err.value)
    assert len(err.value.problems) == 5
    assert "accelerator_type='nvidia-tesla-t4' does not match g2-standard-4, which comes with nvidia-l4" in message
    assert "accelerator_count=2 does not match g2-standard-4, which has 1" in message
    assert "boot_disk_type='local-ssd'" in message and "target_size=-1 must be between 0 and 1000" in message
    assert "'central', which is not a zone name" in message


@pytest.mark.parametrize("kwargs, fix", [
    ({"machine_type": "e2-standard-4"}, "cannot carry NVIDIA GPUs"),
    ({"machine_type": "n1-standard-8", "accelerator_type": "nvidia-l4"}, "does not attach to n1 machines"),
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
        GpuNodeGroup(stack, "GpuNodes", model=artifacts, machine_type=machine.string_value, accelerator_type="nvidia-l4")

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
    expressions = sorted(b["condition"]["expression"] for b in resources(doc, "google_storage_bucket_iam_member").values())
    assert [e.rsplit("/objects/", 1)[1] for e in expressions] == ['a/")', 'b/")']


def test_logical_ids_are_pinned(defaults):
    """Construct ids are public API: a changed id here replaces a real resource."""
    doc, _ = defaults
    assert logical_ids(doc) == {
        "google_kms_key_ring.ModelBucket_KeyRing_EC48526D",
        "google_kms_crypto_key.ModelBucket_Key_C4835771",
        "google_kms_crypto_key_iam_member.ModelBucket_KeyAccess_90A5894D",
        "google_storage_bucket.ModelBucket_B33D855B",
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
        "google_storage_project_service_account.ModelBucket_StorageAgent_F86D2FD0",
    }
