"""The cutover plan: endpoints, how traffic is split, steps, gates and the final data sync. Standard library and PyYAML.

A plan file is YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON
(``.json``)::

    old: {url: http://old.internal:8000, name: aws}
    new: {url: http://new.internal:8000, name: gcp}
    traffic:
      via: splitter              # the embedded splitter (`lepton cutover split`) ...
      listen: 127.0.0.1:9000
      state: cutover-state.json  # the weight it follows (relative to this file)
      # via: dns                 # ... or a DNS stack setting (TrafficSplit)
      # stack: aws               # the stack declaring the weighted records
      # settings: cutover.env    # holds LEPTON_CUTOVER_WEIGHT=<percent>
    shadow: {url: http://127.0.0.1:9001}   # a running `lepton cutover shadow` (or report: FILE)
    window_s: 60
    gates:                       # every step's gates; a step may override or add
      healthy: true
      disagreement_rate: {max: 0.0, min_compared: 100}
      error_rate: {max: 0.01, min_requests: 50}
      p95_latency_ms: {max: 250, min_requests: 50}
    steps: [0, 1, 10, 50, 100]   # or {percent: 10, gates: {...}} / {weights: {old: 90, new: 10}}
    data_sync: {src: s3://old-data/, dst: gs://new-data/}   # incremental, before the last step

A step's gates must pass, measured while traffic is still at the step
before, for the cutover to enter it (``lepton cutover check --to PERCENT``).
Every problem is one :class:`~lepton_cdk.cutover.errors.PlanError` line
naming the file, the place in it and the fix.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lepton_cdk.contract.serving import TRITON_READY_PATH
from lepton_cdk.core.routing import WEIGHT_TOTAL

from .errors import PlanError

TRAFFIC_VIA = ("splitter", "dns")
DNS_STACKS = ("aws", "gcp")
WEIGHT_SETTING = "LEPTON_CUTOVER_WEIGHT"
DEFAULT_WINDOW_S = 60.0
DEFAULT_UPSTREAM_TIMEOUT_S = 10.0
DEFAULT_GATE_TIMEOUT_S = 5.0

# Each gate: its options, which are required, and what it reads. The names are the plan file's vocabulary.
GATE_OPTIONS: dict[str, dict[str, str]] = {
    "healthy": {"timeout_s": "seconds the readiness probe may take"},
    "disagreement_rate": {"max": "largest share of shadow comparisons that may disagree (0-1)",
                          "min_compared": "comparisons needed before the rate counts"},
    "error_rate": {"max": "largest share of the new endpoint's inference requests answered 5xx in the window (0-1)",
                   "min_requests": "inference requests the new endpoint must have answered in the window"},
    "p95_latency_ms": {"max": "largest 95th-percentile inference latency of the new endpoint in the window, ms",
                       "min_requests": "inference requests the new endpoint must have answered in the window"},
}
GATES = tuple(GATE_OPTIONS)
_REQUIRED = {"disagreement_rate": ("max",), "error_rate": ("max",), "p95_latency_ms": ("max",)}
_DEFAULTS: dict[str, dict[str, float]] = {
    "healthy": {"timeout_s": DEFAULT_GATE_TIMEOUT_S},
    "disagreement_rate": {"min_compared": 1},
    "error_rate": {"min_requests": 1},
    "p95_latency_ms": {"min_requests": 1},
}
_RATE_GATES = ("disagreement_rate", "error_rate")


@dataclass(frozen=True)
class Endpoint:
    """One side of the cutover: an Open Inference Protocol endpoint."""

    name: str
    url: str
    ready_path: str = TRITON_READY_PATH
    metrics_url: str = ""  # Prometheus text; default <url>/metrics

    @property
    def ready_url(self) -> str:
        """Where the ``healthy`` gate (and ``plan``'s probe) asks whether the endpoint is ready."""
        return self.url + self.ready_path


@dataclass(frozen=True)
class Traffic:
    """How traffic is split between the endpoints: the embedded splitter, or a DNS stack setting."""

    via: str
    listen: str | None = None  # splitter: HOST:PORT it listens on
    state: Path | None = None  # splitter: the weight file it follows
    old_upstream: str | None = None  # splitter: where the old share goes first (a shadow proxy), falling back to old.url
    upstream_timeout_s: float = DEFAULT_UPSTREAM_TIMEOUT_S
    stack: str | None = None  # dns: aws or gcp
    settings: Path | None = None  # dns: the file holding LEPTON_CUTOVER_WEIGHT
    stack_name: str | None = None  # dns: the cdktf stack to deploy (default lepton-<stack>)

    @property
    def listen_url(self) -> str | None:
        """``http://HOST:PORT`` of the splitter, when it has one."""
        return f"http://{self.listen}" if self.listen else None


@dataclass(frozen=True)
class Shadow:
    """Where the shadow comparison's counts are read: a running shadow proxy's /metrics, or its JSON report."""

    url: str | None = None
    report: Path | None = None


@dataclass(frozen=True)
class Step:
    """One traffic step: the percent of traffic on the new endpoint and the gates to pass before entering it."""

    percent: int
    gates: dict[str, dict[str, float]]
    hold_s: float = 0.0

    @property
    def label(self) -> str:
        """``10%``."""
        return f"{self.percent}%"


@dataclass(frozen=True)
class DataSync:
    """The final incremental data sync, run before the last step (``lepton data sync SRC DST --mode incremental``)."""

    src: str
    dst: str
    endpoint: str | None = None

    @property
    def plan_command(self) -> str:
        """The command that shows what the sync will move."""
        return f"lepton data plan {self.src} {self.dst} --mode incremental" + (f" --endpoint {self.endpoint}" if self.endpoint else "")


@dataclass(frozen=True)
class CutoverPlan:
    """A whole cutover, as read from a plan file."""

    path: Path
    old: Endpoint
    new: Endpoint
    traffic: Traffic
    steps: tuple[Step, ...]
    window_s: float = DEFAULT_WINDOW_S
    shadow: Shadow | None = None
    data_sync: DataSync | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def percents(self) -> tuple[int, ...]:
        """The steps' percents, in order."""
        return tuple(s.percent for s in self.steps)

    def step(self, percent: int) -> Step:
        """The step at ``percent``; a :class:`PlanError` naming the plan's steps when there is none."""
        for s in self.steps:
            if s.percent == percent:
                return s
        raise PlanError(f"{self.path}: {percent}% is not a step of this plan ({self.steps_text()}); use one of its steps")

    def next_step(self, current: int) -> Step | None:
        """The first step above ``current`` percent, or None when the cutover is complete."""
        return next((s for s in self.steps if s.percent > current), None)

    def steps_text(self) -> str:
        """``0 -> 1 -> 10 -> 50 -> 100``."""
        return " -> ".join(str(p) for p in self.percents)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``lepton cutover plan --json``)."""
        return {
            "plan": str(self.path), "old": vars(self.old), "new": vars(self.new),
            "traffic": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self.traffic).items() if v is not None},
            "window_s": self.window_s,
            "shadow": None if self.shadow is None else {k: str(v) for k, v in vars(self.shadow).items() if v is not None},
            "steps": [{"percent": s.percent, "gates": s.gates, "hold_s": s.hold_s} for s in self.steps],
            "data_sync": None if self.data_sync is None else {**vars(self.data_sync), "before_percent": self.steps[-1].percent,
                                                              "plan_command": self.data_sync.plan_command},
        }


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{path}: no such cutover plan; write one (see docs/cutover.md) or pass its path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: cannot be read ({exc}); pass a UTF-8 YAML, TOML or JSON file") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            from lepton_cdk.yaml_documents import load_yaml

            return load_yaml(text, str(path), error=PlanError)
    except PlanError:
        raise
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise PlanError(f"{path}: not valid {suffix[1:].upper()} ({' '.join(str(exc).split())}); fix the syntax") from None
    except Exception as exc:  # PyYAML's errors carry the line and column
        raise PlanError(f"{path}: not valid YAML ({' '.join(str(exc).split())}); fix the syntax") from None
    raise PlanError(f"{path}: unknown plan format {suffix or '(no suffix)'!r}; name it .yaml, .yml, .toml or .json")


class _Reader:
    """Reads one plan document, turning every problem into one PlanError line that names the place."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> PlanError:
        return PlanError(f"{self.path}: {where}: {problem}")

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping with {', '.join(allowed)}, got {type(value).__name__}")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r}; known keys: {', '.join(allowed)}")
        return value

    def number(self, value: Any, where: str, *, minimum: float = 0.0, maximum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < minimum \
                or (maximum is not None and value > maximum):
            bound = f"from {minimum:g} to {maximum:g}" if maximum is not None else f">= {minimum:g}"
            raise self.fail(where, f"{value!r} is not a number {bound}")
        return float(value)

    def url(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"expected an http(s) URL, got {value!r}")
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.fail(where, f"{value!r} is not an http(s) URL; use e.g. http://127.0.0.1:8080")
        return value.strip().rstrip("/")

    def path_in(self, value: Any, where: str) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"expected a file path, got {value!r}")
        candidate = Path(value)
        return candidate if candidate.is_absolute() else self.path.parent / candidate

    def endpoint(self, value: Any, where: str) -> Endpoint:
        doc = self.mapping(value, where, ("url", "name", "ready_path", "metrics_url"))
        if "url" not in doc:
            raise self.fail(where, "needs url: the endpoint's base URL (OIP v2)")
        url = self.url(doc["url"], f"{where}.url")
        ready = doc.get("ready_path", TRITON_READY_PATH)
        if not isinstance(ready, str) or not ready.startswith("/"):
            raise self.fail(f"{where}.ready_path", f"{ready!r} must start with '/'; use {TRITON_READY_PATH}")
        metrics = self.url(doc["metrics_url"], f"{where}.metrics_url") if "metrics_url" in doc else f"{url}/metrics"
        return Endpoint(name=str(doc.get("name", where)), url=url, ready_path=ready, metrics_url=metrics)

    def traffic(self, value: Any) -> Traffic:
        doc = self.mapping(value, "traffic", ("via", "listen", "state", "old_upstream", "upstream_timeout_s", "stack", "settings",
                                              "stack_name"))
        via = doc.get("via")
        if via not in TRAFFIC_VIA:
            raise self.fail("traffic.via", f"{via!r} is not a way to split traffic; use splitter (the embedded one) or dns (a stack "
                            "setting of TrafficSplit)")
        if via == "splitter":
            for key in ("stack", "settings", "stack_name"):
                if key in doc:
                    raise self.fail(f"traffic.{key}", "applies to via: dns only; remove it")
            if "state" not in doc:
                raise self.fail("traffic", "via: splitter needs state: the file holding the weight the splitter follows")
            listen = doc.get("listen")
            if listen is not None:
                listen = parse_listen(listen, f"{self.path}: traffic.listen")
                listen = f"{listen[0]}:{listen[1]}" if ":" not in listen[0] else f"[{listen[0]}]:{listen[1]}"
            return Traffic(via=via, listen=listen, state=self.path_in(doc["state"], "traffic.state"),
                           old_upstream=self.url(doc["old_upstream"], "traffic.old_upstream") if "old_upstream" in doc else None,
                           upstream_timeout_s=self.number(doc.get("upstream_timeout_s", DEFAULT_UPSTREAM_TIMEOUT_S),
                                                          "traffic.upstream_timeout_s", minimum=0.01, maximum=3600))
        for key in ("listen", "state", "old_upstream", "upstream_timeout_s"):
            if key in doc:
                raise self.fail(f"traffic.{key}", "applies to via: splitter only; remove it")
        stack = doc.get("stack")
        if stack not in DNS_STACKS:
            raise self.fail("traffic.stack", f"{stack!r} is not a stack; use aws (Route 53) or gcp (Cloud DNS): the stack whose "
                            "LEPTON_CUTOVER_DNS declares the records")
        if "settings" not in doc:
            raise self.fail("traffic", f"via: dns needs settings: the file holding {WEIGHT_SETTING}=<percent> that the stack reads")
        stack_name = doc.get("stack_name", f"lepton-{stack}")
        if not isinstance(stack_name, str) or not stack_name:
            raise self.fail("traffic.stack_name", f"{stack_name!r} is not a stack name; use e.g. lepton-{stack}")
        return Traffic(via=via, stack=stack, settings=self.path_in(doc["settings"], "traffic.settings"), stack_name=stack_name)

    def gates(self, value: Any, where: str, base: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        if value is None:
            return dict(base)
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping of gate names to thresholds, got {type(value).__name__}")
        merged = {name: dict(options) for name, options in base.items()}
        for name, spec in value.items():
            if name not in GATE_OPTIONS:
                raise self.fail(f"{where}.{name}", f"unknown gate; known gates: {', '.join(GATES)}")
            if spec is False or spec is None:
                merged.pop(name, None)  # a step may turn a gate off
                continue
            if spec is True:
                if name in _REQUIRED:
                    raise self.fail(f"{where}.{name}", f"needs a threshold: {{{_REQUIRED[name][0]}: ...}} "
                                    f"({GATE_OPTIONS[name][_REQUIRED[name][0]]})")
                spec = {}
            options = self.mapping(spec, f"{where}.{name}", tuple(GATE_OPTIONS[name]))
            gate = {**_DEFAULTS.get(name, {}), **merged.get(name, {})}
            for key, raw in options.items():
                maximum = 1.0 if name in _RATE_GATES and key == "max" else None
                gate[key] = self.number(raw, f"{where}.{name}.{key}", maximum=maximum)
            for key in _REQUIRED.get(name, ()):
                if key not in gate:
                    raise self.fail(f"{where}.{name}", f"needs {key}: {GATE_OPTIONS[name][key]}")
            merged[name] = gate
        return merged

    def step(self, value: Any, index: int, base: dict[str, dict[str, float]]) -> Step:
        where = f"steps[{index}]"
        if isinstance(value, int) and not isinstance(value, bool):
            value = {"percent": value}
        doc = self.mapping(value, where, ("percent", "weights", "gates", "hold_s"))
        if ("percent" in doc) == ("weights" in doc):
            raise self.fail(where, "give the step as percent: N (traffic on the new endpoint) or weights: {old: A, new: B}")
        if "weights" in doc:
            weights = self.mapping(doc["weights"], f"{where}.weights", ("old", "new"))
            old, new = weights.get("old"), weights.get("new")
            if any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in (old, new)):
                raise self.fail(f"{where}.weights", f"old and new must both be whole numbers >= 0, got old={old!r}, new={new!r}")
            if old + new != WEIGHT_TOTAL:
                raise self.fail(f"{where}.weights", f"old {old} + new {new} = {old + new}; the weights are a percent split and must "
                                f"sum to {WEIGHT_TOTAL} (e.g. old: {WEIGHT_TOTAL - new}, new: {new})")
            percent = new
        else:
            percent = doc["percent"]
            if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= WEIGHT_TOTAL:
                raise self.fail(f"{where}.percent", f"{percent!r} is not a whole percent from 0 to {WEIGHT_TOTAL}")
        hold = self.number(doc.get("hold_s", 0.0), f"{where}.hold_s", maximum=86400)
        return Step(percent=percent, gates=self.gates(doc.get("gates"), f"{where}.gates", base), hold_s=hold)


