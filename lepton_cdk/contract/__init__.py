"""The files the two halves of lepton-cdk exchange: the model manifest and the
deploy outputs. Standard library only, so that infra/ never imports torch and
model_pipeline never imports cdktf."""

from .checksums import Digest, StreamingDigest, digest_bytes, digest_file
from .data_plan import DATA_PLAN_SCHEMA_VERSION, DataLocation, DataPlan, data_plan_from_dict, read_data_plan
from .errors import ChecksumMismatchError, ContractError, SchemaVersionError
from .manifest import (
    MANIFEST_FILENAME,
    SCHEMA_VERSION,
    Artifact,
    Lineage,
    Manifest,
    ParityReport,
    ServingNeeds,
    Signature,
    TensorSpec,
    manifest_schema,
    read_manifest,
    validate_manifest_dict,
    verify_artifacts,
    write_json_atomic,
    write_manifest,
)
from .outputs import StackOutputs, read_outputs

__all__ = [
    "DATA_PLAN_SCHEMA_VERSION", "DataLocation", "DataPlan", "data_plan_from_dict", "read_data_plan",
    "MANIFEST_FILENAME", "SCHEMA_VERSION", "Artifact", "ChecksumMismatchError", "ContractError", "Digest",
    "Lineage", "Manifest", "ParityReport", "SchemaVersionError", "ServingNeeds", "Signature", "StackOutputs",
    "StreamingDigest", "TensorSpec", "digest_bytes", "digest_file", "manifest_schema", "read_manifest",
    "read_outputs", "validate_manifest_dict", "verify_artifacts", "write_json_atomic", "write_manifest",
]
