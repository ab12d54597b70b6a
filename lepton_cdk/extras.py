"""Which extra installs each optional part of lepton-cdk, and the one-line error when it is missing.

``pip install lepton-cdk`` brings the constructs' framework (cdktf, constructs),
the contract, the policy checks, the review and the ``lepton`` command. The
rest installs in pieces, so importing two constructs does not cost a machine
learning stack:

==========  ==============================================================  ===========================================
extra       brings                                                          needed by
==========  ==============================================================  ===========================================
aws         the prebuilt AWS provider (cdktf-cdktf-provider-aws)            ``lepton_cdk.aws``, ``--target aws``
gcp         the prebuilt Google provider (cdktf-cdktf-provider-google)      ``lepton_cdk.gcp``, ``--target gcp``
pipeline    torch, onnx, onnxscript, onnxruntime, numpy, pandas, pyarrow,   ``model_pipeline``, ``lepton pipeline``,
            matplotlib, tensorboard                                         ``lepton demo``
data        boto3, google-cloud-storage, pyarrow                            S3 / Cloud Storage locations and
                                                                            ``--transcode`` in ``lepton data``
serve       onnxruntime, numpy, starlette, uvicorn, prometheus-client,      ``lepton_cdk.serve``, ``lepton serve``,
            httpx, h11, httptools, orjson, tokenizers, hpack, protobuf,     ``predict``, ``export triton``
            uvloop (not on Windows; optional at run time)
sagemaker   boto3                                                           submitting a SageMaker training job
all         aws, gcp, pipeline, data, serve
==========  ==============================================================  ===========================================

Each part calls :func:`require_extra` before importing anything heavy. It
asks :func:`importlib.util.find_spec` whether the modules are there, which
reads directory entries only and imports none of them, so a check costs
microseconds and a part that is installed loads exactly as before. The
error, :class:`MissingExtraError`, is an ``ImportError`` (code that probes
with ``try: import ... except ImportError`` keeps working) whose message is
one line naming the extra and the command that installs it; the ``lepton``
command prints it as ``error: ...``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable

DISTRIBUTION = "lepton-cdk"

EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "aws": ("cdktf_cdktf_provider_aws",),
    "gcp": ("cdktf_cdktf_provider_google",),
    "pipeline": ("torch", "onnx", "onnxscript", "onnxruntime", "numpy", "pandas", "pyarrow", "matplotlib", "tensorboard",
                 "transformers", "tokenizers", "safetensors"),
    "data": ("botocore", "google.cloud.storage", "pyarrow"),
    "serve": ("onnxruntime", "numpy", "starlette", "uvicorn", "prometheus_client", "httpx", "h11", "httptools", "orjson", "tokenizers", "hpack",
              "google.protobuf"),
    "sagemaker": ("boto3", "botocore"),
}
"""The modules whose presence stands for each extra (import names, not distribution names)."""


class MissingExtraError(ImportError):
    """A part of lepton-cdk was used without the extra that installs its dependencies.

    ``str(error)`` is one line: ``PART needs the 'EXTRA' extra: pip install
    'lepton-cdk[EXTRA]' (missing: MODULE, ...)``. ``extras`` and ``missing``
    hold the same facts for programs.
    """

    def __init__(self, part: str, extras: tuple[str, ...], missing: tuple[str, ...]) -> None:
        self.part = part
        self.extras = extras
        self.missing = missing
        if len(extras) == 1:
            needs = f"the {extras[0]!r} extra"
        else:
            needs = "the " + ", ".join(repr(e) for e in extras[:-1]) + f" and {extras[-1]!r} extras"
        message = f"{part} needs {needs}: pip install '{DISTRIBUTION}[{','.join(extras)}]' (missing: {', '.join(missing)})"
        super().__init__(message, name=missing[0] if missing else None)

    def __reduce__(self):  # pickles (multiprocessing, pytest-xdist) with its own arguments, not ImportError's
        return (type(self), (self.part, self.extras, self.missing))


def is_installed(module: str) -> bool:
    """True when ``module`` (an import name, dotted or not) can be imported; imports nothing but its parents.

    A name set to ``None`` in ``sys.modules`` counts as missing, as it does for
    ``import`` itself.
    """
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        # a dotted name imports its parent packages (``google.cloud``: namespace packages, cheap)
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The names in ``modules`` that cannot be imported, in the order given."""
    return [m for m in modules if not is_installed(m)]


def require_extra(part: str, *extras: str, modules: Iterable[str] | None = None) -> None:
    """Raise :class:`MissingExtraError` when ``part`` cannot run for lack of one of ``extras``.

    ``part`` is what the user asked for, as they would name it
    (``"lepton_cdk.aws"``, ``"lepton demo --target aws"``). By default every
    module of :data:`EXTRA_MODULES` for each extra is checked; ``modules``
    narrows that to the ones ``part`` really imports (the S3 store needs
    botocore from the ``data`` extra, not google-cloud-storage). Only the
    extras with a missing module are named in the message.
    """
    if not extras:
        raise ValueError("require_extra needs at least one extra")
    unknown = [e for e in extras if e not in EXTRA_MODULES]
    if unknown:
        raise ValueError(f"unknown extra(s) {unknown}; known: {sorted(EXTRA_MODULES)}")
    if modules is not None and len(extras) != 1:
        raise ValueError("modules= narrows the check of one extra; name exactly one")
    short_extras: list[str] = []
    missing: list[str] = []
    for extra in extras:
        checked = tuple(modules) if modules is not None else EXTRA_MODULES[extra]
        absent = [m for m in missing_modules(checked) if m not in missing]
        if absent:
            short_extras.append(extra)
            missing.extend(absent)
    if missing:
        raise MissingExtraError(part, tuple(short_extras), tuple(missing))
