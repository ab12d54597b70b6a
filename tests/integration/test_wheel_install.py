"""The wheel, installed as a user installs it: base + ``aws`` in a fresh virtualenv, then a stack of their own.

Nothing is downloaded. The fresh virtualenv gets exactly the versions the
repo's own install has: each distribution the wheel needs (with its ``aws``
extra) is packed back into a wheel from ``.venv`` (the files its RECORD
lists), and pip installs with ``--no-index`` from that folder under the
repo's constraints.txt, with the machine's pip configuration switched off
(``PIP_CONFIG_FILE=/dev/null``) so no global find-links, index or constraint
takes part. Anything the wheel's metadata asks for that the repo's install
does not have fails the install, which is a failure worth seeing.

Then, in that virtualenv: the heavy pieces are absent (torch, onnxruntime,
pandas, the Google provider, ...); a user's script synthesizes a
TerraformStack with ``ModelBucket`` and ``GpuNodeGroup`` from
``lepton_cdk.aws``; ``lepton --help`` starts; the parts whose extra is not
installed say which extra in one line.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest

from tests.support.manifests import write_fake_manifest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NOT_IN_BASE_PLUS_AWS = ("torch", "onnx", "onnxscript", "onnxruntime", "numpy", "pandas", "pyarrow", "matplotlib", "tensorboard",
                        "boto3", "botocore", "google-cloud-storage", "starlette", "uvicorn", "cdktf-cdktf-provider-google")
_SKIPPED_DIST_INFO = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}  # written by the installer, not the wheel

USER_STACK = '''
"""A user's own stack: two lepton-cdk constructs and the provider imported the usual cdktf way."""
import sys

from lepton_cdk.aws import GpuNodeGroup, ModelBucket  # first, so the provider import below loads per submodule

from cdktf import App, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider


class ModelHost(TerraformStack):
    def __init__(self, scope, id, manifest):
        super().__init__(scope, id)
        AwsProvider(self, "aws", region="eu-west-1")
        bucket = ModelBucket(self, "Models")
        GpuNodeGroup(self, "Nodes", model=bucket.upload_artifacts(manifest), max_size=2)


