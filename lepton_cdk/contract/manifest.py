"""The model manifest: what model_pipeline produced and infra/ deploys.

``manifest.json`` sits beside the artifacts it lists; artifact paths are
relative to its folder. Writing is atomic (a temporary file renamed into
place), reading validates against the shipped JSON Schema, refuses a newer
major ``schema_version`` and, unless told not to, re-hashes every artifact.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .checksums import digest_file
from .errors import ChecksumMismatchError, ContractError
from .schema_check import check_schema_version as _check_version
from .schema_check import validate_document

# 1.1.0: a tensor may list the raw ``columns`` along its last axis, and may be
# a "string" tensor (categorical columns). 1.0.0 documents still read.
SCHEMA_VERSION = "1.1.0"
MANIFEST_KIND = "lepton-cdk/model-manifest"
MANIFEST_FILENAME = "manifest.json"


@cache
def manifest_schema() -> dict:
    """The shipped JSON Schema for manifest version 1.x."""
    text = resources.files(__package__).joinpath("schemas/manifest.schema.json").read_text()
    return json.loads(text)


@dataclass(frozen=True)
class Artifact:
    """One file listed in the manifest, with its size and checksums."""

    name: str
    path: str  # relative to the manifest's folder, '/'-separated
    bytes: int
    sha256: str
    crc32c: str
    media_type: str = "application/octet-stream"

    @classmethod
    def from_file(cls, name: str, file: Path, root: Path, media_type: str) -> Artifact:
        """Describe ``file`` (inside ``root``) by hashing it."""
        d = digest_file(file)
        rel = file.resolve().relative_to(root.resolve()).as_posix()
        return cls(name=name, path=rel, bytes=d.bytes, sha256=d.sha256, crc32c=d.crc32c, media_type=media_type)


@dataclass(frozen=True)
class TensorSpec:
    """An input or output of the exported graph; a string dimension is dynamic."""

    name: str
    dtype: str
    shape: list[int | str]
    columns: list[str] | None = None  # the raw table columns along the last axis (schema 1.1.0); None: not recorded


@dataclass(frozen=True)
class Signature:
    """The ONNX graph's interface: what a server must accept and return."""

    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    exporter: str = ""
    feature_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ParityReport:
    """How closely onnxruntime reproduced PyTorch on held-out rows."""

    atol: float
    rtol: float
    max_abs_diff: float
    max_rel_diff: float
    rows_checked: int
    passed: bool
    per_output: dict[str, Any] = field(default_factory=dict)
    runtime: str = ""


@dataclass(frozen=True)
class Lineage:
    """Where the model came from: data fingerprint, source model, seed."""

    data_fingerprint: str
    source_model_sha256: str
    seed: int
    pipeline_version: str = ""


@dataclass(frozen=True)
class ServingNeeds:
    """What the serving infrastructure must provide."""

    min_gpu_memory_gib: float
    max_batch_size: int
    protocol: str = "open-inference-protocol-v2"


