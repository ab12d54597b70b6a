"""The one module that imports CDK for Terraform, constructs and the provider bindings.

Everything else in lepton-cdk takes the framework's names from here, so a move
to CDK Terrain (the community fork) or to writing Terraform JSON directly
touches this file and the constructs' resource calls, not every import line.

Provider bindings load lazily. The prebuilt provider packages
(``cdktf_cdktf_provider_aws``, ``cdktf_cdktf_provider_google``) import every
one of their ~2,100 generated submodules from their ``__init__``, which costs
~18-20 s (AWS) and ~16 s (Google) before a single resource is declared. The
submodules themselves only need the package's ``_jsii`` module (which loads
the jsii assembly into the Node.js kernel), never the package ``__init__``.
``import lepton_cdk`` installs an import hook (:class:`lepton_cdk.ProviderImportHook`)
that imports these packages without running their ``__init__``;
:func:`provider_package` imports through it, and :data:`aws` / :data:`google`
import a submodule the first time it is asked for (``aws.s3_bucket``). A
user's own ``from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket`` gets
the same package module. The synthesized JSON is byte-identical to the one
produced after a full import; only the time differs.

If the package was already imported in full (a user's stack imported it
before ``lepton_cdk``), that module is used as it is.

The same hook starts the jsii kernel, on the ``import cdktf`` below unless
something imported cdktf earlier, with :mod:`lepton_cdk.core.node_preload`'s
preload, so that it requires a provider's JavaScript submodules on first use
too, instead of all of them when the assembly loads.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from typing import Any

import lepton_cdk

# Normally done by `import lepton_cdk` already; this module relies on it (the kernel starts on `import cdktf`).
lepton_cdk.install_provider_import_hook()

import cdktf  # noqa: E402
import constructs  # noqa: E402
import jsii  # noqa: E402
from cdktf import (  # noqa: E402
    Annotations,
    App,
    Aspects,
    AssetType,
    Fn,
    IAspect,
    LocalBackend,
    TerraformAsset,
    TerraformElement,
    TerraformLocal,
    TerraformOutput,
    TerraformResource,
    TerraformResourceLifecycle,
    TerraformStack,
    TerraformVariable,
    Testing,
    Token,
)
from constructs import Construct, IConstruct  # noqa: E402

__all__ = [
    "Annotations", "App", "AssetType", "Aspects", "Construct", "Fn", "IAspect", "IConstruct", "LocalBackend", "TerraformAsset",
    "TerraformElement", "TerraformLocal", "TerraformOutput", "TerraformResource", "TerraformResourceLifecycle", "TerraformStack", "TerraformVariable", "Testing", "Token",
    "aws", "cdktf", "constructs", "google", "implements", "is_unresolved", "literal_with_references", "provider_package",
]

implements = jsii.implements
"""Class decorator declaring that a Python class implements a jsii interface (``@implements(IAspect)``)."""

_PROVIDER_EXTRAS = {"cdktf_cdktf_provider_aws": "aws", "cdktf_cdktf_provider_google": "gcp"}


class ProviderBindings:
    """A provider package whose submodules import on first attribute access.

    ``aws.s3_bucket.S3Bucket`` imports ``cdktf_cdktf_provider_aws.s3_bucket``
    (and nothing else) the first time it is evaluated.
    """

    def __init__(self, package: str) -> None:
        self._package = package

    @property
    def package_name(self) -> str:
        """The Python package these bindings come from."""
        return self._package

    def __getattr__(self, name: str) -> types.ModuleType:
        if name.startswith("_"):
            raise AttributeError(name)
        provider_package(self._package)
        try:
            module = importlib.import_module(f"{self._package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{self._package}.{name}":
                raise
            raise AttributeError(f"{self._package} has no submodule {name!r}") from None
        setattr(self, name, module)  # later lookups skip __getattr__
        return module

    def loaded_submodules(self) -> list[str]:
        """Names of the submodules imported so far (for measurements and tests)."""
        prefix = f"{self._package}."
        return sorted(n[len(prefix):] for n in sys.modules if n.startswith(prefix) and n.count(".") == 1 and n != f"{prefix}_jsii")

    def __repr__(self) -> str:
        return f"ProviderBindings({self._package!r}, loaded={self.loaded_submodules()})"


def provider_package(package: str) -> types.ModuleType:
    """``sys.modules[package]``: a prebuilt provider package, imported without running its ``__init__``.

    The module comes from :class:`lepton_cdk.ProviderImportHook`: it has the
    package's ``__path__`` (so its submodules import normally), ``__all__``
    and a module-level ``__getattr__`` that imports a submodule on attribute
    access, so ``import cdktf_cdktf_provider_aws as aws; aws.kms_key`` keeps
    working for code that expects the full package. A package imported in
    full before ``lepton_cdk`` is returned as it is.
    """
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as exc:
        if exc.name != package or package not in _PROVIDER_EXTRAS:
            raise
        from lepton_cdk.extras import MissingExtraError

        raise MissingExtraError(f"provider package {package}", (_PROVIDER_EXTRAS[package],), (package,)) from None


# How cdktf encodes a string token inside a Python string (cdktf 0.21 / CDK Terrain alike).
_STRING_TOKEN = re.compile(r"\$\{TfToken\[[A-Za-z0-9_.]+\]\}")


def _raw(literal: str) -> str:
    # Fn.raw_string escapes quotes, newlines and "${" but leaves backslashes and "%{" alone, and
    # both mean something inside an HCL string literal: escape them here so the bytes survive.
    return Fn.raw_string(literal.replace("\\", "\\\\").replace("%{", "%%{"))


def literal_with_references(text: str) -> str:
    """``text`` as a Terraform string expression where only its tokens are references.

    Terraform functions (``base64encode``) refuse literal arguments holding
    double quotes or ``${``; a shell script has plenty. The literal pieces are
    escaped with ``Fn.raw_string`` and joined with the tokens between them, so
    ``Fn.base64encode(literal_with_references(script))`` encodes exactly the
    script with each reference filled in at apply time.
    """
    parts: list[str] = []
    last = 0
    for match in _STRING_TOKEN.finditer(text):
        if match.start() > last:
            parts.append(_raw(text[last:match.start()]))
        parts.append(match.group(0))
        last = match.end()
    if last < len(text):
        parts.append(_raw(text[last:]))
    if len(parts) == 1:
        return parts[0]
    return Fn.join("", parts)


def is_unresolved(value: Any) -> bool:
    """True when ``value`` is (or contains) a token resolved only at synth/apply time."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return bool(Token.is_unresolved(value))
    return False


aws = ProviderBindings("cdktf_cdktf_provider_aws")
"""AWS provider 5.100.0 bindings (``cdktf-cdktf-provider-aws==20.1.0``), loaded per submodule."""

google = ProviderBindings("cdktf_cdktf_provider_google")
"""Google provider bindings (``cdktf-cdktf-provider-google==16.12.1``), loaded per submodule."""
