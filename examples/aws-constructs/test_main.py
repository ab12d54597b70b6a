"""Tests of main.py's stack, synthesized in-process with lepton_cdk.testing: no AWS account and no emulator needed.

Run them with ``python -m pytest`` (``pip install -r requirements-dev.txt`` first). A finding of
lepton-cdk's policy checks fails the synth, so these tests also hold the stack to the policy rules.
"""

import lepton_cdk  # noqa: F401  first: the provider imports below then load only the submodules in use

# isort: split

import json

import cdktf

from lepton_cdk.testing import AWS_SERVICES, MOTO_IMAGE, AwsEmulator, at, only, synth, write_test_manifest

# isort: split

from main import ModelStack  # the stack under test


def test_the_nodes_may_read_this_model_version_and_nothing_else(tmp_path):
    manifest = write_test_manifest(tmp_path / "model", name="my-model", version="2.0.0")
    doc = synth(ModelStack(cdktf.Testing.app(), "models", manifest=manifest))

    statements = json.loads(only(doc, "aws_iam_role_policy")["policy"])["Statement"]
    reads = [s["Resource"] for s in statements if s["Action"] == "s3:GetObject"]
    assert len(reads) == 1 and reads[0].endswith("/models/my-model/2.0.0/*")
    assert len(doc["resource"]["aws_s3_object"]) == 2, "one object per artifact in the manifest"


def test_the_bucket_is_tls_only_and_kept_on_destroy(tmp_path):
    doc = synth(ModelStack(cdktf.Testing.app(), "models", manifest=write_test_manifest(tmp_path / "model")))

    assert at(doc, "aws_s3_bucket", "ModelBucket")["lifecycle"]["prevent_destroy"] is True
    (statement,) = json.loads(at(doc, "aws_s3_bucket_policy", "ModelBucket/Policy")["policy"])["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_local_profile_deploys_to_moto(tmp_path):
    emulator = AwsEmulator("http://127.0.0.1:5000")
    doc = synth(ModelStack(cdktf.Testing.app(), "models", manifest=write_test_manifest(tmp_path / "model"), emulator=emulator))

    (provider,) = doc["provider"]["aws"]
    assert provider["endpoints"] == [dict.fromkeys(AWS_SERVICES, "http://127.0.0.1:5000")]
    assert only(doc, "aws_launch_template")["image_id"] == MOTO_IMAGE
    assert at(doc, "aws_s3_bucket", "ModelBucket")["force_destroy"] is True
