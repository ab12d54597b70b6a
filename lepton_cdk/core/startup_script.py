"""The boot script GPU nodes run: fetch the model's artifacts, verify, mark ready, serve.

Cloud-neutral: each cloud supplies only its copy command (``aws s3 cp``,
``gcloud storage cp``). The script refuses to mark the node ready unless
every artifact's sha256 equals the manifest's value. With a
:class:`TritonLaunch`, it then lays out a Triton model repository
(``/var/lib/lepton/triton/<model>/1/model.onnx`` + the ``config.pbtxt``
generated from the manifest's signature, the same file ``lepton export
triton`` writes) and starts Triton in a container, serving the Open
Inference Protocol v2 on port 8000; serving never starts on a failed check.
A container that will not start is recorded in ``serving-failed`` but does
not fail the script: its exit status reports the model check, and the load
balancer's readiness check (``/v2/health/ready``) is what takes a node that
does not serve out of service.

The text is embedded in Terraform JSON, where ``${`` and ``%{`` start
template expressions, so the script never uses them (``$VAR``, not
``${VAR}``); :func:`render_fetch_and_verify_script` checks that.
Standard library only.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from lepton_cdk.contract import Manifest
from lepton_cdk.contract.serving import TRITON_HTTP_PORT, TRITON_IMAGE, TRITON_MODEL_VERSION, triton_model_config

from .interfaces import ModelObject

MODEL_ROOT = "/opt/lepton/models"
STATE_DIR = "/var/lib/lepton"
READY_MARKER = f"{STATE_DIR}/model-ready"
FAILED_MARKER = f"{STATE_DIR}/model-failed"
TRITON_CONTAINER = "lepton-triton"

# A cdktf token embedded in a string: left alone, cdktf turns it into a Terraform reference.
_TOKEN = re.compile(r"\$\{TfToken\[[A-Za-z0-9_.]+\]\}")

_TEMPLATE = """#!/bin/bash
# lepton-cdk: fetch model @NAME@ version @VERSION@ and verify every artifact against the manifest.
# Nothing may serve the model unless @READY@ exists; a mismatch leaves @FAILED@ instead.
set -euo pipefail
umask 022
MODEL_DIR=@MODEL_DIR@
STATE_DIR=@STATE_DIR@
mkdir -p "$MODEL_DIR" "$STATE_DIR"
rm -f "$STATE_DIR/model-ready" "$STATE_DIR/model-failed"

fail() {
  echo "lepton: $1" >&2
  echo "$1" > "$STATE_DIR/model-failed"
  exit 1
}

copy_object() {
@COPY@
}

fetch() {
  src="$1"; dest="$MODEL_DIR/$2"; want="$3"
  mkdir -p "$(dirname "$dest")"
  copy_object "$src" "$dest.part" || fail "download of $src failed"
  got="$(sha256sum "$dest.part" | cut -d' ' -f1)"
  if [ "$got" != "$want" ]; then
    rm -f "$dest.part"
    fail "sha256 of $src is $got but the manifest records $want; refusing to start"
  fi
  mv -f "$dest.part" "$dest"
  echo "lepton: verified $2 ($want)"
}

@FETCHES@

printf 'model=%s\\nversion=%s\\nsha256=%s\\npath=%s\\n' @NAME@ @VERSION@ @SHA@ "$MODEL_DIR/"@PRIMARY@ > "$STATE_DIR/model-ready.tmp"
mv -f "$STATE_DIR/model-ready.tmp" "$STATE_DIR/model-ready"
echo "lepton: model ready in $MODEL_DIR"
@SERVE@"""

# Runs only after every artifact verified. The repository is rebuilt from the verified file
# each boot; the heredoc is quoted, so bash expands nothing inside the generated config.
_TRITON_TEMPLATE = """
# errexit is off inside a function called from `if`, so every step checks its own status
start_triton() {
  rm -f "$STATE_DIR/serving" "$STATE_DIR/serving-failed"
  TRITON_REPO="$STATE_DIR/triton"
  MODEL_REPO="$TRITON_REPO/"@NAME@
  rm -rf "$MODEL_REPO.new" || return 1
  mkdir -p "$MODEL_REPO.new/@TVERSION@" || return 1
  cp -f "$MODEL_DIR/"@PRIMARY@ "$MODEL_REPO.new/@TVERSION@/model.onnx" || return 1
  cat > "$MODEL_REPO.new/config.pbtxt" <<'LEPTON_TRITON_CONFIG' || return 1
@CONFIG@LEPTON_TRITON_CONFIG
  # a server from an earlier boot must not read the folder while it is swapped
  docker rm -f @CONTAINER@ >/dev/null 2>&1 || true
  rm -rf "$MODEL_REPO" && mv "$MODEL_REPO.new" "$MODEL_REPO" || return 1
  docker run --detach --name @CONTAINER@ --restart unless-stopped --gpus all --shm-size 1g \\
    --publish @PORT@:8000 --volume "$TRITON_REPO:/models:ro" @IMAGE@ \\
    tritonserver --model-repository=/models --model-control-mode=none --strict-readiness=true || return 1
  printf 'image=%s\\nport=%s\\n' @IMAGE@ @PORT@ > "$STATE_DIR/serving"
  echo "lepton: Triton @IMAGE@ serving @NAME@ (OIP v2) on port @PORT@; ready at /v2/health/ready"
}
if ! start_triton; then
  echo "lepton: could not start Triton (@IMAGE@); check docker and the NVIDIA container toolkit on the node" >&2
  echo "could not start Triton (@IMAGE@); check docker and the NVIDIA container toolkit on the node" > "$STATE_DIR/serving-failed"
