"""Text with quotes, backslashes and template markers survives cdktf and Terraform byte for byte.

The GPU nodes' boot script reaches AWS as ``base64encode(<script with
references>)``; Terraform reads the literal parts as HCL strings, where
``\\n``, ``${`` and ``%{`` mean something. ``literal_with_references`` must
escape exactly those. Checked with the real Terraform CLI (no provider needed).
"""

from __future__ import annotations

import base64
import shutil

import pytest

from lepton_cdk.core.framework import (
    App,
    Fn,
    LocalBackend,
    TerraformLocal,
    TerraformOutput,
    TerraformStack,
    literal_with_references,
)
from tests.support.terraform import Terraform, tool_env

pytestmark = pytest.mark.integration

TRICKY = (
    "#!/bin/bash\nprintf 'a=%s\\nb=%s\\n' \"$1\" \"$2\"\n"
    "echo \"${HOME}\" '%{ if }' $$ \\\\ \\t tab:\t end\n"
    "unicode: é ✓\n"
    "bucket=@NAME@/key\n"
)


def test_literal_with_references_round_trips_through_terraform(tmp_path):
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH")
    app = App(outdir=str(tmp_path / "out"))
    stack = TerraformStack(app, "strings")
    LocalBackend(stack, path=str(tmp_path / "terraform.strings.tfstate"))  # cdktf's default is the current folder
    name = TerraformLocal(stack, "name", "bucket-from-a-reference")
    text = TRICKY.replace("@NAME@", name.as_string)
    TerraformOutput(stack, "encoded", value=Fn.base64encode(literal_with_references(text)))
    app.synth()

    tf = Terraform(tmp_path / "out" / "stacks" / "strings", tool_env())
    tf("init", "-input=false", "-no-color")
    tf("apply", "-auto-approve", "-input=false", "-no-color")
    encoded = tf("output", "-raw", "encoded").stdout
    assert base64.b64decode(encoded).decode() == TRICKY.replace("@NAME@", "bucket-from-a-reference")
