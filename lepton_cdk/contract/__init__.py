"""The files the two halves of lepton-cdk exchange: the model manifest, the
deploy outputs, the data plan and the policy report. Standard library only, so
that infra/ never imports torch and model_pipeline never imports cdktf."""

from .checksums import Digest, StreamingDigest, digest_bytes, digest_file
from .data_plan import DATA_PLAN_SCHEMA_VERSION, DataLocation, DataPlan, data_plan_from_dict, read_data_plan
from .errors import ChecksumMismatchError, ContractError, SchemaVersionError
from .files import (
    artifact_path_problem,
    digest_regular_file,
    open_regular_file,
    parse_json_document,
    read_json_document,
    resolve_artifact_path,
)
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
    TextSignature,
    artifact_problems,
    manifest_schema,
    read_artifact_bytes,
    read_manifest,
    validate_manifest_dict,
    verify_artifact,
    verify_artifacts,
    write_json_atomic,
    write_manifest,
)
from .outputs import StackOutputs, read_outputs
from .policy_report import (
    FINDING_LEVELS,
    POLICY_REPORT_FILENAME,
    POLICY_REPORT_SCHEMA_VERSION,
    Finding,
    policy_report_doc,
    policy_report_from_dict,
    policy_report_schema,
    read_policy_report,
    write_policy_report,
)

__all__ = [
    "DATA_PLAN_SCHEMA_VERSION", "DataLocation", "DataPlan", "data_plan_from_dict", "read_data_plan",
    "MANIFEST_FILENAME", "SCHEMA_VERSION", "Artifact", "ChecksumMismatchError", "ContractError", "Digest",
    "Lineage", "Manifest", "ParityReport", "SchemaVersionError", "ServingNeeds", "Signature", "StackOutputs",
    "StreamingDigest", "TensorSpec", "TextSignature", "digest_bytes", "digest_file", "manifest_schema", "read_manifest",
    "read_outputs", "validate_manifest_dict", "verify_artifacts", "write_json_atomic", "write_manifest",
    "artifact_path_problem", "artifact_problems", "digest_regular_file", "open_regular_file", "parse_json_document", "read_artifact_bytes",
    "read_json_document", "resolve_artifact_path", "verify_artifact",
    "FINDING_LEVELS", "POLICY_REPORT_FILENAME", "POLICY_REPORT_SCHEMA_VERSION", "Finding", "policy_report_doc",
    "policy_report_from_dict", "policy_report_schema", "read_policy_report", "write_policy_report",
]
