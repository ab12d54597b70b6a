"""lepton-cdk: move an ML workload, its data and its model, from one cloud to another.

Constructs live in ``lepton_cdk.aws`` and ``lepton_cdk.gcp``; the manifest
contract in ``lepton_cdk.contract``. Importing this package does not import
cdktf or torch.

It does make the prebuilt provider packages fast to import the usual cdktf
way: it installs :class:`~lepton_cdk.provider_imports.ProviderImportHook`, so
``from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket`` after ``import
lepton_cdk`` loads that one submodule, not all ~2,100 (~1 s instead of ~18 s).
Import ``lepton_cdk`` before any provider package (see
:mod:`lepton_cdk.provider_imports`).
"""

from __future__ import annotations

from .provider_imports import PROVIDER_PACKAGES, ProviderImportHook, install_provider_import_hook, is_lazy_provider

__version__ = "0.1.0"
__all__ = ["PROVIDER_PACKAGES", "ProviderImportHook", "__version__", "install_provider_import_hook", "is_lazy_provider"]

install_provider_import_hook()
