"""The install comes in pieces: the constructs load no ML stack, and a missing extra is one line naming it.

A missing extra is simulated in a fresh interpreter by setting the module to
``None`` in ``sys.modules``, which is what Python itself does for "this module
cannot be imported" (``import`` raises ``ModuleNotFoundError``,
``importlib.util.find_spec`` answers ``None``). The real thing, a wheel
installed with only the ``aws`` extra, is tests/integration/test_wheel_install.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from lepton_cdk.extras import EXTRA_MODULES, MissingExtraError, require_extra

REPO = Path(__file__).resolve().parents[2]

# What the base install must never pull in (import names), and what each part may need.
ML_STACK = ("torch", "onnx", "onnxscript", "onnxruntime", "numpy", "pandas", "pyarrow", "matplotlib", "tensorboard")
CLOUD_SDKS = ("boto3", "botocore", "google.cloud.storage")
SERVER_STACK = ("starlette", "uvicorn", "prometheus_client", "httpx")
PROVIDERS = ("cdktf_cdktf_provider_aws", "cdktf_cdktf_provider_google")
EVERY_EXTRA_MODULE = tuple(sorted({m for mods in EXTRA_MODULES.values() for m in mods} | set(ML_STACK + CLOUD_SDKS + SERVER_STACK)))

# The distributions no base install may require (names as pip spells them).
HEAVY_DISTRIBUTIONS = {"torch", "onnx", "onnxscript", "onnxruntime", "numpy", "pandas", "pyarrow", "matplotlib", "tensorboard",
                       "boto3", "botocore", "google-cloud-storage", "cdktf-cdktf-provider-aws", "cdktf-cdktf-provider-google"}

_RUNNER = r"""
import json, sys
for name in json.loads(sys.argv[1]):
    sys.modules[name] = None  # what Python does for a module that cannot be imported
code = sys.argv[2]
try:
    exec(code, {"__name__": "__probe__"})
except ImportError as exc:
    print(json.dumps({"raised": type(exc).__module__ + "." + type(exc).__qualname__, "message": str(exc),
                      "is_import_error": True}))
else:
    print(json.dumps({"raised": None}))
