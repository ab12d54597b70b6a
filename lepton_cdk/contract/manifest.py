"""The model manifest: what model_pipeline produced and infra/ deploys.

``manifest.json`` sits beside the artifacts it lists; artifact paths are
relative to its folder and never leave it (see :mod:`.files`). Writing is
atomic (a temporary file renamed into place), reading validates against the
shipped JSON Schema, refuses a newer major ``schema_version`` and, unless told
not to, re-hashes every artifact. :func:`read_artifact_bytes` is how a reader
loads an artifact: the bytes it returns are the bytes it checked.
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

from .checksums import Digest, digest_bytes
from .errors import ChecksumMismatchError, ContractError
from .files import (
    artifact_path_problem,
    digest_regular_file,
    open_regular_file,
    parse_json_document,
    read_file_bytes,
    resolve_artifact_path,
)
from .schema_check import check_schema_version as _check_version
from .schema_check import validate_document

# 1.1.0: a tensor may list the raw ``columns`` along its last axis, and may be
# a "string" tensor (categorical columns).
# 1.2.0: text models. ``signature.text`` says how raw strings become the
# graph's inputs (tokenizer artifact, max_length, truncation, padding,
# pooling); ``signature.labels`` names the classes of a multi-class model;
# tasks "multiclass-classification" and "embedding".
# 1.0.0 and 1.1.0 documents still read. The writer stamps the lowest version
# whose fields a manifest uses (:meth:`Manifest.required_schema_version`), so
# a tabular model's manifest stays 1.1.0 and readers of 1.1 keep reading it.
SCHEMA_VERSION = "1.2.0"
MANIFEST_TASKS = ("binary-classification", "regression", "multiclass-classification", "embedding")
_TASKS_1_2 = ("multiclass-classification", "embedding")
TEXT_TRUNCATION = ("longest_first", "only_first")
TEXT_PADDING = ("longest",)
TEXT_POOLING = ("mean", "mean_normalized")
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
        d = digest_regular_file(file, what=f"artifact {name!r}", fix="write it as a regular file inside the run folder")
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
class TextSignature:
    """How a text model's raw strings become its graph's inputs (manifest schema 1.2.0).

    The client sends strings in ``input`` (a ``string`` tensor of
    ``Signature.inputs``); the server tokenizes them with the ``tokenizer``
    artifact (a Hugging Face ``tokenizers`` JSON file), truncating each to
    ``max_length`` tokens (special tokens included) with ``truncation`` and
    padding the batch to its longest text, and feeds ``graph_inputs`` to the
    ONNX graph. :class:`lepton_cdk.serve.text.TextEncoder` is the one
    implementation. ``pooling`` is set for embedding models only:
    ``"mean"`` (mean over real tokens) or ``"mean_normalized"`` (then L2-normalised).
    """

    input: str
    tokenizer: str
    max_length: int
    graph_inputs: list[TensorSpec]
    truncation: str = "longest_first"
    padding: str = "longest"
    lowercase: bool = False  # informational: what the tokenizer does to text before splitting it
    pooling: str | None = None


@dataclass(frozen=True)
class Signature:
    """The ONNX graph's interface: what a server must accept and return.

    For a text model ``inputs`` is what clients send (one ``string`` tensor)
    and ``text`` says how it becomes the graph's own inputs; ``labels`` names
    the classes along the last axis of a multi-class model's outputs.
    """

    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    exporter: str = ""
    feature_names: list[str] = field(default_factory=list)
    text: TextSignature | None = None
    labels: list[str] = field(default_factory=list)

    @property
    def graph_inputs(self) -> list[TensorSpec]:
        """What the ONNX graph itself takes: ``text.graph_inputs`` for a text model, else ``inputs``."""
        return self.text.graph_inputs if self.text is not None else self.inputs


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
    schema_version: str = ""  # Default: the lowest version that holds this manifest (required_schema_version)
    base_dir: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.schema_version:
            object.__setattr__(self, "schema_version", self.required_schema_version())

    def required_schema_version(self) -> str:
        """The lowest schema version whose fields this manifest uses: 1.2.0 for text models and the
        1.2 tasks, else 1.1.0 (what a tabular model has always been written as)."""
        uses_1_2 = self.signature.text is not None or bool(self.signature.labels) or self.task in _TASKS_1_2
        return "1.2.0" if uses_1_2 else "1.1.0"

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
        """Where ``artifact`` lies on disk: its path under the manifest's folder, symlinks resolved.

        Raises :class:`ContractError` when the path is absolute, has a ``..``
        (or empty, ``.``) segment, or resolves outside the folder (see
        :func:`~lepton_cdk.contract.files.resolve_artifact_path`).
        """
        if self.base_dir is None:
            raise ContractError("this manifest was not read from disk; pass base_dir to resolve artifact paths")
        return resolve_artifact_path(self.base_dir, artifact.path, name=artifact.name)

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
                text=_text_from_dict(sig["text"]) if "text" in sig else None,
                labels=list(sig.get("labels", [])),
            ),
            parity=ParityReport(**doc["parity"]),
            metrics=doc["metrics"],
            # the schema lets a newer minor version add fields here; this reader keeps the ones it knows
            lineage=Lineage(**_known_fields(Lineage, doc["lineage"])),
            serving=ServingNeeds(**_known_fields(ServingNeeds, doc["serving"])),
            base_dir=base_dir,
        )


def _known_fields(kind: type, values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in kind.__dataclass_fields__}


def _text_from_dict(doc: dict[str, Any]) -> TextSignature:
    return TextSignature(**{**doc, "graph_inputs": [TensorSpec(**t) for t in doc["graph_inputs"]]})


def _signature_dict(sig: Signature) -> dict[str, Any]:
    doc = asdict(sig)
    tensors = doc["inputs"] + doc["outputs"] + (doc["text"]["graph_inputs"] if doc["text"] else [])
    for tensor in tensors:
        if tensor.get("columns") is None:
            tensor.pop("columns", None)  # absent, not null: a 1.0.0 reader's tensor has no such key
    # 1.2.0 fields are written only when used, so a tabular manifest is exactly what a 1.1 reader knows
    if doc["text"] is None:
        doc.pop("text")
    elif doc["text"]["pooling"] is None:
        doc["text"].pop("pooling")
    if not doc["labels"]:
        doc.pop("labels")
    return doc


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


def _text_problems(doc: dict[str, Any]) -> list[str]:
    """What the schema cannot say about a 1.2 manifest: new fields under an older version, and the
    text block's references (its input, its tokenizer artifact) that must exist."""
    sig, model = doc["signature"], doc["model"]
    problems = []
    if _version_tuple(doc["schema_version"]) < (1, 2, 0):
        used = [f for f, present in (("signature.text", "text" in sig), ("signature.labels", "labels" in sig),
                                     (f"task {model['task']!r}", model["task"] in _TASKS_1_2)) if present]
        if used:
            problems.append(f"it uses {', '.join(used)}, which need schema_version 1.2.0 or later, "
                            f"but says {doc['schema_version']}")
    text = sig.get("text")
    if text is not None:
        strings = [t["name"] for t in sig["inputs"] if t["dtype"] == "string"]
        if text["input"] not in strings:
            problems.append(f"signature.text.input {text['input']!r} is not a string input of the signature (it has {strings})")
        if text["tokenizer"] not in [a["name"] for a in doc["artifacts"]]:
            problems.append(f"signature.text.tokenizer names artifact {text['tokenizer']!r}, which the manifest does not list")
    return problems


