"""The manifest / outputs contract between model_pipeline and infra."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import jsonschema
import pytest

from lepton_cdk.contract import (
    SCHEMA_VERSION,
    Artifact,
    ChecksumMismatchError,
    ContractError,
    Lineage,
    Manifest,
    ParityReport,
    SchemaVersionError,
    ServingNeeds,
    Signature,
    TensorSpec,
    checksums,
    digest_bytes,
    manifest_schema,
    read_artifact_bytes,
    read_data_plan,
    read_manifest,
    read_outputs,
    resolve_artifact_path,
    validate_manifest_dict,
    write_manifest,
)


def _manifest(folder) -> Manifest:
    (folder / "model.onnx").write_bytes(os.urandom(4096))
    (folder / "notes").mkdir()
    (folder / "notes" / "preprocessor.json").write_text('{"median": [1.0]}')
    arts = [
        Artifact.from_file("model", folder / "model.onnx", folder, "application/onnx"),
        Artifact.from_file("preprocessor", folder / "notes" / "preprocessor.json", folder, "application/json"),
    ]
    return Manifest(
        model_name="credit-risk",
        model_version="20261128-abc123",
        task="binary-classification",
        artifacts=arts,
        signature=Signature(
            opset=18,
            inputs=[TensorSpec("features", "float32", ["batch", 8])],
            outputs=[TensorSpec("logit", "float32", ["batch", 1]), TensorSpec("probability", "float32", ["batch", 1])],
            exporter="torch.onnx.export(dynamo=True)",
        ),
        parity=ParityReport(atol=1e-5, rtol=1e-4, max_abs_diff=2e-7, max_rel_diff=1e-6, rows_checked=200, passed=True),
        metrics={"target_test": {"fine_tuned": {"auc": 0.8}}},
        lineage=Lineage(data_fingerprint="a" * 64, source_model_sha256="b" * 64, seed=7),
        serving=ServingNeeds(min_gpu_memory_gib=1, max_batch_size=1024),
    )


@pytest.fixture
def written(tmp_path):
    manifest = _manifest(tmp_path)
    path = write_manifest(manifest, tmp_path / "manifest.json")
    return manifest, path


def test_round_trip_keeps_every_field(written):
    manifest, path = written
    again = read_manifest(path)
    assert again.to_dict() == manifest.to_dict()
    assert again.artifact_file(again.model_artifact) == path.parent / "model.onnx"
    assert again.artifact("preprocessor").path == "notes/preprocessor.json"


def test_reading_a_folder_finds_its_manifest(written):
    _, path = written
    assert read_manifest(path.parent).model_name == "credit-risk"


def test_shipped_schema_is_valid_and_accepts_what_we_write(written):
    manifest, _ = written
    jsonschema.Draft202012Validator.check_schema(manifest_schema())
    jsonschema.validate(manifest.to_dict(), manifest_schema())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("artifacts"),
        lambda d: d["artifacts"][0].update(sha256="XYZ"),
        lambda d: d["artifacts"][0].update(crc32c="not base64"),
        lambda d: d["artifacts"][0].update(path="/etc/passwd"),
        lambda d: d["parity"].update(passed=False),
        lambda d: d["signature"]["inputs"][0].update(dtype="float128"),
        lambda d: d.update(surprise=1),
        lambda d: d["model"].update(name="Bad Name!"),
        lambda d: d["serving"].update(max_batch_size=0),
    ],
)
def test_stdlib_checker_agrees_with_jsonschema_on_invalid_documents(written, mutate):
    manifest, _ = written
    doc = manifest.to_dict()
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, manifest_schema())
    # an absolute artifact path is named by the contract's own path rule, before the schema's regex
    with pytest.raises(ContractError, match="does not match the manifest schema|has path '/etc/passwd', which is absolute"):
        validate_manifest_dict(doc)


@pytest.mark.parametrize("path", ["../model.onnx", "notes/../../x", "./model.onnx", "C:/model.onnx", "notes//x", "notes/"])
def test_the_shipped_schema_states_the_artifact_path_rule_for_other_validators(written, path):
    manifest, _ = written
    doc = manifest.to_dict()
    doc["artifacts"][0]["path"] = path
    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        jsonschema.validate(doc, manifest_schema())
    with pytest.raises(ContractError, match=f"has path {path!r}, which"):
        validate_manifest_dict(doc)


def test_a_failed_parity_gate_cannot_be_written(tmp_path):
    manifest = _manifest(tmp_path)
    bad = Manifest(**{**manifest.__dict__, "parity": ParityReport(1e-5, 1e-4, 0.3, 0.5, 200, passed=False)})
    with pytest.raises(ContractError, match="parity.passed"):
        write_manifest(bad, tmp_path / "manifest.json")
    assert not (tmp_path / "manifest.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".manifest.json")]


def test_newer_major_version_is_refused_with_the_fix(written):
    _, path = written
    doc = json.loads(path.read_text())
    doc["schema_version"] = "2.0.0"
    path.write_text(json.dumps(doc))
    with pytest.raises(SchemaVersionError, match=r"schema_version 2\.0\.0 .* major version 1; upgrade lepton-cdk"):
        read_manifest(path)


def test_newer_minor_version_is_read(written):
    _, path = written
    doc = json.loads(path.read_text())
    doc["schema_version"] = "1.7.0"
    path.write_text(json.dumps(doc))
    assert read_manifest(path).schema_version == "1.7.0"


def test_tampered_artifact_fails_the_checksum(written):
    _, path = written
    model = path.parent / "model.onnx"
    data = bytearray(model.read_bytes())
    data[100] ^= 0x01  # one flipped bit, same size
    model.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="'model' .* has sha256 .* manifest records"):
        read_manifest(path)
    assert read_manifest(path, verify=False).model_name == "credit-risk"


def test_missing_artifact_is_named(written):
    _, path = written
    (path.parent / "notes" / "preprocessor.json").unlink()
    with pytest.raises(ContractError, match="artifact 'preprocessor' is missing"):
        read_manifest(path)


@pytest.mark.parametrize("text,match", [("{not json", "not valid JSON"), ("[]", "not a JSON object"), ("", "not valid JSON")])
def test_malformed_manifest_gets_one_clear_line(tmp_path, text, match):
    path = tmp_path / "manifest.json"
    path.write_text(text)
    with pytest.raises(ContractError, match=match) as info:
        read_manifest(path)
    assert "\n" not in str(info.value)


def test_missing_manifest_says_how_to_make_one(tmp_path):
    with pytest.raises(ContractError, match="run `lepton demo` first"):
        read_manifest(tmp_path / "nope.json")


@pytest.mark.parametrize("rel, problem", [
    ("../x", "'..' segment"), ("a/./b", "'.' or '..' segment"), ("/abs", "is absolute"), ("c:/x", "drive letter"),
    ("a\\b", "backslash"), ("a\x00b", "NUL byte"), ("", "is empty"), ("a//b", "empty"),
])
def test_an_artifact_path_must_be_relative_plain_and_inside(tmp_path, rel, problem):
    with pytest.raises(ContractError, match=problem) as info:
        resolve_artifact_path(tmp_path, rel, name="model")
    assert str(info.value).startswith("manifest artifact 'model' has path") and "\n" not in str(info.value)


def test_an_artifact_path_resolves_through_symlinks_that_stay_inside(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    (run / "blobs").mkdir(parents=True)
    outside.mkdir()
    (run / "blobs" / "abc").write_bytes(b"model")
    (run / "model.onnx").symlink_to("blobs/abc")
    (run / "escape").symlink_to(outside)
    assert resolve_artifact_path(run, "model.onnx") == (run / "blobs" / "abc").resolve()
    with pytest.raises(ContractError, match="outside the manifest's folder"):
        resolve_artifact_path(run, "escape/anything")
    assert resolve_artifact_path(run, "not/yet/written.bin") == run.resolve() / "not/yet/written.bin"


def test_read_artifact_bytes_checks_exactly_what_it_returns(written):
    manifest, path = written
    again = read_manifest(path)
    assert read_artifact_bytes(again, "model") == (path.parent / "model.onnx").read_bytes()
    # a far larger file is refused by its size, named as it is, without being loaded
    (path.parent / "model.onnx").write_bytes(b"\0" * 2**20)
    with pytest.raises(ChecksumMismatchError, match=f"has bytes {2**20} but the manifest records 4096"):
        read_artifact_bytes(again, "model")


@pytest.mark.parametrize("reader, what", [(read_outputs, "outputs file"), (read_data_plan, "data plan")])
def test_other_contract_files_get_the_same_one_line_errors(tmp_path, reader, what):
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(ContractError, match=f"{what} .*folder.json is a folder, not a file"):
        reader(tmp_path / "folder.json")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(ContractError, match=f"{what} .*deep.json nests JSON arrays or objects too deeply"):
        reader(deep)


def test_crc32c_matches_the_standard_check_values():
    # RFC 3720 B.4 / the CRC catalogue: crc32c("123456789") == 0xE3069283
    assert base64.b64decode(digest_bytes(b"123456789").crc32c).hex() == "e3069283"
    assert base64.b64decode(digest_bytes(bytes(32)).crc32c).hex() == "8a9136aa"


def test_pure_python_crc32c_agrees_with_google_crc32c():
    google_crc32c = pytest.importorskip("google_crc32c")
    data = os.urandom(10_000)
    assert checksums._crc32c_update_py(0, data) == google_crc32c.value(data)
    # chunked updates compose the same way as one pass
    assert checksums._crc32c_update_py(checksums._crc32c_update_py(0, data[:777]), data[777:]) == google_crc32c.value(data)


def test_sha256_base64_is_the_s3_checksum_form():
    d = digest_bytes(b"hello")
    assert base64.b64decode(d.sha256_base64).hex() == d.sha256


def test_reads_cdktf_outputs_file(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"lepton-aws": {"bucket_name": "b", "model_uri": "s3://b/m"}, "lepton-gcp": {}}))
    outputs = read_outputs(path)
    assert outputs["lepton-aws"].get("model_uri") == "s3://b/m"
    with pytest.raises(ContractError, match="no output 'endpoint_url' .* bucket_name, model_uri"):
        outputs["lepton-aws"].get("endpoint_url")
    with pytest.raises(ContractError, match="no stack 'other'"):
        read_outputs(path, stack="other")


def test_reads_terraform_output_json(tmp_path):
    path = tmp_path / "tf.json"
    path.write_text(json.dumps({"bucket_name": {"value": "b", "type": "string", "sensitive": False}}))
    assert read_outputs(path, stack="lepton-aws")["lepton-aws"].get("bucket_name") == "b"


def test_outputs_file_errors_name_the_fix(tmp_path):
    with pytest.raises(ContractError, match="cdktf deploy --outputs-file"):
        read_outputs(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"stack": 3}')
    with pytest.raises(ContractError, match="stack 'stack' maps to int"):
        read_outputs(bad)


def test_contract_and_package_root_import_nothing_heavy():
    code = (
        "import sys, lepton_cdk, lepton_cdk.contract;"
        "heavy = {'torch', 'cdktf', 'jsii', 'constructs', 'numpy', 'pandas', 'onnx', 'boto3', 'botocore'};"
        "found = heavy & {m.split('.')[0] for m in sys.modules};"
        "print(sorted(found | ({'google.cloud'} & set(sys.modules))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_schema_version_constant_is_semver():
    assert [int(p) for p in SCHEMA_VERSION.split(".")][0] == 1


# -- schema 1.2.0: text models ------------------------------------------------------------------------------------


def _text_manifest(folder, **text_overrides) -> Manifest:
    """A text classifier's manifest: clients send strings, the tokenizer artifact turns them into token ids."""
    from lepton_cdk.contract import TextSignature

    (folder / "model.onnx").write_bytes(os.urandom(2048))
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    arts = [Artifact.from_file("model", folder / "model.onnx", folder, "application/onnx"),
            Artifact.from_file("tokenizer", folder / "tokenizer.json", folder, "application/json")]
    ids = [TensorSpec(n, "int64", ["batch", "sequence"]) for n in ("input_ids", "attention_mask")]
    text = TextSignature(**({"input": "text", "tokenizer": "tokenizer", "max_length": 128, "graph_inputs": ids, "lowercase": True}
                            | text_overrides))
    return Manifest(
        model_name="topics", model_version="abc", task="multiclass-classification", artifacts=arts,
        signature=Signature(opset=18, inputs=[TensorSpec("text", "string", ["batch"], columns=["message"])],
                            outputs=[TensorSpec("logits", "float32", ["batch", 3]), TensorSpec("probabilities", "float32", ["batch", 3])],
                            text=text, labels=["computers", "science", "work"]),
        parity=ParityReport(atol=1e-5, rtol=1e-4, max_abs_diff=3e-8, max_rel_diff=1e-6, rows_checked=42, passed=True),
        metrics={}, lineage=Lineage(data_fingerprint="a" * 64, source_model_sha256="b" * 64, seed=7),
        serving=ServingNeeds(min_gpu_memory_gib=1, max_batch_size=64),
    )


