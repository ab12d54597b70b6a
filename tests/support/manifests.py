"""Small manifest folders built with the contract, for tests that only need files to hash."""

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


def write_fake_manifest(folder: Path, *, name: str = "credit-risk", version: str = "1.0.0",
                        files: dict[str, bytes] | None = None) -> Path:
    """Write random-byte artifacts and a valid manifest listing them; returns the manifest path.

    ``files`` maps artifact name to content; the first entry is the primary
    artifact. Default: ``model`` (``model.onnx``, 4 KiB of random bytes) and
    ``preprocessing`` (``preprocessing.json``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = files or {"model": os.urandom(4096), "preprocessing": b'{"mean": [0.0], "std": [1.0]}\n'}
    artifacts = []
    for art_name, content in files.items():
        file_name = "model.onnx" if art_name == "model" else f"{art_name}.json"
        path = folder / file_name
        path.write_bytes(content)
        media = "application/vnd.onnx" if file_name.endswith(".onnx") else "application/json"
        artifacts.append(Artifact.from_file(art_name, path, folder, media))
    manifest = Manifest(
        model_name=name,
        model_version=version,
        task="binary-classification",
        artifacts=artifacts,
        signature=Signature(opset=18, inputs=[TensorSpec("features", "float32", ["batch", 8])],
                            outputs=[TensorSpec("probability", "float32", ["batch", 1])]),
        parity=ParityReport(atol=1e-5, rtol=1e-4, max_abs_diff=1e-7, max_rel_diff=1e-6, rows_checked=64, passed=True),
        metrics={"target_test": {"auc": 0.8}},
        lineage=Lineage(data_fingerprint="0" * 64, source_model_sha256="1" * 64, seed=7),
        serving=ServingNeeds(min_gpu_memory_gib=1.0, max_batch_size=64),
        primary_artifact=next(iter(files)),
    )
    return write_manifest(manifest, folder / MANIFEST_FILENAME)