_REGENERATE = "`lepton demo` or `lepton pipeline run`"
_MAJOR = int(SCHEMA_VERSION.split(".")[0])


def check_schema_version(version: Any, what: str = "manifest") -> None:
    """Refuse a manifest schema_version whose major part this reader does not know."""
    _check_version(version, what, supported_major=_MAJOR, regenerate=_REGENERATE)


def validate_manifest_dict(doc: Any, source: str = "manifest") -> None:
    """Raise :class:`ContractError` listing every schema violation in ``doc``.

    An artifact path that would leave the manifest's folder (absolute, a
    ``..`` segment, a backslash, ...) is named on its own, before the schema's
    regular-expression message.
    """
    if isinstance(doc, dict):
        if "schema_version" not in doc and doc.get("kind") != MANIFEST_KIND:
            # e.g. the manifest.json cdktf writes into cdktf.out: say what it is not, not which fields it lacks
            raise ContractError(f"{source} is not a lepton-cdk model manifest (it has no schema_version and no "
                                f"kind {MANIFEST_KIND!r}); pass the manifest.json that {_REGENERATE} wrote")
        check_schema_version(doc.get("schema_version"), source)
        for i, art in enumerate(doc.get("artifacts") if isinstance(doc.get("artifacts"), list) else []):
            if isinstance(art, dict) and isinstance(art.get("path"), str) and (problem := artifact_path_problem(art["path"])):
                name = art.get("name") if isinstance(art.get("name"), str) else f"#{i}"
                raise ContractError(f"{source}: artifact {name!r} has path {art['path']!r}, which {problem}; "
                                    "artifact paths are '/'-separated and relative to the manifest's folder; "
                                    f"regenerate it with {_REGENERATE}")
    validate_document(doc, manifest_schema(), what=source, kind="manifest", supported_major=_MAJOR, regenerate=_REGENERATE)
    names = [a["name"] for a in doc["artifacts"]]
    if len(set(names)) != len(names):
        raise ContractError(f"{source} lists an artifact name twice ({names}); artifact names must be unique")
    primary = doc["model"].get("primary_artifact", "model")
    if primary not in names:
        raise ContractError(f"{source} names primary artifact {primary!r} but lists only {names}")
    problems = _text_problems(doc)
    if problems:
        raise ContractError(f"{source}: {'; '.join(problems)}; regenerate it with {_REGENERATE}")


