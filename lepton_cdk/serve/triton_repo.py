"""``lepton export triton``: a Triton model repository from a manifest.

Layout: ``OUT/<model name>/config.pbtxt`` and ``OUT/<model name>/1/model.onnx``
(Triton needs an integer version folder; the manifest's version is kept as a
config parameter). The folder is built beside its final place and renamed in,
so Triton never sees half of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lepton_cdk.contract import digest_bytes, read_manifest
from lepton_cdk.contract.serving import TRITON_IMAGE, TRITON_MODEL_VERSION, triton_model_config

from .errors import ExportError


@dataclass(frozen=True)
class TritonExport:
    """What ``export_triton_repository`` wrote."""

    repository: Path
    model_dir: Path
    model_file: Path
    config_file: Path
    sha256: str
    image: str = TRITON_IMAGE

    def to_dict(self) -> dict[str, str]:
        """JSON-friendly summary (``lepton export triton --json``)."""
        return {"repository": str(self.repository), "model_dir": str(self.model_dir), "model_file": str(self.model_file),
                "config_file": str(self.config_file), "sha256": self.sha256, "image": self.image}


def export_triton_repository(manifest_path: str | Path, out: str | Path, *, force: bool = False) -> TritonExport:
    """Write ``out/<model>/`` for Triton's ONNX Runtime backend from the verified manifest at ``manifest_path``."""
    from .runtime import verified_model_bytes

    manifest = read_manifest(manifest_path, verify=False)
    data = verified_model_bytes(manifest)
    config = triton_model_config(manifest)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; pass a folder for the Triton model repository")
    target = out / manifest.model_name
    if target.exists() and not force:
        raise ExportError(f"{target} already exists; pass --force to replace it, or choose another OUT folder")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{manifest.model_name}.", dir=out))
    try:
        (staging / TRITON_MODEL_VERSION).mkdir()
        (staging / TRITON_MODEL_VERSION / "model.onnx").write_bytes(data)
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
        os.chmod(staging, 0o755)  # mkdtemp makes 0700; Triton in a container runs as another user
        written = digest_bytes((staging / TRITON_MODEL_VERSION / "model.onnx").read_bytes())
        if written.sha256 != manifest.model_artifact.sha256:
            raise ExportError(f"the copy in {staging} does not hash to the manifest's sha256; check the disk and retry")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{manifest.model_name}.old.", dir=out))
            os.replace(target, old / "model")
            os.replace(staging, target)
            shutil.rmtree(old)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TritonExport(repository=out, model_dir=target, model_file=target / TRITON_MODEL_VERSION / "model.onnx",
                        config_file=target / "config.pbtxt", sha256=written.sha256)
