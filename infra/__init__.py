"""The lepton-cdk cdktf app: the only place providers and backends are created.

Run it with ``cdktf synth`` (``cdktf.json`` points at ``python -m infra``) or
``python -m infra`` directly; see :mod:`infra.config` for its settings.
"""