def test_a_text_manifest_is_written_as_1_2_0_and_reads_back_whole(tmp_path):
    manifest = _text_manifest(tmp_path)
    assert manifest.schema_version == "1.2.0" == SCHEMA_VERSION
    path = write_manifest(manifest, tmp_path / "manifest.json")
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, manifest_schema())
    assert doc["signature"]["text"]["graph_inputs"][0] == {"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]}
    assert "pooling" not in doc["signature"]["text"], "pooling is stated for embedding models only"
    again = read_manifest(path)
    assert again.to_dict() == manifest.to_dict()
    assert again.signature.graph_inputs == manifest.signature.text.graph_inputs and again.signature.labels == ["computers", "science", "work"]


def test_a_tabular_manifest_stays_1_1_0_without_the_new_fields(written):
    manifest, path = written
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == "1.1.0" and manifest.schema_version == "1.1.0"
    assert "text" not in doc["signature"] and "labels" not in doc["signature"], "a 1.1 reader knows every field"
    assert read_manifest(path).signature.text is None


def test_a_1_0_0_manifest_still_reads(written):
    _, path = written
    doc = json.loads(path.read_text())
    doc["schema_version"] = "1.0.0"
    path.write_text(json.dumps(doc))
    assert read_manifest(path).schema_version == "1.0.0"


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(schema_version="1.1.0"), r"uses signature.text, signature.labels, task 'multiclass-classification', which need "
                                                 r"schema_version 1.2.0 or later, but says 1.1.0"),
    (lambda d: d["signature"]["text"].update(tokenizer="vocab"), "names artifact 'vocab', which the manifest does not list"),
    (lambda d: d["signature"]["text"].update(input="message"), r"signature.text.input 'message' is not a string input of the signature"),
])
def test_what_the_schema_cannot_say_about_a_text_manifest_is_checked_too(tmp_path, mutate, message):
    doc = _text_manifest(tmp_path).to_dict()
    mutate(doc)
    with pytest.raises(ContractError, match=message):
        validate_manifest_dict(doc)


