"""The lepton-cdk cdktf app, shipped in the package: the only place providers and backends are created.

It reads the model manifest and the ``LEPTON_*`` settings (:mod:`.config`) and
builds one :class:`~lepton_cdk.patterns.MigrationTarget` stack per target
cloud (:mod:`.stacks`). ``python -m lepton_cdk.app`` runs it from anywhere;
in a checkout, ``cdktf.json`` runs the thin ``infra/`` entry, which calls the
same :func:`~lepton_cdk.app.main.main`. ``lepton demo`` runs it too, so the
demo works from an installed wheel outside any checkout.
"""