def parse_listen(value: Any, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``; a :class:`PlanError` naming ``what`` otherwise."""
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise PlanError(f"{what}: {text!r} is not HOST:PORT; use e.g. 127.0.0.1:9000 (port 0 picks a free one)")
    return host, int(port)


def load_plan(path: str | Path) -> CutoverPlan:
    """Read and check the plan at ``path``; raises :class:`PlanError` (one line) on the first problem."""
    path = Path(path)
    doc = _read_document(path)
    r = _Reader(path)
    doc = r.mapping(doc, "plan", ("old", "new", "traffic", "shadow", "window_s", "gates", "steps", "data_sync"))
    for key in ("old", "new", "traffic", "steps"):
        if key not in doc:
            raise r.fail("plan", f"missing {key}; see docs/cutover.md for a complete plan")
    old, new = r.endpoint(doc["old"], "old"), r.endpoint(doc["new"], "new")
    if old.url == new.url:
        raise r.fail("new.url", f"is the old endpoint's URL too ({old.url}); a cutover moves traffic between two endpoints")
    traffic = r.traffic(doc["traffic"])
    shadow = None
    if "shadow" in doc:
        sdoc = r.mapping(doc["shadow"], "shadow", ("url", "report"))
        if ("url" in sdoc) == ("report" in sdoc):
            raise r.fail("shadow", "give url: (a running `lepton cutover shadow`, read at /metrics) or report: (its --report file)")
        shadow = Shadow(url=r.url(sdoc["url"], "shadow.url") if "url" in sdoc else None,
                        report=r.path_in(sdoc["report"], "shadow.report") if "report" in sdoc else None)
    window = r.number(doc.get("window_s", DEFAULT_WINDOW_S), "window_s", minimum=0.0, maximum=86400)
    base = r.gates(doc.get("gates"), "gates", {})
    raw_steps = doc["steps"]
    if not isinstance(raw_steps, list) or not raw_steps:
        raise r.fail("steps", "expected a list of steps, e.g. [0, 1, 10, 50, 100]")
    steps = tuple(r.step(value, i, base) for i, value in enumerate(raw_steps))
    for i in range(1, len(steps)):
        if steps[i].percent <= steps[i - 1].percent:
            verb = "repeats" if steps[i].percent == steps[i - 1].percent else "goes backwards from"
            raise r.fail(f"steps[{i}]", f"{steps[i].percent}% {verb} {steps[i - 1].percent}%; steps only go forward (the way back "
                         "is `lepton cutover rollback`)")
    if steps[-1].percent != WEIGHT_TOTAL:
        raise r.fail("steps", f"the last step is {steps[-1].percent}%; end the plan at {WEIGHT_TOTAL}% (every caller on the new "
                     "endpoint)")
    for step in steps:
        if "disagreement_rate" in step.gates and shadow is None:
            raise r.fail("gates.disagreement_rate", "needs a shadow: add shadow: {url: <lepton cutover shadow URL>} or "
                         "shadow: {report: <its --report file>}")
    data_sync = None
    if "data_sync" in doc:
        ddoc = r.mapping(doc["data_sync"], "data_sync", ("src", "dst", "endpoint"))
        for key in ("src", "dst"):
            if not isinstance(ddoc.get(key), str) or not ddoc[key].strip():
                raise r.fail(f"data_sync.{key}", "needs a location: a folder, s3://bucket/prefix or gs://bucket/prefix")
        endpoint = ddoc.get("endpoint")
        data_sync = DataSync(src=ddoc["src"], dst=ddoc["dst"], endpoint=r.url(endpoint, "data_sync.endpoint") if endpoint else None)
    return CutoverPlan(path=path, old=old, new=new, traffic=traffic, steps=steps, window_s=window, shadow=shadow, data_sync=data_sync)