fi
"""


@dataclass(frozen=True)
class TritonLaunch:
    """How a node serves the verified model: Triton in a container, from a generated model repository."""

    model_name: str
    config_pbtxt: str
    image: str = TRITON_IMAGE
    http_port: int = TRITON_HTTP_PORT

    @classmethod
    def for_manifest(cls, manifest: Manifest, *, image: str = TRITON_IMAGE, http_port: int = TRITON_HTTP_PORT) -> TritonLaunch:
        """Serve ``manifest``'s model with the ``config.pbtxt`` generated from its signature."""
        return cls(model_name=manifest.model_name, config_pbtxt=triton_model_config(manifest), image=image, http_port=http_port)


def _quote(value: str) -> str:
    return shlex.quote(value)


def render_fetch_and_verify_script(
    *,
    model_name: str,
    model_version: str,
    objects: Sequence[ModelObject],
    primary: ModelObject,
    copy_command: str,
    model_root: str = MODEL_ROOT,
    state_dir: str = STATE_DIR,
    triton: TritonLaunch | None = None,
) -> str:
    """The bash boot script for a node.

    ``copy_command`` is the body of a shell function that copies object URI
    ``$1`` to local file ``$2`` (for example ``aws s3 cp "$1" "$2"``).
    ``objects``' URIs may hold cdktf tokens (a bucket named by Terraform).
    With ``triton``, the verified model is then served by Triton (see
    :class:`TritonLaunch`); without it the script stops at the ready marker.
    """
    model_dir = f"{model_root}/{model_name}/{model_version}"
    fetches = "\n".join(f"fetch {_quote(o.uri)} {_quote(o.relative_path)} {_quote(o.sha256)}" for o in objects)
    body = "\n".join("  " + line for line in copy_command.strip().splitlines())
    serve = ""
    if triton is not None:
        config = triton.config_pbtxt if triton.config_pbtxt.endswith("\n") else triton.config_pbtxt + "\n"
        if "\nLEPTON_TRITON_CONFIG\n" in "\n" + config:
            raise ValueError("the Triton config contains the heredoc terminator line LEPTON_TRITON_CONFIG; rename what carries it")
        serve = (
            _TRITON_TEMPLATE.replace("@CONFIG@", config)
            .replace("@TVERSION@", TRITON_MODEL_VERSION)
            .replace("@CONTAINER@", TRITON_CONTAINER)
            .replace("@IMAGE@", _quote(triton.image))
            .replace("@PORT@", str(int(triton.http_port)))
            .replace("@NAME@", _quote(triton.model_name))
        )
    script = (
        _TEMPLATE.replace("@SERVE@", serve)
        .replace("@COPY@", body)
        .replace("@FETCHES@", fetches)
        .replace("@MODEL_DIR@", _quote(model_dir))
        .replace("@STATE_DIR@", _quote(state_dir))
        .replace("@READY@", f"{state_dir}/model-ready")
        .replace("@FAILED@", f"{state_dir}/model-failed")
        .replace("@NAME@", _quote(model_name))
        .replace("@VERSION@", _quote(model_version))
        .replace("@SHA@", _quote(primary.sha256))
        .replace("@PRIMARY@", _quote(primary.relative_path))
    )
    leftover = _TOKEN.sub("", script)
    if "${" in leftover or "%{" in leftover:
        raise ValueError("startup script contains '${' or '%{', which Terraform would read as a template; use $VAR instead")
    return script