@pytest.mark.parametrize("mutate", [
    lambda d: d["signature"]["text"].update(max_length=1),
    lambda d: d["signature"]["text"].update(truncation="middle"),
    lambda d: d["signature"]["text"].update(padding="max_length"),
    lambda d: d["signature"]["text"].update(pooling="cls"),
    lambda d: d["signature"]["text"].update(stride=16),
    lambda d: d["signature"]["text"].pop("graph_inputs"),
    lambda d: d["signature"]["text"]["graph_inputs"][0].update(dtype="int8"),
    lambda d: d["signature"].update(labels=[1, 2, 3]),
    lambda d: d["model"].update(task="ranking"),
])
def test_stdlib_checker_agrees_with_jsonschema_on_invalid_text_manifests(tmp_path, mutate):
    doc = _text_manifest(tmp_path).to_dict()
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, manifest_schema())
    with pytest.raises(ContractError, match="does not match the manifest schema"):
        validate_manifest_dict(doc)


# -- the policy report -------------------------------------------------------------------------------------------


def _findings() -> list:
    from lepton_cdk.contract import Finding

    return [
        Finding("lepton-aws", "LEP-NET-1", "error", "lepton-aws/Web/Open", "[LEP-NET-1] No world-open ingress: ...",
                address="aws_security_group.Web_Open_1A2B3C4D", detail="ingress from 0.0.0.0/0"),
        Finding("lepton-gcp", "LEP-RETAIN-1", "error", "lepton-gcp/Default/ModelBucket/Key", "[LEP-RETAIN-1] ...",
                suppressed=True, reason="dev stack that cdktf destroy must delete"),
        Finding("lepton-gcp", "LEP-X-9", "info", "lepton-gcp/Default/Serving", "noted"),
    ]


