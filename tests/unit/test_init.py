"""`lepton init [--cloud aws|gcp] DIR`: a user's own cdktf project that synthesizes, tests itself, and never overwrites.

Each scaffold is written by the real command (in-process, as the console script runs it), then its main.py is
synthesized in-process the way ``cdktf synth`` runs it, and its own test_main.py is run with pytest as the user
would. tests/integration/test_examples_apply.py deploys the AWS scaffold to moto.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from packaging.specifiers import SpecifierSet

import lepton_cdk
from lepton_cdk.checks import PolicyChecks
from lepton_cdk.scaffold import requirement
from lepton_cdk.testing import AWS_SERVICES, MOTO_IMAGE, ProfileError, logical_ids, synthesized_stacks, write_test_manifest
from tests.support.hostile import run_lepton, snapshot

FILES = {".gitignore", "README.md", "cdktf.json", "main.py", "requirements-dev.txt", "requirements.txt", "test_main.py"}


def load_main(project: Path) -> ModuleType:
    """The project's main.py as a module of its own (every project's file is called main.py)."""
    spec = importlib.util.spec_from_file_location(f"scaffold_main_{abs(hash(project))}", project / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=["aws", "gcp"])
def project(request, tmp_path_factory) -> tuple[str, Path]:
    """(cloud, a project `lepton init --cloud CLOUD` wrote into a new folder)."""
    folder = tmp_path_factory.mktemp("init") / f"my-{request.param}-models"
    outcome = run_lepton("init", "--cloud", request.param, str(folder))
    assert outcome.code == 0, outcome.stderr
    assert str(folder) in outcome.stdout and "README.md" in outcome.stdout
    return request.param, folder


def test_init_writes_a_cdktf_project_that_runs_main_py_with_this_python(project):
    cloud, folder = project
    assert {p.name for p in folder.iterdir()} == FILES
    config = json.loads((folder / "cdktf.json").read_text())
    assert config["language"] == "python" and config["output"] == "cdktf.out"
    assert shlex.split(config["app"]) == [sys.executable, "main.py"], "cdktf must run main.py with the Python lepton-cdk is installed in"
    readme = (folder / "README.md").read_text()
    assert readme.startswith(f"# my-{cloud}-models\n") and "{{" not in readme
    assert "cdktf deploy" in readme and "python -m pytest" in readme
    if cloud == "aws":  # the documented local profile: how to start moto and deploy to it
        assert "python -m moto.server -p 5000" in readme and "LEPTON_PROFILE=local" in readme
    else:
        assert "no local profile" in readme.lower()
    assert "cdktf.out/" in (folder / ".gitignore").read_text() and "*.tfstate" in (folder / ".gitignore").read_text()


def test_requirements_name_the_clouds_extra_as_a_range_this_version_satisfies(project):
    cloud, folder = project
    (line,) = (folder / "requirements.txt").read_text().splitlines()
    name, _, spec = line.partition("]")
    assert name == f"lepton-cdk[{cloud}" and lepton_cdk.__version__ in SpecifierSet(spec)
    assert "==" not in spec, "exact pins belong in the user's own lock file, not in a template"
    dev = (folder / "requirements-dev.txt").read_text().splitlines()
    assert dev[0] == "-r requirements.txt" and ("moto[server]>=5.0" in dev) == (cloud == "aws")


@pytest.mark.parametrize(("version", "expected"), [("0.1.0", ">=0.1,<0.2"), ("0.12.3", ">=0.12,<0.13"), ("1.4.2", ">=1.4,<2")])
def test_the_requirement_allows_compatible_releases_only(version, expected):
    assert requirement("aws", version) == f"lepton-cdk[aws]{expected}"


def test_main_py_synthesizes_the_bucket_and_nodes_with_no_policy_finding(project, tmp_path):
    cloud, folder = project
    manifest = write_test_manifest(tmp_path / "model", name="churn", version="4.0.0")
    app = load_main(folder).build_app(tmp_path / "out", {"LEPTON_MANIFEST": str(manifest)})
    findings = PolicyChecks.synth(app)
    assert [f for f in findings if not f.suppressed] == [], findings
    (name, doc), = synthesized_stacks(tmp_path / "out").items()
    assert name == "models"
    prefix = {"aws": "aws", "gcp": "google"}[cloud]
    ids = logical_ids(doc)
    assert any(i.startswith(f"{prefix}_{'s3' if cloud == 'aws' else 'storage'}_bucket.ModelBucket_") for i in ids)
    group = "aws_autoscaling_group.GpuNodes_" if cloud == "aws" else "google_compute_region_instance_group_manager.GpuNodes_"
    assert any(i.startswith(group) for i in ids)
    objects = doc["resource"]["aws_s3_object" if cloud == "aws" else "google_storage_bucket_object"]
    assert len(objects) == 2 and all("models/churn/4.0.0/" in o.get("key", o.get("name", "")) for o in objects.values())
    assert set(doc["output"]) == {"bucket_name", "model_uri", "node_group_name"}


def test_the_aws_local_profile_points_everything_at_moto_and_records_why(tmp_path):
    folder = tmp_path / "project"
    assert run_lepton("init", str(folder)).code == 0  # --cloud aws is the default
    env = {"LEPTON_MANIFEST": str(write_test_manifest(tmp_path / "model")), "LEPTON_PROFILE": "local",
           "LEPTON_AWS_ENDPOINT": "http://127.0.0.1:5123"}
    findings = PolicyChecks.synth(load_main(folder).build_app(tmp_path / "out", env))
    doc = synthesized_stacks(tmp_path / "out")["models"]
    (provider,) = doc["provider"]["aws"]
    assert provider["endpoints"] == [dict.fromkeys(AWS_SERVICES, "http://127.0.0.1:5123")]
    (template,) = doc["resource"]["aws_launch_template"].values()
    assert template["image_id"] == MOTO_IMAGE
    suppressed = {f.rule: f.reason for f in findings if f.suppressed}
    assert set(suppressed) == {"LEP-S3-1", "LEP-RETAIN-1"} and all(suppressed.values()), findings
    assert all(not b.get("lifecycle", {}).get("prevent_destroy") for b in doc["resource"]["aws_s3_bucket"].values())


def test_a_bad_or_unavailable_profile_is_one_error_line_and_nothing_is_synthesized(project, tmp_path):
    cloud, folder = project
    env = {"PATH": os.environ["PATH"], "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDKTF_OUTDIR": str(tmp_path / "out"),
           "LEPTON_MANIFEST": str(write_test_manifest(tmp_path / "model")), "LEPTON_PROFILE": "local" if cloud == "gcp" else "staging"}
    proc = subprocess.run([sys.executable, "main.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: LEPTON_PROFILE=") and ("no local emulator" if cloud == "gcp" else "use cloud") in line
    assert not (tmp_path / "out" / "stacks").exists()
    with pytest.raises(ProfileError):
        load_main(folder).build_app(tmp_path / "out2", {k: v for k, v in env.items() if k.startswith("LEPTON_")})


def test_a_missing_manifest_names_the_setting_to_fix(project, tmp_path):
    _, folder = project
    proc = subprocess.run([sys.executable, "main.py"], cwd=folder, capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
                               "CDKTF_OUTDIR": str(tmp_path / "out")})
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line == f"error: no model manifest at {folder / 'model' / 'manifest.json'}: set LEPTON_MANIFEST to your model's manifest.json (see README.md)"


def test_the_projects_own_tests_pass(project):
    _, folder = project
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error::pytest.PytestCollectionWarning"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout
    assert not list(folder.glob("terraform.*.tfstate")) and not (folder / "cdktf.out").exists(), "the tests must not write into the project"


# -- refusals: nothing of the user's is touched, nothing half-written is left --------------------------------------


def test_a_folder_that_is_not_empty_is_refused_untouched(tmp_path):
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "main.py").write_text("# my own work\n")
    before = snapshot(folder)
    outcome = run_lepton("init", str(folder))
    assert outcome.code == 1
    assert outcome.error_line.startswith(f"error: {folder} is not empty (1 entries, e.g. 'main.py')") and "another folder" in outcome.error_line
    assert snapshot(folder) == before


def test_a_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    outcome = run_lepton("init", "--cloud", "gcp", str(path))
    assert outcome.code == 1 and outcome.error_line == f"error: {path} is a file: pass a new or empty folder for the project"
    assert path.read_text() == "x"


def test_an_unknown_cloud_is_a_usage_error(tmp_path):
    outcome = run_lepton("init", "--cloud", "azure", str(tmp_path / "p"))
    assert outcome.code == 2 and "azure" in outcome.stderr and not (tmp_path / "p").exists()


@pytest.mark.parametrize("existed", [False, True])
def test_a_write_that_fails_half_way_leaves_nothing_behind(tmp_path, monkeypatch, existed):
    import lepton_cdk.scaffold as scaffold

    real = scaffold.project_files

    def with_an_unwritable_file(cloud, **kwargs):
        files = real(cloud, **kwargs)
        return {**files, "zz/no-such-folder/file.txt": "x"}  # written last: every other file is on disk by then

    monkeypatch.setattr(scaffold, "project_files", with_an_unwritable_file)
    folder = tmp_path / "parent" / "project"
    if existed:
        folder.mkdir(parents=True)
    outcome = run_lepton("init", str(folder))
    assert outcome.code == 1 and "nothing was left behind" in outcome.error_line
    if existed:
        assert list(folder.iterdir()) == [], "the empty folder the user gave stays, empty"
    else:
        assert not (tmp_path / "parent").exists(), "folders init created are removed again"
