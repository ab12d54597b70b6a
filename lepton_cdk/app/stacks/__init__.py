"""One stack per target cloud, each built from :class:`lepton_cdk.app.config.InfraConfig`."""

RETAIN_DATA_OFF_REASON = ("LEPTON_RETAIN_DATA=false: a dev/test stack that `cdktf destroy` must delete, data and key "
                          "included; the default (true) keeps prevent_destroy")
"""Why a stack built with ``LEPTON_RETAIN_DATA=false`` suppresses policy rule LEP-RETAIN-1 (prevent_destroy)."""