def test_policy_report_schema_is_valid_and_what_the_writer_writes_reads_back(tmp_path):
    from lepton_cdk.contract import (
        POLICY_REPORT_FILENAME,
        policy_report_schema,
        read_policy_report,
        write_policy_report,
    )

    jsonschema.Draft202012Validator.check_schema(policy_report_schema())
    path = write_policy_report(tmp_path, _findings())
    assert path == tmp_path / POLICY_REPORT_FILENAME
    jsonschema.validate(json.loads(path.read_text()), policy_report_schema())
    assert read_policy_report(tmp_path) == _findings()
    assert [f.failing for f in read_policy_report(tmp_path)] == [True, False, False]
    assert read_policy_report(tmp_path / "no-synth-here") is None


def test_a_report_from_before_address_and_detail_still_reads_and_extra_fields_are_ignored(tmp_path):
    from lepton_cdk.contract import POLICY_REPORT_FILENAME, read_policy_report

    (tmp_path / POLICY_REPORT_FILENAME).write_text(json.dumps({"schema_version": "1.0.0", "generator": "older lepton-cdk", "findings": [
        {"stack": "s", "rule": "LEP-S3-1", "level": "warning", "resource": "s/B", "message": "m", "added_later": 1}]}))
    [finding] = read_policy_report(tmp_path)
    assert (finding.rule, finding.level, finding.suppressed, finding.reason, finding.address, finding.detail) == (
        "LEP-S3-1", "warning", False, "", "", "")


