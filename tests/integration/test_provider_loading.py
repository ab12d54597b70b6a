"""Loading only the provider submodules in use must not change a byte of the synthesized app.

``lepton_cdk.core.framework`` registers the prebuilt provider packages
without running their ``__init__`` (which imports ~2,100 submodules). This
synthesizes both stacks twice, once that way (``python -m infra``) and once
after importing both provider packages in full, and compares every file.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.manifests import write_fake_manifest
from tests.support.terraform import REPO_ROOT, tool_env

pytestmark = pytest.mark.integration

FULL_IMPORT_THEN_APP = (
    "import cdktf_cdktf_provider_aws, cdktf_cdktf_provider_google\n"
    "from lepton_cdk.app.main import main\n"
    "raise SystemExit(main())\n"
)


def _synth(argv, outdir, lepton_env) -> None:
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=tool_env({**lepton_env, "CDKTF_OUTDIR": str(outdir)}),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_lazy_provider_loading_synthesizes_byte_identical_output(tmp_path):
    # How much faster it is lives in `make bench` (tests/bench/bench_synth.py), not in a timed test.
    lepton_env = {"LEPTON_MANIFEST": str(write_fake_manifest(tmp_path / "model")), "LEPTON_TARGET": "all",
                  "LEPTON_GCP_PROJECT": "lepton-demo", "LEPTON_STATE_DIR": str(tmp_path / "state")}
    _synth([sys.executable, "-m", "infra"], tmp_path / "lazy", lepton_env)
    _synth([sys.executable, "-c", FULL_IMPORT_THEN_APP], tmp_path / "full", lepton_env)

    lazy_files = sorted(p.relative_to(tmp_path / "lazy") for p in (tmp_path / "lazy").rglob("*") if p.is_file())
    full_files = sorted(p.relative_to(tmp_path / "full") for p in (tmp_path / "full").rglob("*") if p.is_file())
    assert lazy_files == full_files
    assert any(p.name == "cdk.tf.json" for p in lazy_files)
    for rel in lazy_files:
        assert (tmp_path / "lazy" / rel).read_bytes() == (tmp_path / "full" / rel).read_bytes(), f"{rel} differs"