"""


def probe(code: str, blocked: tuple[str, ...] = (), timeout: int = 240) -> dict:
    """Run ``code`` in a fresh interpreter with ``blocked`` modules unimportable; returns what it printed last (JSON)."""
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    proc = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(list(blocked)), code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def lepton(args: list[str], blocked: tuple[str, ...], cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The ``lepton`` command in a fresh interpreter with ``blocked`` modules unimportable."""
    code = ("import json, sys\n"
            "for name in json.loads(sys.argv[1]): sys.modules[name] = None\n"
            "from lepton_cdk.cli import main\n"
            "sys.exit(main(json.loads(sys.argv[2])))\n")
    env = {**os.environ, "CI": "true", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    return subprocess.run([sys.executable, "-c", code, json.dumps(list(blocked)), json.dumps(args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def requirement_name(requirement: str) -> str:
    """``"torch>=2.4,<3"`` -> ``"torch"``; ``"lepton-cdk[aws]"`` -> ``"lepton-cdk"`` (normalized, lower case)."""
    return re.split(r"[<>=!~\[;\s]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


@pytest.fixture(scope="module")
def project() -> dict:
    with (REPO / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]


# -- the base loads no ML stack ------------------------------------------------------------------------------------


def test_constructs_checks_review_and_cli_load_no_ml_stack_nor_cloud_sdk(tmp_path):
    """Import every base part and synthesize a bucket and GPU nodes: none of torch, pandas, onnxruntime, ... is loaded."""
    from tests.support.manifests import write_fake_manifest

    manifest = write_fake_manifest(tmp_path / "model")
    heavy = tuple(m for m in EVERY_EXTRA_MODULE if m != "cdktf_cdktf_provider_aws")  # an AWS stack needs no Google provider
    code = f"""
import json, sys
import lepton_cdk.aws, lepton_cdk.gcp, lepton_cdk.patterns, lepton_cdk.checks, lepton_cdk.review, lepton_cdk.contract
import lepton_cdk.cli, lepton_cdk.data, lepton_cdk.data.stores, lepton_cdk.app.main
from lepton_cdk.aws import GpuNodeGroup, ModelBucket
from lepton_cdk.core.framework import TerraformStack, Testing, aws
stack = TerraformStack(Testing.app(), "user")
aws.provider.AwsProvider(stack, "aws", region="us-east-1")
GpuNodeGroup(stack, "Nodes", model=ModelBucket(stack, "Models").upload_artifacts({str(manifest)!r}))
doc = json.loads(Testing.synth(stack))
print(json.dumps({{"resources": sorted(doc["resource"]), "loaded": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"aws_s3_bucket", "aws_autoscaling_group"} <= set(result["resources"])  # the constructs really ran
    assert result["loaded"] == [], f"importing and synthesizing the constructs loaded {result['loaded']}"


def test_lepton_help_and_version_start_with_the_base_only():
    blocked = PROVIDERS + EVERY_EXTRA_MODULE
    helped = lepton(["--help"], blocked)
    assert helped.returncode == 0, helped.stderr
    for command in ("demo", "review", "pipeline", "data", "serve"):
        assert command in helped.stdout
    version = lepton(["--version"], blocked)
    assert version.returncode == 0 and version.stdout.startswith("lepton-cdk "), version.stderr


# -- a missing extra is one line naming it -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,blocked,expected",
    [
        ("import lepton_cdk.aws", ("cdktf_cdktf_provider_aws",),
         "lepton_cdk.aws needs the 'aws' extra: pip install 'lepton-cdk[aws]' (missing: cdktf_cdktf_provider_aws)"),
        ("from lepton_cdk.aws.bucket import ModelBucket", ("cdktf_cdktf_provider_aws",),
         "lepton_cdk.aws needs the 'aws' extra: pip install 'lepton-cdk[aws]' (missing: cdktf_cdktf_provider_aws)"),
        ("import lepton_cdk.gcp", ("cdktf_cdktf_provider_google",),
         "lepton_cdk.gcp needs the 'gcp' extra: pip install 'lepton-cdk[gcp]' (missing: cdktf_cdktf_provider_google)"),
        ("from lepton_cdk.patterns import MigrationTarget; import lepton_cdk.gcp", ("cdktf_cdktf_provider_google",),
         "lepton_cdk.gcp needs the 'gcp' extra: pip install 'lepton-cdk[gcp]' (missing: cdktf_cdktf_provider_google)"),
        ("import lepton_cdk.serve.server", ("onnxruntime", "uvicorn"),
         "lepton_cdk.serve needs the 'serve' extra: pip install 'lepton-cdk[serve]' (missing: onnxruntime, uvicorn)"),
        ("import model_pipeline.config", ("torch",),
         "model_pipeline needs the 'pipeline' extra: pip install 'lepton-cdk[pipeline]' (missing: torch)"),
        ("from lepton_cdk.data.stores import open_store; open_store('s3://some-bucket/data/')", ("botocore",),
         "the S3 store (s3:// locations) needs the 'data' extra: pip install 'lepton-cdk[data]' (missing: botocore)"),
        ("from lepton_cdk.data.stores import open_store; open_store('gs://some-bucket/data/')", ("google.cloud.storage",),
         "the Cloud Storage store (gs:// locations) needs the 'data' extra: pip install 'lepton-cdk[data]' "
         "(missing: google.cloud.storage)"),
        ("from lepton_cdk.data import csv_to_parquet; from pathlib import Path; csv_to_parquet(Path('a.csv'), Path('a.parquet'))",
         ("pyarrow",), "--transcode parquet needs the 'data' extra: pip install 'lepton-cdk[data]' (missing: pyarrow)"),
    ],
    ids=["aws", "aws-submodule", "gcp", "gcp-after-patterns", "serve", "pipeline", "data-s3", "data-gcs", "data-transcode"],
)
def test_a_part_without_its_extra_fails_with_one_line_naming_it(code, blocked, expected):
    result = probe(code, blocked)
    assert result["raised"] == "lepton_cdk.extras.MissingExtraError", result
    assert result["message"] == expected


def test_the_local_store_needs_no_cloud_sdk(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    code = f"from lepton_cdk.data.stores import open_store\nassert [o.key for o in open_store({str(tmp_path)!r}).list()] == ['a.txt']"
    assert probe(code, CLOUD_SDKS + ("pyarrow",))["raised"] is None


@pytest.mark.parametrize(
    "args,blocked,expected",
    [
        (["pipeline", "run", "--help"], ("torch",), None),  # help needs no extra
        (["pipeline", "run", "--source-data", "s.csv", "--target-data", "t.csv"], ("torch", "pandas"),
         "error: model_pipeline needs the 'pipeline' extra: pip install 'lepton-cdk[pipeline]' (missing: torch, pandas)"),
        (["demo", "--quick"], ("torch", "cdktf_cdktf_provider_aws"),
         "error: lepton demo --target aws needs the 'pipeline' and 'aws' extras: pip install 'lepton-cdk[pipeline,aws]' "
         "(missing: torch, cdktf_cdktf_provider_aws)"),
        (["demo", "--quick", "--target", "gcp"], ("cdktf_cdktf_provider_google",),
         "error: lepton demo --target gcp needs the 'gcp' extra: pip install 'lepton-cdk[gcp]' (missing: cdktf_cdktf_provider_google)"),
        (["serve", "manifest.json"], ("starlette",),
         "error: lepton_cdk.serve needs the 'serve' extra: pip install 'lepton-cdk[serve]' (missing: starlette)"),
        (["data", "plan", "s3://some-bucket/in/", "dest"], ("botocore",),
         "error: the S3 store (s3:// locations) needs the 'data' extra: pip install 'lepton-cdk[data]' (missing: botocore)"),
    ],
    ids=["pipeline-help", "pipeline-run", "demo-aws", "demo-gcp", "serve", "data-plan-s3"],
)
def test_the_cli_names_the_missing_extra_in_one_line(tmp_path, args, blocked, expected):
    proc = lepton(args, blocked, cwd=tmp_path)
    if expected is None:
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 1
    assert proc.stderr.strip() == expected
    assert not list(tmp_path.iterdir()), "nothing is written before the missing extra is reported"


def test_the_packaged_app_names_the_missing_provider_in_one_line(tmp_path):
    from tests.support.manifests import write_fake_manifest

    manifest = write_fake_manifest(tmp_path / "model")
    code = ("import runpy, sys\n"
            "sys.modules['cdktf_cdktf_provider_google'] = None\n"
            "runpy.run_module('lepton_cdk.app', run_name='__main__')\n")
    env = {**os.environ, "LEPTON_MANIFEST": str(manifest), "LEPTON_TARGET": "gcp", "CDKTF_OUTDIR": str(tmp_path / "out")}
    env.pop("LEPTON_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("error: the gcp stack needs the 'gcp' extra: pip install 'lepton-cdk[gcp]' "
                                   "(missing: cdktf_cdktf_provider_google)")


def test_require_extra_names_only_the_extras_with_something_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError) as caught:
        require_extra("lepton serve", "aws", "serve")
    assert str(caught.value) == "lepton serve needs the 'serve' extra: pip install 'lepton-cdk[serve]' (missing: onnxruntime)"
    assert caught.value.extras == ("serve",) and caught.value.missing == ("onnxruntime",)
    assert isinstance(caught.value, ImportError)
    with pytest.raises(ValueError, match="unknown extra"):
        require_extra("x", "cuda")


# -- the metadata: ranges in pyproject, exact pins in constraints.txt -----------------------------------------------


def test_the_base_requires_nothing_heavy(project):
    base = {requirement_name(r) for r in project["dependencies"]}
    assert base & HEAVY_DISTRIBUTIONS == set()
    assert {"cdktf", "constructs", "typer"} <= base  # the constructs and the CLI work from the base alone


def test_each_extra_installs_the_modules_its_check_looks_for(project):
    """extras.py and pyproject.toml agree: every module an extra's check probes comes from a distribution the extra names
    (directly or as that distribution's own requirement, like botocore through boto3)."""
    extras = project["optional-dependencies"]
    for extra, modules in EXTRA_MODULES.items():
        assert extra in extras, f"pyproject.toml has no {extra!r} extra"
        named = {requirement_name(r) for r in extras[extra]}
        reachable = set(named)
        for dist in named:
            reachable |= {requirement_name(r) for r in (metadata.requires(dist) or []) if "extra ==" not in r}
        providers = metadata.packages_distributions()
        for module in modules:
            top = module.split(".")[0]
            sources = {d.lower().replace("_", "-") for d in providers.get(top, [])}
            if module == "google.cloud.storage":
                sources &= {"google-cloud-storage"}
            assert sources & reachable, f"extra {extra!r}: nothing it installs provides {module} (from {sorted(sources)})"
    everything = {requirement_name(r) for r in extras["all"]}
    assert everything == {"lepton-cdk"}
    assert set(re.search(r"\[(.*)\]", extras["all"][0]).group(1).split(",")) >= set(EXTRA_MODULES)


def test_metadata_has_ranges_and_constraints_pin_every_named_package_at_the_installed_version(project):
    requirements = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if extra not in ("gpu", "vertex"):  # not part of the repo's own install
            requirements += reqs
    pinned_in_metadata = [r for r in requirements if "==" in r]
    assert pinned_in_metadata == [], "exact pins belong in constraints.txt, ranges in pyproject.toml"

    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin"
            pins[requirement_name(name)] = version.strip()
    named = {requirement_name(r) for r in requirements} - {"lepton-cdk"}
    assert sorted(named - set(pins)) == [], "packages named in pyproject.toml without a pin in constraints.txt"
    for name, version in sorted(pins.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        # a local build label (torch 2.13.0+cpu) satisfies ==2.13.0, as it does for pip
        assert installed.split("+")[0] == version, f"{name} {installed} is installed but constraints.txt pins {version}; run make setup"


@pytest.mark.parametrize("changed", ["pyproject.toml", "constraints.txt"])
def test_make_reinstalls_everything_with_the_pins_when_either_file_changes(changed):
    proc = subprocess.run(["make", "-n", "-W", changed, ".venv/.installed-stamp"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    installs = [ln for ln in proc.stdout.splitlines() if "pip install" in ln and "-e" in ln]
    assert len(installs) == 1, proc.stdout
    assert "-c constraints.txt" in installs[0] and "'.[all,dev" in installs[0]
