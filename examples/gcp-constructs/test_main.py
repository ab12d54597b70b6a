"""Tests of main.py's stack, synthesized in-process with lepton_cdk.testing: no GCP project needed.

Run them with ``python -m pytest`` (``pip install -r requirements-dev.txt`` first). A finding of
lepton-cdk's policy checks fails the synth, so these tests also hold the stack to the policy rules.
"""

import lepton_cdk  # noqa: F401  first: the provider imports below then load only the submodules in use

# isort: split

import cdktf
import pytest

from lepton_cdk.testing import ProfileError, at, resources, synth, write_test_manifest

# isort: split

from main import ModelStack, build_app  # the stack under test


def test_the_nodes_may_read_this_model_version_and_nothing_else(tmp_path):
    manifest = write_test_manifest(tmp_path / "model", name="my-model", version="2.0.0")
    doc = synth(ModelStack(cdktf.Testing.app(), "models", manifest=manifest))

    (grant,) = resources(doc, "google_storage_bucket_iam_member", {"role": "roles/storage.objectViewer"}).values()
    assert grant["member"].startswith("${google_service_account.GpuNodes_ServiceAccount_")
    assert grant["condition"]["expression"].endswith('/objects/models/my-model/2.0.0/")')
    assert len(doc["resource"]["google_storage_bucket_object"]) == 2, "one object per artifact in the manifest"


def test_the_bucket_is_encrypted_with_its_own_key_and_kept_on_destroy(tmp_path):
    doc = synth(ModelStack(cdktf.Testing.app(), "models", manifest=write_test_manifest(tmp_path / "model")))

    bucket = at(doc, "google_storage_bucket", "ModelBucket")
    assert bucket["lifecycle"]["prevent_destroy"] is True
    assert bucket["encryption"]["default_kms_key_name"].startswith("${google_kms_crypto_key.")
    assert bucket["public_access_prevention"] == "enforced"


def test_the_local_profile_is_refused_rather_than_deploying_to_the_cloud(tmp_path):
    with pytest.raises(ProfileError, match="no local emulator"):
        build_app(tmp_path / "out", {"LEPTON_PROFILE": "local", "LEPTON_MANIFEST": str(write_test_manifest(tmp_path / "model"))})