@pytest.mark.parametrize("mutate", [
    lambda d: d["findings"][0].pop("rule"),
    lambda d: d["findings"][0].update(level="fatal"),
    lambda d: d["findings"][0].update(suppressed="yes"),
    lambda d: d.update(findings={"0": d["findings"][0]}),
    lambda d: d.pop("findings"),
])
def test_stdlib_checker_agrees_with_jsonschema_on_invalid_policy_reports(tmp_path, mutate):
    from lepton_cdk.contract import POLICY_REPORT_FILENAME, policy_report_doc, policy_report_schema, read_policy_report

    doc = policy_report_doc(_findings())
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, policy_report_schema())
    (tmp_path / POLICY_REPORT_FILENAME).write_text(json.dumps(doc))
    with pytest.raises(ContractError, match="does not match the policy report schema.*regenerate it with `cdktf synth`"):
        read_policy_report(tmp_path)


def test_policy_report_of_a_newer_major_version_or_not_json_is_refused_in_one_line(tmp_path):
    from lepton_cdk.contract import POLICY_REPORT_FILENAME, read_policy_report

    report = tmp_path / POLICY_REPORT_FILENAME
    report.write_text(json.dumps({"schema_version": "2.0.0", "findings": []}))
    with pytest.raises(SchemaVersionError, match=r"policy report .* schema_version 2\.0\.0 .* upgrade lepton-cdk"):
        read_policy_report(tmp_path)
    report.write_text("{")
    with pytest.raises(ContractError, match="is not valid JSON") as err:
        read_policy_report(tmp_path)
    assert "\n" not in str(err.value)


def test_the_checks_write_and_the_review_reads_the_contract_report_not_copies_of_it():
    import lepton_cdk.checks as checks
    import lepton_cdk.checks.engine as engine
    import lepton_cdk.contract.policy_report as report
    import lepton_cdk.review.policy as review_policy

    # one owner: a re-declared file name, finding type or reader would drift from what the other side reads
    assert checks.Finding is engine.Finding is review_policy.Finding is report.Finding
    assert review_policy.read_policy_report is report.read_policy_report and checks.write_report is report.write_policy_report
    assert checks.REPORT_FILENAME == report.POLICY_REPORT_FILENAME
