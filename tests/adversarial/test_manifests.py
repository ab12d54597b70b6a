"""Hostile manifests: artifact paths that try to leave their folder, manifest files that are not manifests, and
synths that do not upload the manifest they claim. Every reader (``manifest verify``, ``serve``, ``export triton``,
``pipeline predict``, ``review``, the constructs and the infra app) must refuse with one line, or, for ``review``,
report the mismatch as a finding; and nothing outside the working folder may be read into a result or changed.

The "outside" files a path points at are byte-identical copies of the real artifacts, so a refusal here is the
folder rule at work, not a checksum that happens to differ.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lepton_cdk.contract import ContractError, read_manifest
from tests.support.hostile import Guard, run_lepton
from tests.support.manifests import write_fake_manifest

STAY_INSIDE = "relative to the manifest's folder"


# -- helpers ---------------------------------------------------------------------------------------------------------


def edit_manifest(manifest: Path, change: Callable[[dict], None]) -> None:
    """Rewrite ``manifest`` with ``change`` applied to its JSON document."""
    doc = json.loads(manifest.read_text())
    change(doc)
    manifest.write_text(json.dumps(doc))


def set_path(name: str, path: str) -> Callable[[dict], None]:
    """A change that gives artifact ``name`` the path ``path``."""
    def change(doc: dict) -> None:
        next(a for a in doc["artifacts"] if a["name"] == name)["path"] = path
    return change


def plant_outside(guard: Guard, source: Path) -> Path:
    """A byte-identical copy of ``source`` outside the working folder, then re-arm the guard so the copy is part
    of what must come out unchanged."""
    target = guard.base / "outside" / f"copy-of-{source.name}"
    shutil.copyfile(source, target)
    guard.arm()
    return target


def link_outside(guard: Guard, artifact: Path) -> Path:
    """Replace ``artifact`` by a symlink to an identical copy outside the working folder; returns the copy."""
    copy = plant_outside(guard, artifact)
    artifact.unlink()
    artifact.symlink_to(copy)
    return copy


@contextlib.contextmanager
def unreadable(path: Path) -> Iterator[None]:
    """``path`` cannot be read by this process: chmod 000, or, as root (who reads everything), run as nobody."""
    if os.geteuid() == 0:
        try:
            os.seteuid(65534)
        except PermissionError:
            pytest.skip("running as root without CAP_SETUID: no way to make a file unreadable to this process")
        try:
            yield
        finally:
            os.seteuid(0)
    else:
        mode = path.stat().st_mode
        path.chmod(0)
        try:
            yield
        finally:
            path.chmod(mode)


@pytest.fixture
def model(guard: Guard) -> Path:
    """A fake manifest folder (model.onnx + preprocessing.json) inside the working folder; returns manifest.json."""
    return write_fake_manifest(guard.work / "model")


@pytest.fixture
def run_copy(guard: Guard, pipeline_out: Path) -> Path:
    """A copy of the real small pipeline run inside the working folder (the shared run is never touched)."""
    return Path(shutil.copytree(pipeline_out, guard.work / "run", symlinks=True))


def verify(path: Path | str):
    return run_lepton("manifest", "verify", str(path))


# -- lepton manifest verify: artifact paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("path, problem", [
    ("../outside/victim.txt", "'..' segment"),
    ("model/../../outside/victim.txt", "'..' segment"),
    ("/etc/passwd", "is absolute"),
    ("C:/Windows/win.ini", "drive letter"),
    ("models\\preprocessing.json", "backslash"),
    ("./preprocessing.json", "'.' or '..' segment"),
    ("sub//preprocessing.json", "empty"),
    ("preprocessing.json/", "empty"),
    ("pre\x00processing.json", "NUL byte"),
    ("", "is empty"),
])
def test_manifest_verify_refuses_an_artifact_path_that_leaves_the_folder(guard, model, path, problem):
    edit_manifest(model, set_path("preprocessing", path))
    guard.publish(model.parent)
    outcome = verify(model)
    assert outcome.code == 1
    line = outcome.error_line
    assert problem in line and "artifact 'preprocessing'" in line and STAY_INSIDE in line


def test_manifest_verify_refuses_a_symlink_to_an_identical_file_outside(guard, model):
    copy = link_outside(guard, model.parent / "preprocessing.json")
    guard.publish(model.parent)
    outcome = verify(model)
    assert outcome.code == 1
    line = outcome.error_line
    assert f"resolves to {copy}" in line and "outside the manifest's folder" in line


def test_manifest_verify_refuses_a_symlinked_folder_that_leads_outside(guard, model):
    copy = plant_outside(guard, model.parent / "preprocessing.json")
    (model.parent / "shared").symlink_to(copy.parent)
    edit_manifest(model, set_path("preprocessing", f"shared/{copy.name}"))
    outcome = verify(model)
    assert outcome.code == 1
    assert "outside the manifest's folder" in outcome.error_line


def test_a_symlink_that_stays_inside_the_folder_is_still_read(guard, model):
    # the rule is about where a path leads, not about symlinks: a content-addressed layout keeps working
    blobs = model.parent / "blobs"
    blobs.mkdir()
    (model.parent / "model.onnx").rename(blobs / "model.onnx")
    (model.parent / "model.onnx").symlink_to(Path("blobs") / "model.onnx")
    outcome = verify(model)
    assert outcome.code == 0, outcome.stderr
    assert "2 artifacts match" in outcome.stdout


def test_an_artifact_that_is_a_fifo_is_refused_without_blocking(guard, model):
    pre = model.parent / "preprocessing.json"
    pre.unlink()
    os.mkfifo(pre)  # opened naively, reading it would wait for a writer forever
    outcome = verify(model)
    assert outcome.code == 1
    assert "artifact 'preprocessing'" in outcome.error_line and "not a regular file" in outcome.error_line


# -- lepton manifest verify: the manifest file itself --------------------------------------------------------------


def _deep(doc_path: Path) -> None:
    doc_path.write_text("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("make, argument, message", [
    (lambda m: (m.unlink(), m.mkdir()), ".", "manifest.json is a folder, not a file"),
    (lambda m: None, "manifest.json/manifest.json", "manifest.json is a file, not a folder"),
    (_deep, "manifest.json", "nests JSON arrays or objects too deeply"),
    (lambda m: m.write_text('["a manifest?"]'), "manifest.json", "is not a JSON object"),
    (lambda m: m.write_text("null"), "manifest.json", "is not a JSON object"),
    (lambda m: m.write_bytes(b"\xff\xfe{\x00}\x00"), "manifest.json", "is not UTF-8 text"),
    (lambda m: m.write_text('{"schema_version": "1.0.0", "n": ' + "9" * 5000 + "}"), "manifest.json",
     "holds a value that cannot be read"),
    (lambda m: (m.unlink(), os.mkfifo(m)), "manifest.json", "is not a regular file"),
    (lambda m: (m.unlink(), m.symlink_to("manifest.json")), "manifest.json", "Too many levels of symbolic links"),
    (lambda m: edit_manifest(m, lambda d: d["artifacts"][0].update(bytes="4096")), "manifest.json",
     "$.artifacts[0].bytes: expected integer, got str"),
    (lambda m: edit_manifest(m, lambda d: d["signature"].update(inputs={"features": "float32"})), "manifest.json",
     "$.signature.inputs: expected array, got dict"),
    (lambda m: edit_manifest(m, lambda d: d.update(artifacts=[None])), "manifest.json",
     "$.artifacts[0]: expected object, got NoneType"),
])
def test_a_manifest_that_is_not_a_manifest_gets_one_line(guard, model, make, argument, message):
    make(model)
    outcome = verify(model.parent / argument)
    assert outcome.code == 1
    assert message in outcome.error_line


def test_an_unreadable_manifest_says_permission_denied(guard, model):
    with unreadable(model):
        outcome = verify(model)
    assert outcome.code == 1
    assert "permission denied" in outcome.error_line and "read access" in outcome.error_line


def test_a_newer_minor_versions_extra_lineage_field_still_reads(guard, model):
    # the schema leaves lineage and serving open for 1.x additions; the reader must not crash on one
    edit_manifest(model, lambda d: (d.update(schema_version="1.9.0"), d["lineage"].update(dataset_card="cards/v2"),
                                    d["serving"].update(warm_pool=2)))
    outcome = verify(model)
    assert outcome.code == 0, outcome.stderr


# -- lepton serve, export triton, pipeline predict on the real run -------------------------------------------------


@pytest.fixture
def no_server(monkeypatch):
    """If a hostile manifest were accepted, fail at once instead of starting a server that never returns."""
    from lepton_cdk.serve import server

    def refuse(*args, **kwargs):
        raise AssertionError("lepton serve accepted the manifest and would have started serving")

    monkeypatch.setattr(server, "build_server", refuse)


def test_serve_refuses_a_tampered_preprocessor_even_though_the_model_is_intact(guard, run_copy, no_server):
    pre = run_copy / "preprocessor.json"
    pre.write_text(pre.read_text().replace("0", "1", 1))
    outcome = run_lepton("serve", str(run_copy), "--port", "0")
    assert outcome.code == 1
    line = outcome.error_line
    assert line.startswith("error: refusing to serve") and "artifact 'preprocessor'" in line and "the manifest records" in line


def test_serve_refuses_a_model_symlinked_to_an_identical_copy_outside(guard, run_copy, no_server):
    link_outside(guard, run_copy / "model.onnx")
    outcome = run_lepton("serve", str(run_copy), "--port", "0")
    assert outcome.code == 1
    assert "artifact 'model'" in outcome.error_line and "outside the manifest's folder" in outcome.error_line


def test_a_model_swapped_after_its_check_never_reaches_onnxruntime(guard, run_copy, monkeypatch):
    # the file is replaced by garbage right after it was read and checked: the session must be built from the
    # checked bytes (a second read by path would hand onnxruntime the garbage and fail to load)
    from lepton_cdk.serve import runtime

    real = runtime.read_artifact_bytes

    def read_then_swap(manifest, artifact):
        data = real(manifest, artifact)
        (run_copy / "model.onnx").write_bytes(b"\x08\x07 not the exported graph")
        return data

    monkeypatch.setattr(runtime, "read_artifact_bytes", read_then_swap)
    loaded = runtime.load_model(run_copy, providers="cpu")
    assert [i.name for i in loaded.session.get_inputs()] == [t.name for t in loaded.manifest.signature.inputs]


def test_export_triton_refuses_a_dotdot_model_path_and_keeps_the_published_repository(guard, run_copy):
    repo = guard.work / "repo"
    assert run_lepton("export", "triton", str(run_copy), str(repo)).code == 0
    guard.publish(repo)
    shutil.copyfile(run_copy / "model.onnx", guard.work / "model.onnx")
    edit_manifest(run_copy / "manifest.json", set_path("model", "../model.onnx"))
    outcome = run_lepton("export", "triton", str(run_copy), str(repo), "--force")
    assert outcome.code == 1
    assert "artifact 'model' has path '../model.onnx'" in outcome.error_line and STAY_INSIDE in outcome.error_line


def test_export_triton_refuses_a_model_symlinked_outside_and_writes_nothing(guard, run_copy):
    link_outside(guard, run_copy / "model.onnx")
    outcome = run_lepton("export", "triton", str(run_copy), str(guard.work / "repo"))
    assert outcome.code == 1
    assert outcome.error_line.startswith("error: refusing to serve") and "outside the manifest's folder" in outcome.error_line
    assert not (guard.work / "repo").exists()


def test_predict_refuses_a_preprocessor_symlinked_outside_and_keeps_the_published_predictions(guard, run_copy):
    out = guard.work / "predictions.csv"
    data = str(run_copy / "data" / "target.csv")
    assert run_lepton("pipeline", "predict", str(run_copy), "--data", data, "--out", str(out)).code == 0
    guard.publish(out)
    link_outside(guard, run_copy / "preprocessor.json")
    outcome = run_lepton("pipeline", "predict", str(run_copy), "--data", data, "--out", str(out))
    assert outcome.code == 1
    assert "artifact 'preprocessor'" in outcome.error_line and "outside the manifest's folder" in outcome.error_line


def test_predict_refuses_a_tampered_metrics_file_before_scoring(guard, run_copy):
    # predict reads only the preprocessor and the model, but a run is trusted whole or not at all
    (run_copy / "metrics.json").write_text("{}")
    out = guard.work / "p.csv"
    outcome = run_lepton("pipeline", "predict", str(run_copy), "--data", str(run_copy / "data" / "target.csv"), "--out", str(out))
    assert outcome.code == 1
    assert "artifact 'metrics'" in outcome.error_line and "the manifest records" in outcome.error_line
    assert not out.exists()


# -- the infra app and the constructs ------------------------------------------------------------------------------


def test_the_infra_app_refuses_an_escaping_artifact_before_synth(guard, model, monkeypatch, capsys):
    from lepton_cdk.app.main import main as infra_main

    link_outside(guard, model.parent / "preprocessing.json")
    monkeypatch.setenv("LEPTON_MANIFEST", str(model))
    monkeypatch.setenv("CDKTF_OUTDIR", str(guard.work / "cdktf.out"))
    assert infra_main() == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: manifest artifact 'preprocessing'")
    assert "outside the manifest's folder" in err
    assert not (guard.work / "cdktf.out").exists()


def test_model_artifacts_never_stage_a_file_from_outside_the_manifest_folder(guard, model):
    from lepton_cdk.aws import ModelArtifacts, ModelBucket
    from lepton_cdk.core.framework import aws
    from tests.support.synth import synth_json

    def synth(manifest):
        return synth_json(lambda s: ModelArtifacts(s, "Model", bucket=ModelBucket(s, "ModelBucket"), manifest=manifest),
                          provider=lambda s: aws.provider.AwsProvider(s, "aws", region="us-east-1"))

    # a Manifest built in memory skips the reader's checks; the construct still resolves through the contract
    read = read_manifest(model)
    copy = plant_outside(guard, model.parent / "preprocessing.json")
    dotdot = replace(read, artifacts=[replace(a, path=f"../../outside/{copy.name}") if a.name == "preprocessing" else a
                                      for a in read.artifacts])
    with pytest.raises(ContractError, match="has path '../../outside/copy-of-preprocessing.json', which has an empty") as err:
        synth(dotdot)
    assert "\n" not in str(err.value)
    link_outside(guard, model.parent / "model.onnx")
    with pytest.raises(ContractError, match="artifact 'model' .*outside the manifest's folder"):
        synth(read)


# -- lepton review --manifest ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory) -> tuple[Path, Path]:
    """(cdktf.out with both clouds' stacks, the manifest folder it uploads), synthesized once for this module."""
    from tests.support.terraform import synth_infra

    root = tmp_path_factory.mktemp("synth")
    manifest = write_fake_manifest(root / "model")
    synth_infra(root / "cdktf.out", {"LEPTON_TARGET": "all", "LEPTON_MANIFEST": str(manifest)})
    return root / "cdktf.out", manifest.parent


@pytest.fixture
def review_inputs(guard, synthesized) -> tuple[Path, Path]:
    """Copies of the synth and its manifest folder inside the working folder (a test tampers with one of them)."""
    return Path(shutil.copytree(synthesized[0], guard.work / "cdktf.out")), Path(shutil.copytree(synthesized[1], guard.work / "model"))


def review_json(out: Path, manifest: Path) -> dict:
    outcome = run_lepton("review", str(out), "--manifest", str(manifest), "--no-checkov", "--format", "json")
    assert outcome.code == 0, outcome.stderr
    return json.loads(outcome.stdout)["manifest"]


def review_markdown(out: Path, manifest: Path) -> str:
    outcome = run_lepton("review", str(out), "--manifest", str(manifest), "--no-checkov")
    assert outcome.code == 0, outcome.stderr
    return outcome.stdout


def test_review_passes_the_manifest_the_synth_uploads(review_inputs, guard):
    out, model = review_inputs
    guard.publish(out, model)  # the review only reads
    check = review_json(out, model)
    assert check["passed"] and check["findings"] == []
    assert check["objects_checked"] == 4 and check["stacks_checked"] == ["lepton-aws", "lepton-gcp"]
    assert "every one the manifest's" in review_markdown(out, model)


def test_review_reports_a_tampered_artifact_as_a_finding(review_inputs, guard):
    out, model = review_inputs
    guard.publish(out)
    (model / "model.onnx").write_bytes(os.urandom(4096))  # same size, other bytes
    check = review_json(out, model)
    assert not check["passed"]
    (finding,) = check["findings"]
    assert finding["stack"] == "" and finding["resource"] == "artifact 'model'" and "has sha256" in finding["message"]
    assert "**1 finding(s)**" in review_markdown(out, model)


def test_review_reports_a_manifest_the_stacks_do_not_upload(review_inputs, guard):
    out, _ = review_inputs
    guard.publish(out)
    # same model name, version, artifact names and paths; other bytes
    other = write_fake_manifest(guard.work / "other-model",
                                files={"model": os.urandom(4096), "preprocessing": b'{"mean": [1.5], "std": [2.0]}\n'})
    check = review_json(out, other)
    # per stack and object: the declared metadata.sha256 (and source_hash on AWS) and the staged file's hash
    by_stack = {s: [f for f in check["findings"] if f["stack"] == s] for s in ("lepton-aws", "lepton-gcp")}
    assert len(by_stack["lepton-aws"]) == 2 * 3 and len(by_stack["lepton-gcp"]) == 2 * 2
    assert all("the manifest records" in f["message"] for f in check["findings"])
    markdown = review_markdown(out, other)
    assert "**10 finding(s)**" in markdown and "`lepton-gcp` `google_storage_bucket_object." in markdown


def test_review_reports_a_staged_file_swapped_after_synth(review_inputs):
    out, model = review_inputs
    (staged,) = (out / "stacks" / "lepton-aws" / "assets").glob("*Asset-model*/*/model.onnx")
    staged.chmod(0o644)
    staged.write_bytes(os.urandom(4096))
    check = review_json(out, model)
    (finding,) = check["findings"]
    assert finding["stack"] == "lepton-aws" and finding["resource"].startswith("aws_s3_object.")
    assert "uploads a file whose sha256 is" in finding["message"] and "artifact 'model'" in finding["message"]


def test_review_never_reads_a_staged_source_outside_its_stack(review_inputs, guard):
    out, model = review_inputs
    stack_file = out / "stacks" / "lepton-gcp" / "cdk.tf.json"
    doc = json.loads(stack_file.read_text())
    (name,) = [n for n in doc["resource"]["google_storage_bucket_object"] if "Object-model" in n]
    copy = plant_outside(guard, model / "model.onnx")
    doc["resource"]["google_storage_bucket_object"][name]["source"] = f"../../../../outside/{copy.name}"
    stack_file.write_text(json.dumps(doc))
    check = review_json(out, model)
    (finding,) = check["findings"]
    assert finding["stack"] == "lepton-gcp" and "leaves the stack folder" in finding["message"]
    # without --manifest, pricing the upload reads the same source: one clear line, not a size from outside
    outcome = run_lepton("review", str(out), "--no-checkov")
    assert outcome.code == 1
    assert "leaves the stack folder" in outcome.error_line


def test_review_with_a_manifest_that_is_not_one_is_a_clean_error(review_inputs):
    out, _ = review_inputs
    # cdktf writes its own manifest.json into cdktf.out: an easy file to pass by mistake
    outcome = run_lepton("review", str(out), "--manifest", str(out / "manifest.json"), "--no-checkov")
    assert outcome.code == 1
    assert "is not a lepton-cdk model manifest" in outcome.error_line
