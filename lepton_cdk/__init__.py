"""lepton-cdk: move an ML workload, its data and its model, from one cloud to another.

Constructs live in ``lepton_cdk.aws`` and ``lepton_cdk.gcp``; the manifest
contract in ``lepton_cdk.contract``. Importing this package does not import
cdktf or torch.
"""

__version__ = "0.1.0"
