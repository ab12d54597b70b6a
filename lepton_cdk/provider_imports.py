"""Prebuilt provider packages imported the usual cdktf way, per submodule: the import hook ``import lepton_cdk`` installs.

``import cdktf_cdktf_provider_aws`` (or ``from cdktf_cdktf_provider_aws.s3_bucket
import S3Bucket``) normally runs a package ``__init__`` that imports every one
of its ~2,100 generated submodules, ~18-20 s before a single resource is
declared. :class:`ProviderImportHook` (standard library only) hands out the
package without running that ``__init__``: a submodule imports on first use,
``__all__`` and ``dir()`` list every submodule as the full package's do, and the
synthesized JSON is byte-identical. The package module is the one
:func:`lepton_cdk.core.framework.provider_package` returns, so a user's stack
and lepton-cdk's constructs share it. The hook also starts the jsii kernel,
whether ``import cdktf`` or a construct comes first, with the Node.js preload of
:mod:`lepton_cdk.core.node_preload`, so the JavaScript side loads per submodule
too.

Order matters, because no import hook can act before it is installed: a
provider package imported *before* ``lepton_cdk`` has already run its
``__init__``. It is used as it is (nothing breaks, it was only slow) and a
one-line warning says to move ``import lepton_cdk`` above it.
"""


from __future__ import annotations

import sys
import threading
import warnings

PROVIDER_PACKAGES = ("cdktf_cdktf_provider_aws", "cdktf_cdktf_provider_google")
"""The prebuilt provider packages :class:`ProviderImportHook` loads per submodule."""

# The first of these to run loads a jsii assembly, which starts the Node.js kernel (cdktf._jsii
# imports constructs._jsii first): the preload has to be in NODE_OPTIONS at that moment.
KERNEL_MODULES = ("constructs._jsii", "cdktf._jsii")


def _public_submodules(module) -> list[str]:
    # The package's own __all__, read from its __init__ without running it (~15 ms, only when asked).
    import ast

    try:
        with open(module.__spec__.origin, encoding="utf-8") as source:
            tree = ast.parse(source.read())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                return list(ast.literal_eval(node.value))
    except (OSError, SyntaxError, ValueError, TypeError):
        pass
    import pkgutil  # an __init__ of another shape: its public subpackages, which is what __all__ lists today

    return sorted(m.name for m in pkgutil.iter_modules(module.__path__) if not m.name.startswith("_"))


class _LazyProviderLoader:
    """Runs a provider package as an empty package whose submodules import on attribute access (PEP 562)."""

    lazy_provider = True

    def __init__(self, loader) -> None:
        self._loader = loader

    def __getattr__(self, name: str):  # get_resource_reader, get_filename, get_source, ...: the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module) -> None:
        package = module.__name__

        def __getattr__(name: str):
            if name == "__all__":
                module.__all__ = _public_submodules(module)
                return module.__all__
            if name.startswith("__"):
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            import importlib

            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise  # the submodule exists but something it imports is missing: that is the error to see
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

        def __dir__() -> list[str]:
            return sorted(set(module.__dict__) | set(module.__all__))

        module.__getattr__ = __getattr__
        module.__dir__ = __dir__
        # Deliberately not self._loader.exec_module(module): that is the 2,100-import __init__.


class _KernelStartLoader:
    """Runs the module that starts the jsii kernel with the lazy provider index preload in ``NODE_OPTIONS``."""

    def __init__(self, loader, script) -> None:
        self._loader = loader
        self._script = script

    def __getattr__(self, name: str):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        from lepton_cdk.core import node_preload

        with node_preload.preload_in_node_options(self._script):
            self._loader.exec_module(module)


class ProviderImportHook:
    """A ``sys.meta_path`` finder: prebuilt provider packages load per submodule, the jsii kernel starts preloaded.

    It answers only for :data:`PROVIDER_PACKAGES` and for the first of
    :data:`KERNEL_MODULES` to be imported; what it returns is the spec the
    finders behind it found, with a loader wrapped around theirs. Installed
    once, first on ``sys.meta_path``, by ``import lepton_cdk``.
    """

    def __init__(self) -> None:
        self._busy = threading.local()

    def find_spec(self, fullname: str, path=None, target=None):
        """The spec of a provider package (run lazily) or of the kernel-starting module (preloaded); else None."""
        if fullname in PROVIDER_PACKAGES:
            spec = self._next_spec(fullname, path, target)
            if spec is None or spec.loader is None or spec.submodule_search_locations is None:
                return None  # not installed: the usual import says so
            spec.loader = _LazyProviderLoader(spec.loader)
            return spec
        if fullname in KERNEL_MODULES and not any(m in sys.modules for m in KERNEL_MODULES):
            from lepton_cdk.core import node_preload

            script = node_preload.kernel_preload_script()
            spec = self._next_spec(fullname, path, target) if script is not None else None
            if spec is None or spec.loader is None:
                return None
            spec.loader = _KernelStartLoader(spec.loader, script)
            return spec
        return None

    def _next_spec(self, fullname: str, path, target):
        # Ask the finders behind this one; one that calls importlib.util.find_spec itself must not loop back here.
        busy = self._busy.__dict__.setdefault("names", set())
        if fullname in busy:
            return None
        busy.add(fullname)
        try:
            finders = list(sys.meta_path)
            for finder in finders[finders.index(self) + 1:] if self in finders else finders:
                find_spec = getattr(finder, "find_spec", None)
                spec = find_spec(fullname, path, target) if find_spec is not None else None
                if spec is not None:
                    return spec
            return None
        finally:
            busy.discard(fullname)

    def invalidate_caches(self) -> None:
        """Nothing is cached here (``importlib.invalidate_caches`` calls this on every finder)."""


def is_lazy_provider(module) -> bool:
    """True when ``module`` is a provider package that came through :class:`ProviderImportHook` (its ``__init__`` never ran)."""
    return bool(getattr(getattr(getattr(module, "__spec__", None), "loader", None), "lazy_provider", False))


def install_provider_import_hook() -> ProviderImportHook:
    """Put :class:`ProviderImportHook` first on ``sys.meta_path`` unless it is there, and return it.

    A provider package imported in full before this ran stays as it is; a
    one-line warning says to import lepton_cdk first next time.
    """
    for finder in sys.meta_path:
        if type(finder).__name__ == ProviderImportHook.__name__ and type(finder).__module__ == __name__:
            return finder  # lepton_cdk imported again (a test cleared sys.modules): one hook is enough
    hook = ProviderImportHook()
    sys.meta_path.insert(0, hook)
    for package in PROVIDER_PACKAGES:
        module = sys.modules.get(package)
        if module is not None and not is_lazy_provider(module):
            warnings.warn(f"{package} was imported before lepton_cdk, so it loaded every generated submodule (~15-20 s): "
                          "put `import lepton_cdk` above the provider imports to load only the ones in use", stacklevel=3)
    return hook

