"""The manifest's artifacts through a real GCS API (gcp-storage-emulator) and back.

Cloud Storage reports crc32c as base64 of the big-endian value, the form the
manifest records, so a downloaded object can be checked against the
manifest with no conversion; sha256 travels as object metadata, the way
``lepton_cdk.gcp.ModelArtifacts`` uploads it.
"""

from __future__ import annotations

import hashlib

import pytest

from lepton_cdk.contract import read_manifest

pytestmark = pytest.mark.integration


@pytest.fixture
def gcs_client(gcs_emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="lepton-test", credentials=AnonymousCredentials())


def test_artifacts_round_trip_with_the_manifests_checksums(pipeline_out, gcs_client):
    manifest = read_manifest(pipeline_out / "manifest.json")
    bucket = gcs_client.create_bucket("lepton-models-roundtrip")
    prefix = f"models/{manifest.model_name}/{manifest.model_version}/"

    for art in manifest.artifacts:
        blob = bucket.blob(prefix + art.path)
        blob.metadata = {"sha256": art.sha256, "crc32c": art.crc32c}
        blob.upload_from_filename(str(manifest.artifact_file(art)), content_type=art.media_type, checksum="crc32c")

    listed = {b.name for b in gcs_client.list_blobs(bucket, prefix=prefix)}
    assert listed == {prefix + a.path for a in manifest.artifacts}
    for art in manifest.artifacts:
        blob = bucket.get_blob(prefix + art.path)
        assert blob.crc32c == art.crc32c, f"{art.name}: the store's crc32c differs from the manifest's"
        assert blob.size == art.bytes
        assert blob.metadata == {"sha256": art.sha256, "crc32c": art.crc32c}
        data = blob.download_as_bytes(checksum="crc32c")
        assert hashlib.sha256(data).hexdigest() == art.sha256
        assert data == manifest.artifact_file(art).read_bytes()


def test_a_corrupted_object_is_caught_by_its_checksums(pipeline_out, gcs_client):
    manifest = read_manifest(pipeline_out / "manifest.json")
    art = manifest.model_artifact
    bucket = gcs_client.create_bucket("lepton-models-corrupt")
    blob = bucket.blob(f"models/{manifest.model_name}/{manifest.model_version}/{art.path}")
    blob.upload_from_string(b"not the exported model", content_type=art.media_type)
    stored = bucket.get_blob(blob.name)
    assert stored.crc32c != art.crc32c
    assert hashlib.sha256(stored.download_as_bytes()).hexdigest() != art.sha256
