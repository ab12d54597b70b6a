"""Where a manifest's artifacts live in a bucket and on a node. Standard library only.

Both clouds store a model version under one key prefix,
``models/<model name>/<model version>/`` by default, with each artifact at
its manifest path below it, so a node (or the pipeline) can find every file
of a version from the prefix alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from lepton_cdk.contract import Manifest, artifact_path_problem, read_manifest, verify_artifacts

from .interfaces import ModelObject


def default_key_prefix(manifest: Manifest) -> str:
    """``models/<name>/<version>/`` for ``manifest``."""
    return f"models/{manifest.model_name}/{manifest.model_version}/"


def load_verified_manifest(manifest: Manifest | str | os.PathLike[str]) -> Manifest:
    """The manifest with every artifact re-hashed against it.

    A path is read with :func:`lepton_cdk.contract.read_manifest`; a
    :class:`Manifest` already in memory is re-verified, because what gets
    uploaded is whatever is on disk *now*. A mismatch raises the contract's
    one-line :class:`~lepton_cdk.contract.ChecksumMismatchError`.
    """
    if isinstance(manifest, Manifest):
        verify_artifacts(manifest)
        return manifest
    return read_manifest(Path(manifest), verify=True)


def key_prefix_problems(prop: str, prefix: str) -> list[str]:
    """Problems that make ``prefix`` unusable as an object key prefix."""
    problems = []
    if not prefix.endswith("/"):
        problems.append(f"{prop}={prefix!r} must end with '/'; use {prefix.rstrip('/') + '/'!r}")
    if prefix.startswith("/"):
        problems.append(f"{prop}={prefix!r} must not start with '/'; use {prefix.lstrip('/')!r}")
    if ".." in PurePosixPath(prefix).parts or "//" in prefix:
        problems.append(f"{prop}={prefix!r} must not contain '..' or empty segments; use a plain path like 'models/<name>/<version>/'")
    if "${" in prefix or "%{" in prefix or "*" in prefix:
        problems.append(f"{prop}={prefix!r} must not contain '${{', '%{{' or '*'; they have meaning in Terraform strings and IAM patterns")
    return problems


def artifact_path_problems(manifest: Manifest) -> list[str]:
    """Problems with artifact paths that would escape the model directory on a node or the key prefix in a bucket.

    The path rules are the contract's (:func:`lepton_cdk.contract.artifact_path_problem`); on top, a path must
    not hold Terraform template syntax, because it becomes part of an object key in the synthesized JSON.
    """
    problems = []
    for art in manifest.artifacts:
        problem = artifact_path_problem(art.path)
        if problem is None and ("${" in art.path or "%{" in art.path):
            problem = "holds Terraform template syntax ('${' or '%{')"
        if problem is not None:
            problems.append(
                f"manifest artifact {art.name!r} has path {art.path!r}, which {problem}; "
                "write artifacts inside the manifest's folder under plain names and re-run the pipeline"
            )
    return problems


def model_objects(manifest: Manifest, key_prefix: str, uri_for: Callable[[str], str]) -> tuple[ModelObject, ...]:
    """Every artifact of ``manifest`` as stored under ``key_prefix``."""
    return tuple(
        ModelObject(
            name=art.name,
            key=key_prefix + art.path,
            uri=uri_for(key_prefix + art.path),
            relative_path=art.path,
            bytes=art.bytes,
            sha256=art.sha256,
            crc32c=art.crc32c,
        )
        for art in manifest.artifacts
    )
