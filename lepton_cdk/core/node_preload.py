"""Start the jsii kernel so that prebuilt provider packages load their JavaScript submodules on demand.

The Python side of a prebuilt provider package is already loaded per
submodule (see ``lepton_cdk.ProviderImportHook``). The JavaScript side is
not: when ``cdktf_cdktf_provider_aws._jsii`` loads the assembly, the jsii
kernel (Node.js) ``require()`` s the package's ``lib/index.js``, which
``require()`` s all ~1,500 (AWS) / ~1,400 (Google) generated submodules:
2.3-2.7 s per provider of a ~3 s synth (``JSII_DEBUG_TIMING=1`` shows it).

:func:`preload_in_node_options` hands Node.js a ``--require`` preload
script (:data:`PRELOAD_JS`) while the jsii kernel starts. In the kernel it
rewrites, in memory, each ``@cdktf/provider-*/lib/index.js`` line
``exports.s3Bucket = require("./s3-bucket");`` into a getter that requires
the submodule the first time the kernel looks it up. Files on disk are not
touched; a submodule, once required, is the very module object the eager
index would have produced, so the synthesized JSON is byte-identical
(tests/integration/test_provider_loading.py checks it). An index in any
other shape is compiled unchanged.

The import hook ``lepton_cdk.ProviderImportHook`` (installed by ``import
lepton_cdk``) wraps the import that starts the kernel, the first of
``lepton_cdk.KERNEL_MODULES``, in :func:`preload_in_node_options`, so the
preload is there whether a user's ``import cdktf`` or a lepton-cdk construct
comes first.

The script is written to ``$XDG_CACHE_HOME/lepton-cdk`` (default
``~/.cache/lepton-cdk``, a private folder) because the wheel carries no
``.js`` files. ``NODE_OPTIONS`` is set only while the kernel starts and then
restored, so no other Node.js process sees it. Nothing is changed when the
kernel is already running (cdktf was imported before lepton_cdk), when the
cache folder cannot be written, or when ``LEPTON_EAGER_PROVIDER_INDEX=1``.
Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lepton_cdk.provider_imports import KERNEL_MODULES

PRELOAD_JS = r"""'use strict';
// lepton-cdk: load @cdktf/provider-* submodules on first use instead of all at once (see node_preload.py).
const Module = require('module');
const fs = require('fs');
const INDEX = /[\\/]node_modules[\\/]@cdktf[\\/]provider-[a-z0-9-]+[\\/]lib[\\/]index\.js$/;
const LINE = /^exports\.([A-Za-z_$][\w$]*) = require\("(\.\/[\w.-]+)"\);?$/;
const compileJs = Module._extensions['.js'];
Module._extensions['.js'] = function lazyProviderIndex(module, filename) {
  if (!INDEX.test(filename)) return compileJs(module, filename);
  let count = 0;
  const source = fs.readFileSync(filename, 'utf8').split('\n').map((line) => {
    const m = LINE.exec(line);
    if (!m) return line;
    count += 1;
    const name = JSON.stringify(m[1]);
    return `Object.defineProperty(exports, ${name}, { enumerable: true, configurable: true, get() { ` +
      `const value = require(${JSON.stringify(m[2])}); ` +
      `Object.defineProperty(exports, ${name}, { value, enumerable: true, configurable: true, writable: true }); ` +
      `return value; } });`;
  }).join('\n');
  if (count === 0) return compileJs(module, filename);
  module._compile(source, filename);
};
"""

OPT_OUT_ENV = "LEPTON_EAGER_PROVIDER_INDEX"

_handed_to_kernel: Path | None = None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lepton-cdk"


def preload_script() -> Path | None:
    """The preload script's path, written (atomically, in a private folder) if missing; None when that fails."""
    digest = hashlib.sha256(PRELOAD_JS.encode()).hexdigest()[:16]
    try:
        folder = _cache_dir()
    except (KeyError, RuntimeError):  # no HOME and no passwd entry: stay eager
        return None
    path = folder / f"lazy-provider-index-{digest}.js"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o022:
            return None  # someone else could swap the script Node.js will run: stay eager
        if path.is_file() and path.read_text(encoding="utf-8") == PRELOAD_JS:
            return path
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".lazy-", suffix=".js")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(PRELOAD_JS)
        os.replace(tmp, path)
        return path
    except OSError:
        return None


def kernel_preload_script() -> Path | None:
    """The preload script for a jsii kernel about to start; None when it runs already, eager loading is asked or no safe cache."""
    if os.environ.get(OPT_OUT_ENV) or any(m in sys.modules for m in KERNEL_MODULES):
        return None
    return preload_script()


def kernel_preload() -> Path | None:
    """The preload script handed to this process's jsii kernel as it started, or None (eager index, or started before lepton_cdk)."""
    return _handed_to_kernel


@contextlib.contextmanager
def preload_in_node_options(script: Path) -> Iterator[None]:
    """Around the import that starts the jsii kernel: ``NODE_OPTIONS`` requires ``script``, then is restored."""
    global _handed_to_kernel
    previous = os.environ.get("NODE_OPTIONS")
    os.environ["NODE_OPTIONS"] = f'{previous or ""} --require "{script}"'.strip()
    try:
        yield
        _handed_to_kernel = script
    finally:
        if previous is None:
            os.environ.pop("NODE_OPTIONS", None)
        else:
            os.environ["NODE_OPTIONS"] = previous
