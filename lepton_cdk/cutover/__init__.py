"""Cutover: move live traffic from the old endpoint to the new one without an outage, with a way back.

Modules:

- ``plan``: the cutover plan file (YAML, TOML or JSON): the two endpoints,
  how traffic is split (the embedded ``splitter`` or a DNS stack setting),
  the steps (0 -> 1 -> 10 -> 50 -> 100 percent), the gates each step must pass
  and the final incremental data sync before the last step.
- ``metrics``: Prometheus text read from the endpoints, compared over a window.
- ``gates``: the gates (``healthy``, ``disagreement_rate``, ``error_rate``,
  ``p95_latency_ms``) and their evaluation.
- ``steps``: check, advance, run and roll back a plan; the run's report.
- ``shadow``: ``lepton cutover shadow``, the proxy that answers from the
  primary and mirrors each inference request to the shadow, comparing answers.
- ``splitter``: ``lepton cutover split``, the embedded weighted traffic splitter
  for endpoints without a DNS split (a laptop, an on-premises host, tests).
- ``state``: where the weight in force lives (the splitter's state file, or
  ``LEPTON_CUTOVER_WEIGHT`` in the DNS stack's settings file).
- ``datasync``: the final incremental data sync before the last step.
- ``proxy``: the forwarding and the listener the shadow and the splitter share.

The DNS split itself is a construct: ``lepton_cdk.aws.TrafficSplit`` (Route 53
weighted records) and ``lepton_cdk.gcp.TrafficSplit`` (Cloud DNS weighted round
robin), with ``LEPTON_CUTOVER_*`` settings in the infra app.

Importing this package imports nothing heavy; the proxies need the
``serve`` extra (starlette, uvicorn, httpx, prometheus-client, numpy).
"""
