"""Traffic steps: a change that only moves the weights of a traffic split between two endpoints.

A cutover moves callers from the old endpoint to the new one step by step
(0 -> 10 -> 50 -> 100 percent) by changing one stack setting, the weight. The
review recognises such a change by resource type and attribute, so it names
it ("traffic step: `new` 10% -> 50%") instead of a generic update:

* ``aws_route53_record`` with ``weighted_routing_policy.weight``: one record
  per endpoint, told apart by ``set_identifier``; a record's share is its
  weight over the sum of the weights of every record with the same zone,
  name and type;
* ``google_dns_record_set`` with ``routing_policy.wrr``: one record set
  holding an item per endpoint (``weight`` and ``rrdatas`` or
  ``health_checked_targets``); an item's share is its weight over the sum.

A resource is a traffic step when the weights are the only attributes that
change. Everything here is pure: it reads attribute dicts (synthesized JSON
or a plan's before/after values).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

TRAFFIC_TYPES = ("aws_route53_record", "google_dns_record_set")
# Attribute paths (list indices removed) that carry a weight and nothing else.
_WEIGHT_PATH = {
    "aws_route53_record": re.compile(r"^weighted_routing_policy\.weight$"),
    "google_dns_record_set": re.compile(r"^routing_policy\.wrr\.weight$"),
}


@dataclass(frozen=True)
class Share:
    """One endpoint's share of the traffic before and after (None: not part of the split then)."""

    endpoint: str
    before: float | None
    after: float | None


@dataclass(frozen=True)
class TrafficStep:
    """A weight-only change of one traffic split."""

    split: str  # the DNS name (and type) the weights split
    shares: tuple[Share, ...]

    def describe(self) -> str:
        """``traffic step: `new` 10% -> 50%, `old` 90% -> 50%`` (moving endpoints first, the growing one first)."""
        moving = [s for s in self.shares if s.before != s.after]
        moving.sort(key=lambda s: -((s.after or 0) - (s.before or 0)))
        parts = [f"`{s.endpoint}` {_pct(s.before)} -> {_pct(s.after)}" for s in moving] or ["weights unchanged"]
        return "traffic step: " + ", ".join(parts)


def _pct(value: float | None) -> str:
    return "0%" if value is None else f"{value * 100:.4g}%"


def weight_paths_only(rtype: str, paths: list[str]) -> bool:
    """True when every changed attribute path (``a.b[0].c``) is a traffic weight of ``rtype``."""
    pattern = _WEIGHT_PATH.get(rtype)
    return bool(paths) and pattern is not None and all(pattern.match(re.sub(r"\[\d+\]", "", p)) for p in paths)


def _first(value: Any) -> dict:
    if isinstance(value, list):
        value = value[0] if value else {}
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _route53_key(body: dict) -> str:
    return f"{body.get('name')} {body.get('type', '')}".strip()


def route53_split(records: dict[str, dict], address: str) -> dict[str, float] | None:
    """{endpoint: weight} of the weighted records sharing ``address``'s zone, name and type; None if not literal."""
    mine = records.get(address)
    if mine is None:
        return None
    group = (mine.get("zone_id"), mine.get("name"), mine.get("type"))
    weights = {}
    for addr, body in records.items():
        policy = _first(body.get("weighted_routing_policy"))
        if (body.get("zone_id"), body.get("name"), body.get("type")) != group or not policy:
            continue
        weight = _number(policy.get("weight"))
        if weight is None:
            return None
        weights[str(body.get("set_identifier") or addr)] = weight
    return weights


def gcp_split(body: dict | None) -> dict[str, float] | None:
    """{endpoint: weight} of a record set's weighted round robin items; None if not literal."""
    if not body:
        return {}
    items = _first(body.get("routing_policy")).get("wrr")
    items = [items] if isinstance(items, dict) else (items or [])
    weights = {}
    for i, item in enumerate(i for i in items if isinstance(i, dict)):
        weight = _number(item.get("weight"))
        if weight is None:
            return None
        rrdatas = item.get("rrdatas")
        targets = item.get("health_checked_targets")
        if isinstance(rrdatas, list) and rrdatas:
            label = ", ".join(str(r) for r in rrdatas)
        elif targets:
            label = f"target {i}: " + json.dumps(targets, sort_keys=True)[:40]
        else:
            label = f"item {i}"
        weights[label] = weight
    return weights


def _shares(weights: dict[str, float] | None) -> dict[str, float] | None:
    if weights is None:
        return None
    total = sum(weights.values())
    return {k: (w / total if total > 0 else 0.0) for k, w in weights.items()}


def traffic_step(rtype: str, address: str, before_records: dict[str, dict], after_records: dict[str, dict]) -> TrafficStep | None:
    """The step ``address`` makes, given every record of its type before and after (address -> attributes);
    None when the weights are not literal numbers."""
    if rtype == "aws_route53_record":
        before = _shares(route53_split(before_records, address))
        after = _shares(route53_split(after_records, address))
        split = _route53_key(after_records.get(address) or before_records.get(address) or {})
    elif rtype == "google_dns_record_set":
        before = _shares(gcp_split(before_records.get(address)))
        after = _shares(gcp_split(after_records.get(address)))
        body = after_records.get(address) or before_records.get(address) or {}
        split = f"{body.get('name')} {body.get('type', '')}".strip()
    else:
        return None
    if before is None or after is None:
        return None
    endpoints = sorted(set(before) | set(after))
    return TrafficStep(split, tuple(Share(e, before.get(e), after.get(e)) for e in endpoints))
