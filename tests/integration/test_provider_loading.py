"""Loading only the provider submodules in use must not change a byte of the synthesized app.

``import lepton_cdk`` installs an import hook that hands out the prebuilt
provider packages without running their ``__init__`` (which imports ~2,100
submodules) and starts the jsii kernel with a preload that does the same on
the JavaScript side. The app is synthesized three ways: lepton-cdk's own path
(``python -m infra``), the usual cdktf imports of both provider packages
after ``import lepton_cdk``, and the baseline that imports both packages in
full first; every file must be identical. A user's own stack written the
usual cdktf way is synthesized with and without the hook, from a folder
outside the checkout, and also reports, structurally, that it was lazy.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.manifests import write_fake_manifest
from tests.support.terraform import REPO_ROOT, tool_env

pytestmark = pytest.mark.integration

PROVIDERS_THEN_APP = "import cdktf_cdktf_provider_aws, cdktf_cdktf_provider_google\nfrom lepton_cdk.app.main import main\nraise SystemExit(main())\n"
FULL_IMPORT_THEN_APP = PROVIDERS_THEN_APP  # the provider packages come before lepton_cdk: their __init__ runs
USUAL_IMPORTS_AFTER_LEPTON_CDK = "import lepton_cdk\n" + PROVIDERS_THEN_APP  # the same imports, after the hook

# A user's main.py the way cdktf's docs write one, plus a lepton-cdk construct, so that the user's
# imports and the constructs' own (lepton_cdk.core.framework) meet in one synth.
USER_STACK = '''
import os, sys
from cdktf import App, TerraformOutput, TerraformStack
from constructs import Construct

import cdktf_cdktf_provider_aws as aws
from cdktf_cdktf_provider_aws import kms_alias
from cdktf_cdktf_provider_aws.provider import AwsProvider
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from lepton_cdk.aws import ModelBucket


class UserStack(TerraformStack):
    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        AwsProvider(self, "aws", region="us-east-1")
        logs = S3Bucket(self, "Logs", bucket="acme-logs")
        key = aws.kms_key.KmsKey(self, "Key", description="user key", enable_key_rotation=True)
        kms_alias.KmsAlias(self, "KeyAlias", name="alias/acme", target_key_id=key.key_id)
        models = ModelBucket(self, "Models", bucket_name="acme-models")
        TerraformOutput(self, "logs_arn", value=logs.arn)
        TerraformOutput(self, "models_arn", value=models.bucket_arn)


app = App(outdir=sys.argv[1])
UserStack(app, "user")
app.synth()
'''

# Printed by the lazy run after its synth: what was loaded, on which side, and by whom.
REPORT = '''
import json
import lepton_cdk
from lepton_cdk.core import framework, node_preload


def kernel_node_options():
    """NODE_OPTIONS of the jsii kernel this process started (Linux /proc), or None."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[1] != str(os.getpid()):
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as cmd, open(f"/proc/{pid}/environ", "rb") as env:
                if b"jsii-runtime" in cmd.read():
                    return next((e.decode()[13:] for e in env.read().split(b"\\0") if e.startswith(b"NODE_OPTIONS=")), "")
        except OSError:
            continue
    return None


print(json.dumps({
    "lazy": lepton_cdk.is_lazy_provider(aws),
    "shared": framework.provider_package("cdktf_cdktf_provider_aws") is aws,
    "loaded": framework.aws.loaded_submodules(),
    "preload": str(node_preload.kernel_preload()),
    "kernel_node_options": kernel_node_options(),
}))
'''


def _synth(argv, outdir, lepton_env, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=tool_env({**lepton_env, "CDKTF_OUTDIR": str(outdir)}),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_lazy_provider_loading_synthesizes_byte_identical_output(tmp_path):
    # How much faster it is lives in `make bench` (tests/bench/bench_synth.py), not in a timed test.
    lepton_env = {"LEPTON_MANIFEST": str(write_fake_manifest(tmp_path / "model")), "LEPTON_TARGET": "all",
                  "LEPTON_GCP_PROJECT": "lepton-demo", "LEPTON_STATE_DIR": str(tmp_path / "state")}
    _synth([sys.executable, "-m", "infra"], tmp_path / "lazy", lepton_env)
    _synth([sys.executable, "-c", USUAL_IMPORTS_AFTER_LEPTON_CDK], tmp_path / "usual", lepton_env)
    full = _synth([sys.executable, "-c", FULL_IMPORT_THEN_APP], tmp_path / "full", lepton_env)

    full_files = _files(tmp_path / "full")
    assert any(name.endswith("cdk.tf.json") for name in full_files)
    for variant in ("lazy", "usual"):
        files = _files(tmp_path / variant)
        assert sorted(files) == sorted(full_files), variant
        for name, content in files.items():
            assert content == full_files[name], f"{variant}: {name} differs from the full import's"
    # the baseline was slow, and the user is told how not to be (one line per provider package)
    assert "cdktf_cdktf_provider_aws was imported before lepton_cdk" in full.stderr


def test_a_user_stack_with_the_usual_cdktf_imports_is_lazy_and_byte_identical(tmp_path):
    project = tmp_path / "project"  # a user's own cdktf project, outside this checkout
    project.mkdir()
    (project / "main.py").write_text("import lepton_cdk  # first: the provider imports below load per submodule\n"
                                     + USER_STACK + REPORT)
    # the same stack with the provider package imported before lepton_cdk (through lepton_cdk.aws): in full
    (project / "main_full.py").write_text("import cdktf_cdktf_provider_aws\n" + USER_STACK)

    lazy = _synth([sys.executable, "main.py", str(tmp_path / "lazy")], tmp_path / "unused", {}, cwd=project)
    _synth([sys.executable, "main_full.py", str(tmp_path / "full")], tmp_path / "unused", {}, cwd=project)

    full_files = _files(tmp_path / "full")
    assert any(name.endswith("cdk.tf.json") for name in full_files)
    assert _files(tmp_path / "lazy") == full_files
    report = json.loads(lazy.stdout.strip().splitlines()[-1])
    assert report["lazy"] is True and report["shared"] is True
    # kms_alias, kms_key, provider and s3_bucket from the user, what ModelBucket uses, and nothing like ~2,100
    assert {"kms_alias", "kms_key", "provider", "s3_bucket"} <= set(report["loaded"]) and len(report["loaded"]) < 30
    assert report["preload"] != "None"
    if report["kernel_node_options"] is not None:  # Linux: the Node.js kernel itself started with the preload
        assert report["kernel_node_options"].endswith(f'--require "{report["preload"]}"')
