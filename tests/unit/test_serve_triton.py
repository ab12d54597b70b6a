"""The Triton side: config.pbtxt generated from a signature (against golden files), the
repository `lepton export triton` writes, and the node boot script that lays it out and
starts Triton.

The boot script runs for real under bash; ``docker`` is a stand-in on PATH that records
its arguments (no GPU or container daemon here), so the test checks the exact command a
node would run, the repository it mounts, and the markers either way.
Regenerate the golden files after an intended change with ``LEPTON_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from lepton_cdk.cli import main
from lepton_cdk.contract import Signature, TensorSpec, read_manifest
from lepton_cdk.contract.serving import TRITON_IMAGE, UnsupportedSignatureError, triton_model_config
from lepton_cdk.core.interfaces import ModelObject
from lepton_cdk.core.startup_script import TritonLaunch, render_fetch_and_verify_script
from tests.support.manifests import write_fake_manifest
from tests.support.triton import find_tritonclient, parse_model_config

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
FEATURES = ["age", "annual_income", "debt_to_income", "credit_utilization", "open_accounts", "late_payments_2y",
            "loan_amount", "employment_years"]


def _manifest(tmp_path, signature: Signature):
    path = write_fake_manifest(tmp_path / "m", version="0a1b2c3d4e5f", files={"model": b"fixed model bytes for a golden file"})
    return replace(read_manifest(path), signature=signature)


def _credit_risk(tmp_path):
    return _manifest(tmp_path, Signature(
        opset=18, feature_names=FEATURES,
        inputs=[TensorSpec("features", "float32", ["batch", 8])],
        outputs=[TensorSpec("logit", "float32", ["batch", 1]), TensorSpec("probability", "float32", ["batch", 1])],
    ))


def _mixed(tmp_path):
    return _manifest(tmp_path, Signature(
        opset=18,
        inputs=[TensorSpec("numeric", "float32", ["batch", 2], columns=["age", "income"]),
                TensorSpec("count", "int64", ["batch", 1], columns=["accounts"]),
                TensorSpec("category", "string", ["batch", 1], columns=["region"])],
        outputs=[TensorSpec("probability", "float64", ["batch"]), TensorSpec("embedding", "float32", ["batch", "dim"])],
    ))


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LEPTON_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"config.pbtxt changed; compare with {path}"


@pytest.mark.parametrize("name, build", [("triton_config_credit_risk.pbtxt", _credit_risk), ("triton_config_mixed.pbtxt", _mixed)])
def test_generated_config_matches_the_golden_file(tmp_path, name, build):
    _check_golden(name, triton_model_config(build(tmp_path)))


def test_a_signature_without_a_batch_dimension_gets_no_batching(tmp_path):
    config = triton_model_config(_manifest(tmp_path, Signature(
        opset=18, inputs=[TensorSpec("x", "float32", [4, 8])], outputs=[TensorSpec("y", "float32", [4, 1])])))
    assert "max_batch_size: 0" in config and "dynamic_batching" not in config
    assert "dims: [ 4, 8 ]" in config


def test_an_unsupported_dtype_is_refused_by_name(tmp_path):
    manifest = _manifest(tmp_path, Signature(opset=18, inputs=[TensorSpec("x", "complex64", ["batch", 2])],
                                             outputs=[TensorSpec("y", "float32", ["batch", 1])]))
    with pytest.raises(UnsupportedSignatureError, match="'x' has dtype 'complex64'"):
        triton_model_config(manifest)


def test_export_triton_writes_the_repository_once_and_replaces_it_only_with_force(small_run, tmp_path, capsys):
    pipeline_out = small_run.out_dir
    out = tmp_path / "repo"
    manifest = read_manifest(pipeline_out)
    assert main(["export", "triton", str(pipeline_out), str(out)]) == 0
    model_dir = out / manifest.model_name
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")) == ["1", "1/model.onnx", "config.pbtxt"]
    assert hashlib.sha256((model_dir / "1" / "model.onnx").read_bytes()).hexdigest() == manifest.model_artifact.sha256
    assert (model_dir / "config.pbtxt").read_text() == triton_model_config(manifest)
    capsys.readouterr()
    assert main(["export", "triton", str(pipeline_out), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists; pass --force" in err
    (model_dir / "stale.txt").write_text("from an older export")
    assert main(["export", "triton", str(pipeline_out), str(out), "--force"]) == 0
    assert not (model_dir / "stale.txt").exists() and (model_dir / "config.pbtxt").exists()
    assert [p.name for p in out.iterdir()] == [manifest.model_name]  # no staging folder left behind


def test_export_refuses_a_tampered_model_and_writes_nothing(small_run, tmp_path, capsys):
    pipeline_out = small_run.out_dir
    copy = tmp_path / "model"
    shutil.copytree(pipeline_out, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    assert main(["export", "triton", str(copy), str(tmp_path / "repo")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to serve") and err.count("\n") == 1
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


# --- the node boot script ------------------------------------------------------------------


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_both_clouds_node_groups_boot_into_triton_with_the_generated_config(tmp_path, cloud):
    from lepton_cdk.core.framework import aws, google
    from tests.support.synth import only, synth_json

    manifest_path = write_fake_manifest(tmp_path / "m")
    if cloud == "aws":
        from lepton_cdk.aws import GpuNodeGroup, ModelBucket

        provider = lambda stack: aws.provider.AwsProvider(stack, "aws", region="us-east-1")  # noqa: E731
    else:
        from lepton_cdk.gcp import GpuNodeGroup, ModelBucket

        provider = lambda stack: google.provider.GoogleProvider(stack, "google", project="lepton-demo", region="us-central1")  # noqa: E731
    doc, nodes = synth_json(lambda stack: GpuNodeGroup(stack, "GpuNodes", model=ModelBucket(stack, "ModelBucket").upload_artifacts(manifest_path)),
                            provider=provider)
    script = nodes.startup_script
    assert triton_model_config(read_manifest(manifest_path)) in script
    assert script.index("model-ready.tmp") < script.index("docker run")  # serving starts only after the check
    assert f"--publish 8000:8000 --volume \"$TRITON_REPO:/models:ro\" {TRITON_IMAGE}" in script
    if cloud == "gcp":
        synthesized = only(doc, "google_compute_instance_template")["metadata"]["startup-script"]
        assert triton_model_config(read_manifest(manifest_path)) in synthesized and "tritonserver --model-repository=/models" in synthesized

_DOCKER = """#!/bin/bash
echo "$*" >> "$DOCKER_LOG"
if [ "$1" = run ]; then exit "$DOCKER_RUN_STATUS"; fi
exit 0
"""


def _boot(tmp_path, manifest, *, docker_status: int, tamper: bool = False):
    store = tmp_path / "store"
    store.mkdir()
    model_bytes = manifest.artifact_file(manifest.model_artifact).read_bytes()
    (store / "model.onnx").write_bytes(b"swapped" if tamper else model_bytes)
    obj = ModelObject(name="model", key="k/model.onnx", uri=f"file://{store / 'model.onnx'}", relative_path="model.onnx",
                      bytes=len(model_bytes), sha256=hashlib.sha256(model_bytes).hexdigest(), crc32c="AAAAAA==")
    launch = TritonLaunch.for_manifest(manifest)
    script = render_fetch_and_verify_script(
        model_name=manifest.model_name, model_version=manifest.model_version, objects=[obj], primary=obj,
        copy_command='cp "$(echo "$1" | sed "s|^file://||")" "$2"',
        model_root=str(tmp_path / "models"), state_dir=str(tmp_path / "state"), triton=launch,
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    (tmp_path / "boot.sh").write_text(script)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_LOG": str(tmp_path / "docker.log"),
           "DOCKER_RUN_STATUS": str(docker_status)}
    return subprocess.run(["bash", str(tmp_path / "boot.sh")], capture_output=True, text=True, timeout=60, env=env, check=False)


def test_boot_script_lays_out_the_repository_and_starts_pinned_triton(tmp_path):
    manifest = _credit_risk(tmp_path)
    proc = _boot(tmp_path, manifest, docker_status=0)
    assert proc.returncode == 0, proc.stderr
    repo = tmp_path / "state" / "triton" / manifest.model_name
    assert (repo / "1" / "model.onnx").read_bytes() == manifest.artifact_file(manifest.model_artifact).read_bytes()
    assert (repo / "config.pbtxt").read_text() == triton_model_config(manifest)  # the same file `lepton export triton` writes
    calls = (tmp_path / "docker.log").read_text().splitlines()
    assert calls[0] == "rm -f lepton-triton"
    run = calls[1].split()
    assert run[:2] == ["run", "--detach"] and TRITON_IMAGE in run and "--gpus" in run
    assert run[run.index("--publish") + 1] == "8000:8000" and run[run.index("--volume") + 1] == f"{tmp_path / 'state' / 'triton'}:/models:ro"
    assert run[run.index(TRITON_IMAGE) + 1:run.index(TRITON_IMAGE) + 3] == ["tritonserver", "--model-repository=/models"]
    assert (tmp_path / "state" / "model-ready").exists()
    assert (tmp_path / "state" / "serving").read_text() == f"image={TRITON_IMAGE}\nport=8000\n"


def test_boot_script_records_a_triton_that_will_not_start_and_keeps_the_model_ready(tmp_path):
    manifest = _credit_risk(tmp_path)
    proc = _boot(tmp_path, manifest, docker_status=125)
    # the exit status reports the model check; the load balancer's readiness check catches a node that does not serve
    assert proc.returncode == 0 and "could not start Triton" in proc.stderr
    assert "could not start Triton" in (tmp_path / "state" / "serving-failed").read_text()
    assert (tmp_path / "state" / "model-ready").exists() and not (tmp_path / "state" / "serving").exists()


def test_boot_script_never_starts_triton_for_a_tampered_model(tmp_path):
    manifest = _credit_risk(tmp_path)
    proc = _boot(tmp_path, manifest, docker_status=0, tamper=True)
    assert proc.returncode == 1 and "refusing to start" in proc.stderr
    assert not (tmp_path / "docker.log").exists() and not (tmp_path / "state" / "triton").exists()


@pytest.mark.parametrize("name", ["triton_config_credit_risk.pbtxt", "triton_config_mixed.pbtxt"])
def test_golden_configs_parse_as_tritons_model_config(name):
    """Triton's own ModelConfig message (tritonclient, in its tool folder) reads every field."""
    client = find_tritonclient()
    if client is None:
        pytest.skip("build/tritonclient is missing: `make test` installs it (python -m tests.support.triton tritonclient)")
    config = parse_model_config(client, (GOLDEN / name).read_text())
    assert config["backend"] == "onnxruntime" and config["max_batch_size"] == 64
    assert "dynamic_batching" in config["_set_fields"] and config["version_policy"]["specific"]["versions"] == ["1"]
    assert config["input"] and all(i.get("data_type", "TYPE_INVALID") != "TYPE_INVALID" for i in config["input"])
