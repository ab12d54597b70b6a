"""The node boot script, run for real under bash with a stand-in copy command.

The AWS and GCP node groups embed this script; here it fetches from a local
folder, so the sha256 check and the ready / failed markers are exercised
without a cloud.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from lepton_cdk.core.interfaces import ModelObject
from lepton_cdk.core.startup_script import render_fetch_and_verify_script

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sha256sum") is None, reason="needs bash and sha256sum")


def _objects(store, files):
    objects = []
    for rel, content in files.items():
        (store / rel).parent.mkdir(parents=True, exist_ok=True)
        (store / rel).write_bytes(content)
        objects.append(ModelObject(name=rel.split(".")[0], key=f"models/m/1/{rel}", uri=f"file://{store / rel}", relative_path=rel,
                                   bytes=len(content), sha256=hashlib.sha256(content).hexdigest(), crc32c="AAAAAA=="))
    return objects


def _run(tmp_path, objects, primary):
    script = render_fetch_and_verify_script(
        model_name="m", model_version="1", objects=objects, primary=primary,
        copy_command='cp "$(echo "$1" | sed "s|^file://||")" "$2"',
        model_root=str(tmp_path / "models"), state_dir=str(tmp_path / "state"),
    )
    path = tmp_path / "boot.sh"
    path.write_text(script)
    return subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=60, check=False)


def test_verified_artifacts_mark_the_node_ready(tmp_path):
    store = tmp_path / "store"
    objects = _objects(store, {"model.onnx": b"\x00onnx" * 100, "nested/preprocessor.json": b'{"a": 1}'})
    proc = _run(tmp_path, objects, objects[0])
    assert proc.returncode == 0, proc.stderr
    model_dir = tmp_path / "models" / "m" / "1"
    assert (model_dir / "model.onnx").read_bytes() == b"\x00onnx" * 100
    assert (model_dir / "nested" / "preprocessor.json").read_bytes() == b'{"a": 1}'
    ready = (tmp_path / "state" / "model-ready").read_text().splitlines()
    assert ready == ["model=m", "version=1", f"sha256={objects[0].sha256}", f"path={model_dir}/model.onnx"]
    assert not (tmp_path / "state" / "model-failed").exists()
    assert not list(model_dir.rglob("*.part"))


def test_a_tampered_artifact_stops_the_node_before_anything_is_marked_ready(tmp_path):
    store = tmp_path / "store"
    objects = _objects(store, {"model.onnx": b"the real model", "preprocessor.json": b"{}"})
    (store / "model.onnx").write_bytes(b"a swapped model")
    proc = _run(tmp_path, objects, objects[0])
    assert proc.returncode == 1
    assert "refusing to start" in proc.stderr and objects[0].sha256 in proc.stderr
    assert not (tmp_path / "state" / "model-ready").exists()
    assert "sha256 of" in (tmp_path / "state" / "model-failed").read_text()
    assert not (tmp_path / "models" / "m" / "1" / "model.onnx").exists()


def test_a_failed_download_stops_the_node(tmp_path):
    objects = _objects(tmp_path / "store", {"model.onnx": b"x"})
    (tmp_path / "store" / "model.onnx").unlink()
    proc = _run(tmp_path, objects, objects[0])
    assert proc.returncode == 1
    assert "download of" in (tmp_path / "state" / "model-failed").read_text()
    assert not (tmp_path / "state" / "model-ready").exists()


def test_a_rerun_clears_a_stale_ready_marker_first(tmp_path):
    store = tmp_path / "store"
    objects = _objects(store, {"model.onnx": b"v1"})
    assert _run(tmp_path, objects, objects[0]).returncode == 0
    (store / "model.onnx").write_bytes(b"tampered after the first boot")
    assert _run(tmp_path, objects, objects[0]).returncode == 1
    assert not (tmp_path / "state" / "model-ready").exists()


def test_script_never_contains_terraform_template_syntax():
    obj = ModelObject(name="model", key="k", uri="s3://${TfToken[TOKEN.1]}/k", relative_path="model.onnx", bytes=1, sha256="a" * 64, crc32c="AAAAAA==")
    script = render_fetch_and_verify_script(model_name="m", model_version="1", objects=[obj], primary=obj, copy_command='cp "$1" "$2"')
    assert "${TfToken[TOKEN.1]}" in script
    assert "${" not in script.replace("${TfToken[TOKEN.1]}", "") and "%{" not in script
    with pytest.raises(ValueError, match="template"):
        render_fetch_and_verify_script(model_name="m", model_version="1", objects=[obj], primary=obj, copy_command='cp "${1}" "$2"')
