"""The boot script GPU nodes run: fetch the model's artifacts, verify, mark ready.

Cloud-neutral: each cloud supplies only its copy command (``aws s3 cp``,
``gcloud storage cp``). The script refuses to mark the node ready unless
every artifact's sha256 equals the manifest's value; serving (a later
issue) starts only when ``/var/lib/lepton/model-ready`` exists.

The text is embedded in Terraform JSON, where ``${`` and ``%{`` start
template expressions, so the script never uses them (``$VAR``, not
``${VAR}``); :func:`render_fetch_and_verify_script` checks that.
Standard library only.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from .interfaces import ModelObject

MODEL_ROOT = "/opt/lepton/models"
STATE_DIR = "/var/lib/lepton"
READY_MARKER = f"{STATE_DIR}/model-ready"
FAILED_MARKER = f"{STATE_DIR}/model-failed"

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
"""


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
) -> str:
    """The bash boot script for a node.

    ``copy_command`` is the body of a shell function that copies object URI
    ``$1`` to local file ``$2`` (for example ``aws s3 cp "$1" "$2"``).
    ``objects``' URIs may hold cdktf tokens (a bucket named by Terraform).
    """
    model_dir = f"{model_root}/{model_name}/{model_version}"
    fetches = "\n".join(f"fetch {_quote(o.uri)} {_quote(o.relative_path)} {_quote(o.sha256)}" for o in objects)
    body = "\n".join("  " + line for line in copy_command.strip().splitlines())
    script = (
        _TEMPLATE.replace("@COPY@", body)
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
