"""Does the synth upload the manifest the review was given?

With ``lepton review --manifest``, the review re-hashes the manifest's own
artifacts, then compares every bucket object the stacks upload
(``aws_s3_object``, ``google_storage_bucket_object``) with it: each object is
matched to the artifact whose path ends its key, its declared sha256
(``metadata.sha256``, and ``source_hash`` on AWS) and the file staged in
``cdktf.out`` must both be the manifest's sha256, and every artifact must be
uploaded. Each mismatch is an :class:`UploadFinding` in the PR comment, not an
error: a reviewer needs to see all of them at once.

A stack that uploads no object is not compared (it deploys no model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lepton_cdk.contract import (
    Artifact,
    ContractError,
    Manifest,
    artifact_problems,
    digest_bytes,
    digest_regular_file,
    resolve_artifact_path,
)

from .resources import StackDocument

# Terraform type -> the attribute holding the object's key.
OBJECT_KEYS = {"aws_s3_object": "key", "google_storage_bucket_object": "name"}
_RESYNTH = "re-run `cdktf synth` with this manifest, or pass the manifest the stack deploys"


@dataclass(frozen=True)
class UploadFinding:
    """One way the synth and the manifest disagree. ``stack`` is empty for the manifest's own files."""

    stack: str
    resource: str  # "aws_s3_object.<name>" or "artifact '<name>'"
    message: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"stack": self.stack, "resource": self.resource, "message": self.message}


@dataclass(frozen=True)
class ManifestCheck:
    """The verdict on ``--manifest``: its checksums and the objects the stacks upload."""

    path: Path
    model: str  # "<name>:<version>"
    artifacts: int
    objects_checked: int
    stacks_checked: tuple[str, ...]
    findings: tuple[UploadFinding, ...]

    @property
    def passed(self) -> bool:
        """True when every artifact matches its checksums and every upload matches the manifest."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": str(self.path), "model": self.model, "artifacts": self.artifacts,
                "objects_checked": self.objects_checked, "stacks_checked": list(self.stacks_checked),
                "passed": self.passed, "findings": [f.to_dict() for f in self.findings]}


def _artifact_for_key(manifest: Manifest, key: str) -> Artifact | None:
    """The artifact whose path ends ``key`` (the longest such path), or None."""
    matches = [a for a in manifest.artifacts if key == a.path or key.endswith("/" + a.path)]
    return max(matches, key=lambda a: len(a.path)) if matches else None


def _literal(value: object) -> str | None:
    return value if isinstance(value, str) and "${" not in value else None


def _uploaded_sha256(stack: StackDocument, body: dict) -> tuple[str | None, str | None]:
    """(sha256 of what the object uploads, or None, and why it could not be hashed)."""
    source, content = body.get("source"), body.get("content")
    if isinstance(content, str) and source is None:
        return digest_bytes(content.encode()).sha256, None
    literal = _literal(source)
    if literal is None:
        return None, f"its source {source!r} is not a literal file path, so the review cannot hash what it uploads"
    try:
        file = resolve_artifact_path(stack.folder, literal)
    except ContractError:
        return None, f"its source {literal!r} leaves the stack folder {stack.folder}"
    try:
        return digest_regular_file(file, what="staged file", fix="re-run `cdktf synth`").sha256, None
    except ContractError as exc:
        return None, f"its source cannot be hashed ({exc})"


def _object_problems(manifest: Manifest, stack: StackDocument, key_attr: str, body: dict) -> tuple[Artifact | None, list[str]]:
    """(the artifact this object uploads, or None, and what is wrong with it)."""
    key = _literal(body.get(key_attr))
    art = _artifact_for_key(manifest, key) if key is not None else None
    if art is None:
        return None, [f"uploads {key_attr} {body.get(key_attr)!r}, which is no artifact of "
                      f"{manifest.model_name}:{manifest.model_version}; {_RESYNTH}"]
    problems = []
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    for label, declared in (("metadata.sha256", metadata.get("sha256")), ("source_hash", body.get("source_hash"))):
        if declared is not None and declared != art.sha256:
            problems.append(f"declares {label} {declared} for {key} but the manifest records {art.sha256} "
                            f"for artifact {art.name!r}; {_RESYNTH}")
    sha256, why = _uploaded_sha256(stack, body)
    if sha256 is None:
        problems.append(f"{why}; {_RESYNTH}")
    elif sha256 != art.sha256:
        problems.append(f"uploads a file whose sha256 is {sha256} as {key}, but the manifest records {art.sha256} "
                        f"for artifact {art.name!r}; {_RESYNTH}")
    return art, problems


def _stack_findings(manifest: Manifest, stack: StackDocument) -> tuple[int, list[UploadFinding]]:
    """(objects compared, findings) for one stack; (0, []) when it uploads nothing."""
    findings: list[UploadFinding] = []
    uploaded: set[str] = set()
    count = 0
    for rtype, key_attr in OBJECT_KEYS.items():
        for name, body in stack.resources_of(rtype).items():
            count += 1
            art, problems = _object_problems(manifest, stack, key_attr, body)
            if art is not None:
                uploaded.add(art.name)
            findings += [UploadFinding(stack.name, f"{rtype}.{name}", message) for message in problems]
    if count:
        findings += [UploadFinding(stack.name, f"artifact {art.name!r}",
                                   f"the stack uploads no object for artifact {art.name!r} ({art.path}); {_RESYNTH}")
                     for art in manifest.artifacts if art.name not in uploaded]
    return count, findings


def check_manifest_uploads(manifest: Manifest, path: str | Path, stacks: list[StackDocument]) -> ManifestCheck:
    """Re-hash ``manifest``'s artifacts and compare every object ``stacks`` upload with it (see the module docs)."""
    findings = [UploadFinding("", f"artifact {name!r}", message) for name, message in artifact_problems(manifest).items()]
    objects, checked = 0, []
    for stack in stacks:
        count, found = _stack_findings(manifest, stack)
        if count:
            objects += count
            checked.append(stack.name)
            findings += found
    return ManifestCheck(Path(path), f"{manifest.model_name}:{manifest.model_version}", len(manifest.artifacts),
                         objects, tuple(checked), tuple(findings))
