"""The jsii kernel preload that makes @cdktf/provider-* load JavaScript submodules on first use.

Runs the real preload script in Node.js against a small fake provider
package: requiring the index must not load any submodule, a looked-up
submodule is the real module, every export stays visible. That the full
app synthesizes byte-identical output this way is
tests/integration/test_provider_loading.py; that the import hook hands the
script to the kernel, tests/unit/test_provider_import_hook.py; how much
faster it is, ``make bench``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from lepton_cdk.core import node_preload
from lepton_cdk.provider_imports import KERNEL_MODULES

INDEX = '''"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.broken = exports.good = void 0;
exports.good = require("./good");
exports.broken = require("./broken");
'''

PROBE = """
const loaded = () => Object.keys(require.cache).filter((f) => f.includes('provider-fake')).map((f) => require('path').basename(f)).sort();
const p = require('@cdktf/provider-fake');
const afterIndex = loaded();
const value = p.good.value;
console.log(JSON.stringify({afterIndex, value, keys: Object.keys(p), afterLookup: loaded(), same: p.good === require('@cdktf/provider-fake/lib/good')}));
"""


@pytest.fixture
def fake_provider(tmp_path):
    lib = tmp_path / "node_modules" / "@cdktf" / "provider-fake" / "lib"
    lib.mkdir(parents=True)
    (lib.parent / "package.json").write_text(json.dumps({"name": "@cdktf/provider-fake", "main": "lib/index.js"}))
    (lib / "index.js").write_text(INDEX)
    (lib / "good.js").write_text("exports.value = 42;\n")
    (lib / "broken.js").write_text("throw new Error('broken submodule was loaded');\n")
    return tmp_path


def _node(cwd, *args):
    node = os.environ.get("JSII_NODE") or shutil.which("node")
    assert node, "Node.js is required (jsii runs on it)"
    return subprocess.run([node, *args, "-e", PROBE], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_the_preload_defers_every_submodule_until_it_is_looked_up(fake_provider, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    script = node_preload.preload_script()
    assert script is not None and script.parent == tmp_path / "cache" / "lepton-cdk"
    assert oct(script.parent.stat().st_mode & 0o777) == "0o700"
    proc = _node(fake_provider, "--require", str(script))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["afterIndex"] == ["index.js"]  # neither submodule ran
    assert result["value"] == 42 and result["same"] is True
    assert sorted(result["keys"]) == ["broken", "good"]  # enumerable like the eager index's exports
    assert result["afterLookup"] == ["good.js", "index.js"]


def test_without_the_preload_the_index_loads_every_submodule(fake_provider):
    proc = _node(fake_provider)
    assert proc.returncode != 0 and "broken submodule was loaded" in proc.stderr


def test_node_options_carry_the_preload_only_while_the_kernel_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("NODE_OPTIONS", "--max-http-header-size=16384")
    for name in KERNEL_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    script = node_preload.kernel_preload_script()
    assert script == node_preload.preload_script() and script is not None
    with node_preload.preload_in_node_options(script):
        assert os.environ["NODE_OPTIONS"] == f'--max-http-header-size=16384 --require "{script}"'
    assert os.environ["NODE_OPTIONS"] == "--max-http-header-size=16384"
    monkeypatch.delenv("NODE_OPTIONS")
    with pytest.raises(RuntimeError), node_preload.preload_in_node_options(script):
        raise RuntimeError("the kernel failed to start")
    assert "NODE_OPTIONS" not in os.environ  # restored on failure too


def test_no_preload_when_the_kernel_already_runs_or_eager_loading_is_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "cdktf._jsii", object())
    assert node_preload.kernel_preload_script() is None
    monkeypatch.delitem(sys.modules, "cdktf._jsii")
    monkeypatch.delitem(sys.modules, "constructs._jsii", raising=False)
    assert node_preload.kernel_preload_script() is not None
    monkeypatch.setenv(node_preload.OPT_OUT_ENV, "1")
    assert node_preload.kernel_preload_script() is None


def test_a_cache_folder_others_can_write_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "lepton-cdk").mkdir(mode=0o777)
    os.chmod(tmp_path / "lepton-cdk", 0o777)
    assert node_preload.preload_script() is None