app = App(outdir=sys.argv[2])
ModelHost(app, "model-host", sys.argv[1])
app.synth()
'''


# -- a wheelhouse from the repo's own install ----------------------------------------------------------------------


def _requirements(lines: list[str], extras: set[str]) -> list[tuple[str, set[str]]]:
    """(name, extras) of the ``Requires-Dist`` lines that apply with ``extras`` asked for.

    Markers other than ``extra`` are not evaluated: a requirement that does not apply here is either not installed
    (skipped by :func:`_closure`) or one more wheel in the wheelhouse that pip does not pick.
    """
    wanted = []
    for line in lines:
        spec, _, marker = line.partition(";")
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if extra and extra.group(1) not in extras:
            continue
        name = re.split(r"[<>=!~\[(\s]", spec.strip(), maxsplit=1)[0]
        asked = re.search(r"\[([^\]]*)\]", spec)
        wanted.append((name, {e.strip() for e in asked.group(1).split(",")} if asked else set()))
    return wanted


def _closure(roots: list[tuple[str, set[str]]]) -> dict[str, metadata.Distribution]:
    """Every installed distribution reachable from ``roots`` (normalized name -> distribution)."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = list(roots)
    while todo:
        name, extras = todo.pop()
        key = (re.sub(r"[-_.]+", "-", name).lower(), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a marker that does not apply here (python_version < "3.11", ...): pip will not ask for it either
        found[key[0]] = dist
        todo.extend(_requirements(dist.requires or [], set(extras)))
    return found


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _repack(dist: metadata.Distribution, into: Path) -> Path:
    """A wheel holding the files ``dist`` installed (its RECORD), minus bytecode and installer files."""
    metadata_file = next(f for f in dist.files or [] if f.name == "METADATA" and f.parent.name.endswith(".dist-info"))
    info_dir = Path(dist.locate_file(metadata_file)).parent
    wheel_meta = Parser().parsestr((info_dir / "WHEEL").read_text())
    tags = [t.split("-") for t in wheel_meta.get_all("Tag")]
    tag = "-".join(".".join(sorted({t[i] for t in tags})) for i in range(3))
    stem = info_dir.name.removesuffix(".dist-info")
    target = into / f"{stem}-{tag}.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    # stored, not deflated: packing ~200 MB of provider bindings takes seconds instead of a minute
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as wheel:
        for entry in dist.files or []:
            parts = entry.parts
            if parts[0] == ".." or "__pycache__" in parts:
                continue  # scripts outside site-packages are regenerated from entry points; bytecode is recompiled
            if parts[0] == info_dir.name and parts[-1] in _SKIPPED_DIST_INFO:
                continue
            data = Path(dist.locate_file(entry)).read_bytes()
            wheel.writestr(entry.as_posix(), data)
            writer.writerow([entry.as_posix(), _record_hash(data), len(data)])
        writer.writerow([f"{info_dir.name}/RECORD", "", ""])
        wheel.writestr(f"{info_dir.name}/RECORD", record.getvalue())
    return target


def _pip_env() -> dict[str, str]:
    """The environment with every pip setting of this machine switched off: only the command line counts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(the lepton-cdk wheel, a wheelhouse of everything it needs with the aws extra), built without a network."""
    root = tmp_path_factory.mktemp("wheel")
    house = root / "wheelhouse"
    house.mkdir()
    # The build backend, from the repo's install too (pyproject's build-system asks for setuptools>=77).
    _repack(metadata.distribution("setuptools"), house)

    # Build from a copy holding only what the wheel is made of: the checkout's build/ and *.egg-info stay untouched
    # by a test that may run beside others, and a file the wheel needs but pyproject does not declare shows up here.
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    for package in ("lepton_cdk", "model_pipeline"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist_dir = root / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--find-links", str(house),
                           "--wheel-dir", str(dist_dir), str(src)], env=_pip_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = dist_dir.glob("lepton_cdk-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        meta = Parser().parsestr(zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode())
    for dist in _closure(_requirements(meta.get_all("Requires-Dist") or [], {"aws"})).values():
        _repack(dist, house)
    return wheel, house


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory) -> Path:
    """A fresh virtualenv with ``lepton-cdk[aws]`` installed from the wheel; returns its bin/ folder."""
    wheel, house = built
    root = tmp_path_factory.mktemp("venv") / "user-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install", "--no-index", "--find-links",
         str(house), "--constraint", str(REPO / "constraints.txt"), "--no-compile", f"{wheel}[aws]"],
        env=_pip_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / "bin"


def run_in(venv: Path, *args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", CHECKPOINT_DISABLE="1", CI="true")
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# -- the tests -----------------------------------------------------------------------------------------------------


def test_the_wheel_carries_types_license_data_files_and_project_metadata(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        license_names = [n for n in names if re.search(r"\.dist-info/licenses/LICENSE$", n)]
        assert license_names and b"Apache License" in zf.read(license_names[0])
    for needed in ("lepton_cdk/py.typed", "lepton_cdk/contract/schemas/manifest.schema.json",
                   "lepton_cdk/contract/schemas/data-plan.schema.json", "lepton_cdk/review/prices.csv"):
        assert needed in names
    assert not any(n.startswith(("tests/", "infra/", "examples/")) for n in names)
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("Project-URL") and "Typing :: Typed" in meta.get_all("Classifier")
    requires = meta.get_all("Requires-Dist")
    assert [r for r in requires if "==" in r.partition(";")[0]] == [], "exact pins belong in constraints.txt"
    assert set(meta.get_all("Provides-Extra")) >= {"aws", "gcp", "pipeline", "data", "serve", "all", "gpu", "vertex", "dev"}


def test_base_plus_aws_installs_no_ml_stack_and_no_other_cloud(venv):
    probe = "import json, importlib.metadata as m; print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))"
    proc = run_in(venv, venv / "python", "-c", probe)
    assert proc.returncode == 0, proc.stderr
    installed = {re.sub(r"[-_.]+", "-", n) for n in json.loads(proc.stdout)}
    assert {"lepton-cdk", "cdktf", "constructs", "cdktf-cdktf-provider-aws"} <= installed
    assert sorted(installed & set(NOT_IN_BASE_PLUS_AWS)) == []


def test_a_user_stack_with_model_bucket_and_gpu_nodes_synthesizes_from_the_wheel(venv, tmp_path):
    manifest = write_fake_manifest(tmp_path / "model")
    script = tmp_path / "project" / "main.py"
    script.parent.mkdir()
    script.write_text(textwrap.dedent(USER_STACK))
    out = tmp_path / "project" / "cdktf.out"
    proc = run_in(venv, venv / "python", script, manifest, out, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "stacks" / "model-host" / "cdk.tf.json").read_text())
    resources = doc["resource"]
    buckets = {b["//"]["metadata"]["path"]: b for b in resources["aws_s3_bucket"].values()}
    assert buckets["model-host/Models/Resource"]["bucket_prefix"] == "lepton-models-"
    (group,) = resources["aws_autoscaling_group"].values()
    assert group["max_size"] == 2 and "aws_launch_template." in group["launch_template"]["id"]
    keys = sorted(o["key"] for o in resources["aws_s3_object"].values())
    assert keys == ["models/credit-risk/1.0.0/model.onnx", "models/credit-risk/1.0.0/preprocessing.json"]
    assert doc["provider"]["aws"] == [{"region": "eu-west-1"}]


def test_the_cli_starts_and_each_missing_extra_is_one_line(venv, tmp_path):
    helped = run_in(venv, venv / "lepton", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "pipeline" in helped.stdout, helped.stderr

    pipeline = run_in(venv, venv / "lepton", "pipeline", "run", cwd=tmp_path)
    assert pipeline.returncode == 1
    assert pipeline.stderr.startswith("error: model_pipeline needs the 'pipeline' extra: pip install 'lepton-cdk[pipeline]' (missing: torch")
    assert len(pipeline.stderr.strip().splitlines()) == 1

    demo = run_in(venv, venv / "lepton", "demo", "--quick", "--target", "gcp", cwd=tmp_path)
    assert demo.returncode == 1
    assert demo.stderr.startswith("error: lepton demo --target gcp needs the 'pipeline' and 'gcp' extras: "
                                  "pip install 'lepton-cdk[pipeline,gcp]'")
    assert len(demo.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # refused before anything was written

    gcp = run_in(venv, venv / "python", "-c", "import lepton_cdk.gcp", cwd=tmp_path)
    assert gcp.returncode == 1
    assert gcp.stderr.strip().splitlines()[-1] == (
        "lepton_cdk.extras.MissingExtraError: lepton_cdk.gcp needs the 'gcp' extra: pip install 'lepton-cdk[gcp]' "
        "(missing: cdktf_cdktf_provider_google)")
