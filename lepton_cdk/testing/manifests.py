"""A small manifest folder for infrastructure tests: placeholder artifacts the constructs hash and upload.

A stack of lepton-cdk's constructs needs a model's ``manifest.json`` to
synthesize (``bucket.upload_artifacts(manifest)`` re-hashes every artifact).
A test of the infrastructure needs the files to exist and match the
manifest, not a working model: :func:`write_test_manifest` writes a few KiB
of fixed placeholder bytes and a valid manifest describing them, so the
synthesized JSON is the same on every run. Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

from lepton_cdk.contract import (
    MANIFEST_FILENAME,
    Artifact,
    Lineage,
    Manifest,
    ParityReport,
    ServingNeeds,
    Signature,
    TensorSpec,
    write_manifest,
)

PLACEHOLDER_MODEL = b"lepton-cdk test placeholder: not an ONNX model\n" * 64
"""The default ``model.onnx`` bytes (3 KiB): fixed, so checksums and the synthesized JSON repeat run after run."""


def write_test_manifest(folder: str | os.PathLike[str], *, name: str = "credit-risk", version: str = "1.0.0",
                        files: dict[str, bytes] | None = None) -> Path:
    """Write placeholder artifacts and a valid manifest listing them into ``folder``; returns the manifest's path.

    The bytes are not a model: use it to synthesize and deploy infrastructure,
    never to serve.

    :param name: the model name (objects go under ``models/<name>/<version>/``).
    :param version: the model version.
    :param files: artifact name to content; the first entry is the primary
        artifact (``model`` is written as ``model.onnx``, any other name as
        ``<name>.json``). Default: ``model`` (:data:`PLACEHOLDER_MODEL`) and
        ``preprocessing`` (a small JSON document).
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    files = files or {"model": PLACEHOLDER_MODEL, "preprocessing": b'{"mean": [0.0], "std": [1.0]}\n'}
    artifacts = []
    for art_name, content in files.items():
        file_name = "model.onnx" if art_name == "model" else f"{art_name}.json"
        path = root / file_name
        path.write_bytes(content)
        media = "application/vnd.onnx" if file_name.endswith(".onnx") else "application/json"
        artifacts.append(Artifact.from_file(art_name, path, root, media))
    manifest = Manifest(
        model_name=name,
        model_version=version,
        task="binary-classification",
        artifacts=artifacts,
        signature=Signature(opset=18, inputs=[TensorSpec("features", "float32", ["batch", 8])],
                            outputs=[TensorSpec("probability", "float32", ["batch", 1])]),
        parity=ParityReport(atol=1e-5, rtol=1e-4, max_abs_diff=1e-7, max_rel_diff=1e-6, rows_checked=64, passed=True),
        metrics={},
        lineage=Lineage(data_fingerprint="0" * 64, source_model_sha256="1" * 64, seed=0),
        serving=ServingNeeds(min_gpu_memory_gib=1.0, max_batch_size=64),
        primary_artifact=next(iter(files)),
    )
    return write_manifest(manifest, root / MANIFEST_FILENAME)