_RESTORE = "restore the artifact or re-run the pipeline that wrote the manifest"


def _check_digest(art: Artifact, file: Path, got: Digest) -> None:
    for label, want, have in (("bytes", art.bytes, got.bytes), ("sha256", art.sha256, got.sha256), ("crc32c", art.crc32c, got.crc32c)):
        if want != have:
            raise ChecksumMismatchError(
                f"artifact {art.name!r} ({file}) has {label} {have} but the manifest records {want}; "
                f"the file changed after the manifest was written: {_RESTORE}"
            )


def _missing(art: Artifact, file: Path) -> str:
    return f"artifact {art.name!r} is missing: {file} does not exist; {_RESTORE}"


def verify_artifact(manifest: Manifest, artifact: Artifact) -> None:
    """Re-hash one artifact (streamed) and compare its size, sha256 and crc32c with the manifest."""
    file = manifest.artifact_file(artifact)
    _check_digest(artifact, file, digest_regular_file(file, what=f"artifact {artifact.name!r}", fix=_RESTORE, missing=_missing(artifact, file)))


def verify_artifacts(manifest: Manifest) -> None:
    """Re-hash every artifact and compare with the manifest (size, sha256, crc32c); the first problem raises."""
    for art in manifest.artifacts:
        verify_artifact(manifest, art)


def artifact_problems(manifest: Manifest) -> dict[str, str]:
    """``{artifact name: one-line problem}`` for every artifact that fails :func:`verify_artifact` (empty: all match)."""
    problems = {}
    for art in manifest.artifacts:
        try:
            verify_artifact(manifest, art)
        except ContractError as exc:
            problems[art.name] = str(exc)
    return problems


def read_artifact_bytes(manifest: Manifest, artifact: Artifact | str) -> bytes:
    """The bytes of ``artifact`` (or the artifact of that name), checked against the manifest.

    The file is read once; size, sha256 and crc32c are computed over exactly
    the bytes returned, so a file swapped after the check cannot be used.
    Never reads more than one byte past the recorded size.
    """
    art = manifest.artifact(artifact) if isinstance(artifact, str) else artifact
    file = manifest.artifact_file(art)
    with open_regular_file(file, what=f"artifact {art.name!r}", fix=_RESTORE, missing=_missing(art, file)) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size != art.bytes:  # a file of any other size is refused before it is loaded into memory
            _check_digest(art, file, Digest(bytes=size, sha256="", crc32c=""))
        try:
            data = fh.read(art.bytes + 1)  # +1: a file that grew since the fstat shows as a size mismatch below
        except OSError as exc:
            raise ContractError(f"cannot read artifact {art.name!r} {file}: {exc.strerror or exc}; {_RESTORE}") from None
    _check_digest(art, file, digest_bytes(data))
    return data


def read_manifest(path: str | Path, *, verify: bool = True) -> Manifest:
    """Read, validate and (by default) checksum-verify a manifest file.

    ``path`` is ``manifest.json`` or the folder holding it. Every way the file
    can be unusable (missing, a folder, unreadable, not a regular file, not
    UTF-8 JSON, nested too deeply, not a manifest) is one :class:`ContractError` line.
    """
    path = Path(path)
    try:
        if path.is_dir():
            path = path / MANIFEST_FILENAME
    except (OSError, ValueError):
        pass  # not a folder we can look into: reading it below names the problem
    fix = "pass the path of an existing manifest.json (or the folder holding it)"
    data = read_file_bytes(path, what="manifest", fix=fix,
                           missing=f"manifest not found at {path}; run `lepton demo` first or pass the path of an existing manifest.json")
    doc = parse_json_document(data, what=f"manifest {path}", fix=f"regenerate it with {_REGENERATE}")
    validate_manifest_dict(doc, f"manifest {path}")
    manifest = Manifest.from_dict(doc, base_dir=path.parent.resolve())
    if verify:
        verify_artifacts(manifest)
    return manifest


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(text: str, path: Path) -> None:
    """Write ``text`` so that readers see the old file or the new one, never half (a temporary file renamed in)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600; a manifest is meant to be read by others (CI, the deploy user)
        os.chmod(tmp, 0o666 & ~_current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(doc: Any, path: Path) -> None:
    """Write ``doc`` as JSON so that readers see the old file or the new one, never half."""
    write_text_atomic(json.dumps(doc, indent=2, sort_keys=False) + "\n", path)


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Validate ``manifest`` and write it atomically to ``path``; returns the path."""
    path = Path(path)
    doc = manifest.to_dict()
    validate_manifest_dict(doc, "manifest being written")
    write_json_atomic(doc, path)
    return path