@dataclass(frozen=True)
class Manifest:
    """A whole manifest. Build one, then :func:`write_manifest` it."""

    model_name: str
    model_version: str
    task: str
    artifacts: list[Artifact]
    signature: Signature
    parity: ParityReport
    metrics: dict[str, Any]
    lineage: Lineage
    serving: ServingNeeds
    primary_artifact: str = "model"
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    schema_version: str = SCHEMA_VERSION
    base_dir: Path | None = field(default=None, compare=False)

    def artifact(self, name: str) -> Artifact:
        """The artifact called ``name``; a clear error when there is none."""
        for a in self.artifacts:
            if a.name == name:
                return a
        known = ", ".join(a.name for a in self.artifacts)
        raise ContractError(f"manifest has no artifact named {name!r} (it lists: {known})")

    @property
    def model_artifact(self) -> Artifact:
        """The artifact a server loads."""
        return self.artifact(self.primary_artifact)

    def artifact_file(self, artifact: Artifact) -> Path:
        """Where ``artifact`` lies on disk (the manifest's folder + its path)."""
        if self.base_dir is None:
            raise ContractError("this manifest was not read from disk; pass base_dir to resolve artifact paths")
        return self.base_dir / artifact.path

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, in schema order."""
        return {
            "schema_version": self.schema_version,
            "kind": MANIFEST_KIND,
            "created_at": self.created_at,
            "model": {
                "name": self.model_name,
                "version": self.model_version,
                "task": self.task,
                "framework": "onnx",
                "primary_artifact": self.primary_artifact,
            },
            "artifacts": [asdict(a) for a in self.artifacts],
            "signature": _signature_dict(self.signature),
            "parity": asdict(self.parity),
            "metrics": self.metrics,
            "lineage": asdict(self.lineage),
            "serving": asdict(self.serving),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any], base_dir: Path | None = None) -> Manifest:
        """Build from a document that already passed :func:`validate_manifest_dict`."""
        sig = doc["signature"]
        return cls(
            schema_version=doc["schema_version"],
            created_at=doc["created_at"],
            model_name=doc["model"]["name"],
            model_version=doc["model"]["version"],
            task=doc["model"]["task"],
            primary_artifact=doc["model"].get("primary_artifact", "model"),
            artifacts=[Artifact(**a) for a in doc["artifacts"]],
            signature=Signature(
                opset=sig["opset"],
                inputs=[TensorSpec(**t) for t in sig["inputs"]],
                outputs=[TensorSpec(**t) for t in sig["outputs"]],
                exporter=sig.get("exporter", ""),
                feature_names=list(sig.get("feature_names", [])),
            ),
            parity=ParityReport(**doc["parity"]),
            metrics=doc["metrics"],
            lineage=Lineage(**doc["lineage"]),
            serving=ServingNeeds(**doc["serving"]),
            base_dir=base_dir,
        )


def _signature_dict(sig: Signature) -> dict[str, Any]:
    doc = asdict(sig)
    for tensor in doc["inputs"] + doc["outputs"]:
        if tensor.get("columns") is None:
            tensor.pop("columns", None)  # absent, not null: a 1.0.0 reader's tensor has no such key
    return doc


_REGENERATE = "`lepton demo` or `lepton pipeline run`"
_MAJOR = int(SCHEMA_VERSION.split(".")[0])


def check_schema_version(version: Any, what: str = "manifest") -> None:
    """Refuse a manifest schema_version whose major part this reader does not know."""
    _check_version(version, what, supported_major=_MAJOR, regenerate=_REGENERATE)


def validate_manifest_dict(doc: Any, source: str = "manifest") -> None:
    """Raise :class:`ContractError` listing every schema violation in ``doc``."""
    validate_document(doc, manifest_schema(), what=source, kind="manifest", supported_major=_MAJOR, regenerate=_REGENERATE)
    names = [a["name"] for a in doc["artifacts"]]
    if len(set(names)) != len(names):
        raise ContractError(f"{source} lists an artifact name twice ({names}); artifact names must be unique")
    primary = doc["model"].get("primary_artifact", "model")
    if primary not in names:
        raise ContractError(f"{source} names primary artifact {primary!r} but lists only {names}")


def verify_artifacts(manifest: Manifest) -> None:
    """Re-hash every artifact and compare with the manifest (size, sha256, crc32c)."""
    for art in manifest.artifacts:
        file = manifest.artifact_file(art)
        if not file.is_file():
            raise ContractError(f"artifact {art.name!r} is missing: {file} does not exist; re-run the pipeline that wrote the manifest")
        d = digest_file(file)
        for label, want, got in (("bytes", art.bytes, d.bytes), ("sha256", art.sha256, d.sha256), ("crc32c", art.crc32c, d.crc32c)):
            if want != got:
                raise ChecksumMismatchError(
                    f"artifact {art.name!r} ({file}) has {label} {got} but the manifest records {want}; "
                    "the file changed after the manifest was written: re-run the pipeline or restore the file"
                )


def read_manifest(path: str | Path, *, verify: bool = True) -> Manifest:
    """Read, validate and (by default) checksum-verify a manifest file."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_FILENAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(f"manifest not found at {path}; run `lepton demo` first or pass the path of an existing manifest.json") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError(f"manifest {path} is not valid JSON ({exc.msg} at line {exc.lineno}); regenerate it with `lepton demo`") from None
    validate_manifest_dict(doc, f"manifest {path}")
    manifest = Manifest.from_dict(doc, base_dir=path.parent.resolve())
    if verify:
        verify_artifacts(manifest)
    return manifest


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(doc: Any, path: Path) -> None:
    """Write ``doc`` as JSON so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600; a manifest is meant to be read by others (CI, the deploy user)
        os.chmod(tmp, 0o666 & ~_current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Validate ``manifest`` and write it atomically to ``path``; returns the path."""
    path = Path(path)
    doc = manifest.to_dict()
    validate_manifest_dict(doc, "manifest being written")
    write_json_atomic(doc, path)
    return path
