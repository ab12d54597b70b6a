"""``import lepton_cdk`` makes the usual cdktf imports of a prebuilt provider package load per submodule.

Each test runs a fresh interpreter, because what is being checked is the
import system's state, which pytest's own process has long since set. Most use
a small fake package installed under the provider's import name (first on
``sys.path``) whose ``__init__`` fails if it runs, and a fake jsii kernel
module that records ``NODE_OPTIONS``; the last ones use the real AWS
provider package without synthesizing anything. That the JSON of a user's
stack stays byte-identical is tests/integration/test_provider_loading.py.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.terraform import REPO_ROOT, tool_env

PACKAGE = "cdktf_cdktf_provider_aws"
FAKE_INIT = '''"""The fake provider's docstring."""
raise RuntimeError("the package __init__ ran")
__all__ = ["good", "needs_missing", "zeta"]
'''


@pytest.fixture
def fake_site(tmp_path: Path) -> Path:
    """A folder to put first on sys.path: a fake provider package and fake jsii kernel modules."""
    site = tmp_path / "site"
    package = site / PACKAGE
    for sub, code in {"good": "VALUE = 42\n", "needs_missing": "import no_such_module_anywhere\n", "zeta": "VALUE = 'z'\n"}.items():
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text(code)
    (package / "__init__.py").write_text(FAKE_INIT)
    (package / "_jsii").mkdir()
    (package / "_jsii" / "__init__.py").write_text("")
    # What the real kernel modules do that matters here: read the environment the Node.js kernel starts with.
    for name, code in {"constructs": "import os\nSEEN = os.environ.get('NODE_OPTIONS')\n",
                       "cdktf": "import os\nSEEN = os.environ.get('NODE_OPTIONS')\nimport constructs._jsii\n"}.items():
        (site / name / "_jsii").mkdir(parents=True)
        (site / name / "__init__.py").write_text("")
        (site / name / "_jsii" / "__init__.py").write_text(code)
    return site


def _python(code: str, *, site: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path.insert(0, {str(site)!r})\n" if site else ""
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=REPO_ROOT, env=tool_env(env),
                          capture_output=True, text=True, timeout=120, check=False)


def _json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_after_import_lepton_cdk_the_usual_imports_never_run_the_package_init(fake_site):
    result = _json(_python(f"""
        import json, sys
        import lepton_cdk
        import {PACKAGE} as aws
        from {PACKAGE} import good
        from {PACKAGE}.zeta import VALUE as zeta
        print(json.dumps({{
            "attribute": aws.good.VALUE, "from_import": good.VALUE, "submodule_import": zeta, "same": good is aws.good,
            "lazy": lepton_cdk.is_lazy_provider(aws), "file": aws.__file__,
            "loaded": sorted(m for m in sys.modules if m.startswith("{PACKAGE}.")),
        }}))
    """, site=fake_site))
    assert result["attribute"] == 42 and result["from_import"] == 42 and result["submodule_import"] == "z" and result["same"]
    assert result["lazy"] is True
    assert result["file"] == str(fake_site / PACKAGE / "__init__.py")
    assert result["loaded"] == [f"{PACKAGE}.good", f"{PACKAGE}.zeta"]  # nothing that was not asked for


def test_all_dir_and_star_import_list_every_submodule_the_package_exports(fake_site):
    result = _json(_python(f"""
        import json, sys
        import lepton_cdk
        import {PACKAGE} as aws
        listed = {{"all": aws.__all__, "dir": [n for n in dir(aws) if not n.startswith("_")]}}
        before = sorted(m for m in sys.modules if m.startswith("{PACKAGE}."))
        try:
            exec("from {PACKAGE} import *", {{}})
        except ModuleNotFoundError as exc:
            listed["star_error"] = exc.name  # needs_missing is in __all__ and cannot import: as with the full package
        print(json.dumps({{**listed, "before_star": before}}))
    """, site=fake_site))
    assert result["all"] == ["good", "needs_missing", "zeta"]  # the package's own list, read without running it
    assert result["dir"] == ["good", "needs_missing", "zeta"]
    assert result["before_star"] == []  # listing imports nothing
    assert result["star_error"] == "no_such_module_anywhere"


def test_a_missing_name_is_an_attribute_error_and_a_broken_submodule_shows_its_own_error(fake_site):
    result = _json(_python(f"""
        import json
        import lepton_cdk
        import {PACKAGE} as aws
        out = {{"has_nope": hasattr(aws, "nope")}}
        try:
            aws.needs_missing
        except ModuleNotFoundError as exc:
            out["broken"] = exc.name
        try:
            from {PACKAGE} import nope
        except ImportError as exc:
            out["from_nope"] = type(exc).__name__
        print(json.dumps(out))
    """, site=fake_site))
    assert result == {"has_nope": False, "broken": "no_such_module_anywhere", "from_nope": "ImportError"}


def test_without_lepton_cdk_the_package_is_untouched(fake_site):
    proc = _python(f"import {PACKAGE}", site=fake_site)
    assert proc.returncode != 0 and "the package __init__ ran" in proc.stderr


def test_a_package_imported_before_lepton_cdk_stays_full_with_a_one_line_warning(fake_site):
    (fake_site / PACKAGE / "__init__.py").write_text("__all__ = ['good']\nfrom . import good\n")
    proc = _python(f"""
        import json, sys, warnings
        warnings.simplefilter("always")
        import {PACKAGE} as full
        with warnings.catch_warnings(record=True) as caught:
            import lepton_cdk
        from lepton_cdk import is_lazy_provider
        print(json.dumps({{"same": sys.modules["{PACKAGE}"] is full, "lazy": is_lazy_provider(full),
                          "warnings": [str(w.message) for w in caught]}}))
    """, site=fake_site)
    result = _json(proc)
    assert result["same"] is True and result["lazy"] is False
    [message] = result["warnings"]
    assert "\n" not in message and f"{PACKAGE} was imported before lepton_cdk" in message and "import lepton_cdk" in message


def test_the_kernel_starts_with_the_preload_whichever_import_comes_first(fake_site, tmp_path):
    code = """
        import json, os
        import lepton_cdk
        import cdktf._jsii, constructs._jsii
        from lepton_cdk.core import node_preload
        print(json.dumps({"cdktf": cdktf._jsii.SEEN, "constructs": constructs._jsii.SEEN, "after": os.environ.get("NODE_OPTIONS"),
                          "script": str(node_preload.kernel_preload())}))
    """
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "NODE_OPTIONS": "--max-http-header-size=16384"}
    result = _json(_python(code, site=fake_site, env=env))
    script = tmp_path / "cache" / "lepton-cdk" / Path(result["script"]).name
    assert Path(result["script"]) == script and script.is_file()
    expected = f'--max-http-header-size=16384 --require "{script}"'
    assert result["cdktf"] == expected and result["constructs"] == expected  # constructs._jsii runs inside cdktf._jsii
    assert result["after"] == "--max-http-header-size=16384"  # no other Node.js process sees it

    eager = _json(_python(code, site=fake_site, env={**env, "LEPTON_EAGER_PROVIDER_INDEX": "1"}))
    assert eager["cdktf"] == "--max-http-header-size=16384" and eager["script"] == "None"


def test_the_kernel_started_before_lepton_cdk_is_left_alone(fake_site, tmp_path):
    result = _json(_python("""
        import json
        import constructs._jsii
        import lepton_cdk
        import cdktf._jsii
        print(json.dumps({"cdktf": cdktf._jsii.SEEN}))
    """, site=fake_site, env={"XDG_CACHE_HOME": str(tmp_path / "cache")}))
    assert result["cdktf"] is None


def test_importing_lepton_cdk_twice_installs_one_hook():
    result = _json(_python("""
        import json, sys
        import lepton_cdk
        del sys.modules["lepton_cdk"]
        import lepton_cdk
        print(json.dumps([type(f).__name__ for f in sys.meta_path].count("ProviderImportHook")))
    """))
    assert result == 1


def test_the_real_provider_package_is_lazy_and_shared_with_the_framework():
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        pytest.skip("the 'aws' extra is not installed")
    subpackages = sorted(p.name for p in Path(spec.origin).parent.iterdir() if (p / "__init__.py").is_file() and not p.name.startswith("_"))
    result = _json(_python(f"""
        import json, sys
        import lepton_cdk
        from cdktf import App
        from {PACKAGE}.s3_bucket import S3Bucket
        import {PACKAGE} as aws
        from lepton_cdk.core import framework, node_preload
        print(json.dumps({{
            "shared": framework.provider_package("{PACKAGE}") is aws and framework.aws.s3_bucket.S3Bucket is S3Bucket,
            "provider": aws.provider.AwsProvider.__module__, "all": sorted(aws.__all__),
            "loaded": len([m for m in sys.modules if m.startswith("{PACKAGE}.")]), "preloaded": node_preload.kernel_preload() is not None,
        }}))
    """))
    assert result["shared"] is True
    assert result["provider"] == f"{PACKAGE}.provider"
    assert result["all"] == subpackages and len(subpackages) > 2000  # every generated submodule, as the full package lists
    assert result["loaded"] < 10  # s3_bucket, provider and _jsii (plus what publication adds), not ~2,100
    assert result["preloaded"] is True  # `from cdktf import App` started the kernel, with the preload
